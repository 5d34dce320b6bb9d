"""The control protocol on `/ws`: every message a client sends is parsed and checked here before anything acts
on it, so the session code only ever sees well-formed requests.

Messages are JSON objects in text frames, or the same objects msgpack-encoded in binary frames. Each has a
`type`; an optional client-chosen integer `id` is echoed in the answers so that a client can match them.
Anything wrong (syntax, unknown type or field, wrong type, out-of-range value, oversize) raises ProtocolError
with a message meant for the client that sent it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any, Callable

import msgpack
from PIL import Image

from ..pipeline.images import load_image

MAX_MESSAGE_BYTES = 8 * 2**20  # the WebSocket frame cap: room for an image upload, base64-inflated
MAX_CONTROL_BYTES = 64 * 2**10  # everything but an image upload is small
MAX_SDP_CHARS = 64 * 2**10
MAX_PROMPT_CHARS = 2000
MAX_TRANSITION_CHUNKS = 32
MAX_IMAGE_BYTES = 4 * 2**20  # an uploaded image file, after base64 decoding
MAX_IMAGE_PIXELS = 2048 * 2048  # checked from the header, before the pixels are decoded
MAX_SEED = 2**63 - 1
MAX_ID = 2**53  # integers JavaScript represents exactly
MODES = ("video", "world")
CODECS = ("vp8", "h264")
_KEYS = re.compile(r"^(none|[a-z](\+[a-z]){0,7})$")


class ProtocolError(ValueError):
    """A bad message; `message` is sent back to its client as {"type": "error", ...}; nothing else happens."""

    def __init__(self, message: str, request_id: int | None = None):
        super().__init__(message)
        self.request_id = request_id


# ----- field checks: each returns the value to use or raises ProtocolError -----------------------------------


def _text(limit: int) -> Callable[[str, Any], str]:
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise ProtocolError(f"{name} must be a string, got {type(value).__name__}")
        if len(value) > limit:
            raise ProtocolError(f"{name} is too long: {len(value)} characters, at most {limit}")
        return value
    return check


def _whole(low: int, high: int) -> Callable[[str, Any], int]:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ProtocolError(f"{name} must be an integer, got {type(value).__name__}")
        if not low <= value <= high:
            raise ProtocolError(f"{name} must be in [{low}, {high}], got {value}")
        return value
    return check


def _choice(options: tuple[str, ...]) -> Callable[[str, Any], str]:
    def check(name: str, value: Any) -> str:
        if value not in options:
            raise ProtocolError(f"{name} must be one of {', '.join(options)}; got {str(value)[:40]!r}")
        return value
    return check


def _sdp(name: str, value: Any) -> str:
    value = _text(MAX_SDP_CHARS)(name, value)
    if not value.startswith("v=0"):
        raise ProtocolError(f"{name} is not an SDP session description (it must start with 'v=0')")
    return value


def _keys(name: str, value: Any) -> str:
    value = _text(32)(name, value).lower()
    if not _KEYS.match(value):
        raise ProtocolError(f"{name} must be 'none' or letters joined by '+', like 'w' or 'a+w'; got {value!r}")
    return value


def _timestamp(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e15:
        raise ProtocolError(f"{name} must be a time in milliseconds ≥ 0")
    return float(value)


def _optional_seed(name: str, value: Any) -> int | None:
    return None if value is None else _whole(0, MAX_SEED)(name, value)


def _image_data(name: str, value: Any) -> bytes:
    """Encoded image bytes from raw bytes (msgpack) or base64 text (JSON), a data: URL prefix allowed."""
    if isinstance(value, str):
        if value.startswith("data:"):
            value = value.partition(",")[2]
        if len(value) > (MAX_IMAGE_BYTES * 4) // 3 + 4:
            raise ProtocolError(f"image is too large: more than {MAX_IMAGE_BYTES} bytes")
        try:
            value = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError(f"{name} is not valid base64") from None
    if not isinstance(value, (bytes, bytearray)):
        raise ProtocolError(f"{name} must be base64 text or bytes, got {type(value).__name__}")
    if not value:
        raise ProtocolError(f"{name} is empty")
    if len(value) > MAX_IMAGE_BYTES:
        raise ProtocolError(f"image is too large: {len(value)} bytes, at most {MAX_IMAGE_BYTES}")
    return bytes(value)


# type -> {field: (check, required, default)}
_SCHEMAS: dict[str, dict[str, tuple[Callable[[str, Any], Any], bool, Any]]] = {
    "offer": {"sdp": (_sdp, True, None), "prompt": (_text(MAX_PROMPT_CHARS), False, ""),
              "mode": (_choice(MODES), False, "video"), "seed": (_optional_seed, False, None),
              "codec": (_choice(CODECS), False, None)},
    "prompt": {"text": (_text(MAX_PROMPT_CHARS), True, None),
               "transition": (_whole(0, MAX_TRANSITION_CHUNKS), False, None)},
    "image": {"data": (_image_data, True, None)},
    "action": {"keys": (_keys, True, None), "t": (_timestamp, False, None)},
    "pause": {},
    "resume": {},
    "reset": {"seed": (_optional_seed, False, None)},
}
MESSAGE_TYPES = tuple(_SCHEMAS)


@dataclass
class Message:
    type: str
    fields: dict[str, Any]
    id: int | None = None


def decode_frame(frame: str | bytes) -> dict[str, Any]:
    """The object in a text (JSON) or binary (msgpack) frame."""
    try:
        if isinstance(frame, str):
            obj = json.loads(frame)
        else:
            obj = msgpack.unpackb(frame, raw=False, strict_map_key=True, max_str_len=MAX_MESSAGE_BYTES,
                                  max_bin_len=MAX_MESSAGE_BYTES, max_array_len=64, max_map_len=64)
    except (ValueError, TypeError, RecursionError) as err:  # msgpack's errors are ValueErrors too
        kind = "JSON" if isinstance(frame, str) else "msgpack"
        raise ProtocolError(f"malformed {kind} message: {str(err)[:120]}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"a message must be an object with a 'type', got {type(obj).__name__}")
    return obj


def parse_message(frame: str | bytes) -> Message:
    """Decode and validate one client frame."""
    obj = decode_frame(frame)
    request_id = obj.get("id")
    if request_id is not None:
        request_id = _whole(0, MAX_ID)("id", request_id)
    kind = obj.get("type")
    if kind not in _SCHEMAS:
        shown = str(kind)[:40] if isinstance(kind, str) else type(kind).__name__
        raise ProtocolError(f"unknown message type {shown!r}; expected one of {', '.join(MESSAGE_TYPES)}",
                            request_id)
    if kind != "image" and len(frame) > MAX_CONTROL_BYTES:
        raise ProtocolError(f"{kind} message is too large: {len(frame)} bytes, at most {MAX_CONTROL_BYTES}",
                            request_id)
    schema = _SCHEMAS[kind]
    unknown = sorted(str(k)[:40] for k in obj if k not in schema and k not in ("type", "id"))
    if unknown:
        raise ProtocolError(f"unknown field(s) for {kind}: {', '.join(unknown)}", request_id)
    fields = {}
    for name, (check, required, default) in schema.items():
        if name not in obj:
            if required:
                raise ProtocolError(f"{kind} needs a {name!r} field", request_id)
            fields[name] = default
            continue
        try:
            fields[name] = check(name, obj[name])
        except ProtocolError as err:
            raise ProtocolError(f"{kind}: {err}", request_id) from None
    return Message(kind, fields, request_id)


def decode_image(data: bytes) -> Image.Image:
    """An RGB image from uploaded file bytes; the pixel count is checked before the pixels are decoded."""
    try:
        return load_image(data, max_pixels=MAX_IMAGE_PIXELS)
    except ValueError as err:
        raise ProtocolError(str(err)) from None


def encode(kind: str, **fields: Any) -> str:
    """A server message as a JSON text frame."""
    return json.dumps({"type": kind, **fields}, separators=(",", ":"))
