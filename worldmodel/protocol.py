"""The remote world-model protocol: msgpack messages over the server's `/ws/world` WebSocket.

Every message is one binary frame holding one msgpack map. The client asks, the server answers, in order:

    request:  {"id": 7, "method": "step", "args": {"action": "w+a"}}
    reply:    {"id": 7, "result": {...}}        or        {"id": 7, "error": "action: unknown key 'q' ..."}

Numpy arrays travel as maps {"shape": [..], "dtype": "uint8", "bytes": <little-endian raw bytes>}, so any
msgpack library can read and write them. Methods (args; result):

    open      (batch_size=1)                    -> {batch_size, frame_size, fps, keys, action_dim, ...}  first
    reset     (seed=None, image=None, prompt=None, pose=None) -> {"frames": array, "info": {...}}
    step      (action)                          -> {"frames": array, "info": {...}}
    snapshot  ()                                -> {"handle": int, "frame_index": int, "steps": int}
    restore   (handle)                          -> {}
    release   (handle)                          -> {}      frees a snapshot kept by the server

Snapshots stay on the server, behind opaque handles that mean something only on their connection.
`WorldSession` is the server side of one connection; the server's `/ws/world` route feeds it frames.
`serve_world` is a minimal standalone server of that route (for tests and for serving a world model alone).
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 2**20  # a batch of 16 start images at 512² is 12 MiB; frames come back the same size
MAX_ARRAY_DIMS = 8
MAX_ACTION_ELEMENTS = 4096  # the largest action array: a batch of 4×4 poses
MAX_TEXT_CHARS = 2000
MAX_ID_CHARS = 64
WIRE_DTYPES = ("uint8", "int32", "int64", "float32", "float64", "bool")
ARRAY_FIELDS = frozenset(("shape", "dtype", "bytes"))
WORLD_PATH = "/ws/world"


class ProtocolError(ValueError):
    """A message that breaks the protocol (not msgpack, wrong shape of request, over a size cap)."""


# ----- the codec ------------------------------------------------------------------------------------------------


def _encode_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.name not in WIRE_DTYPES:
            raise ProtocolError(f"arrays of dtype {obj.dtype} cannot be sent; use one of {', '.join(WIRE_DTYPES)}")
        wire = np.ascontiguousarray(obj, dtype=obj.dtype.newbyteorder("<"))
        return {"shape": list(obj.shape), "dtype": obj.dtype.name, "bytes": wire.tobytes()}
    if isinstance(obj, np.generic):
        return obj.item()
    raise ProtocolError(f"cannot send a {type(obj).__name__} over the world protocol")


def _decode_array(obj: dict) -> Any:
    if obj.keys() != ARRAY_FIELDS:
        return obj
    shape, dtype, data = obj["shape"], obj["dtype"], obj["bytes"]
    if dtype not in WIRE_DTYPES:
        raise ProtocolError(f"array dtype {dtype!r} is not one of {', '.join(WIRE_DTYPES)}")
    if not (isinstance(shape, list) and len(shape) <= MAX_ARRAY_DIMS
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)):
        raise ProtocolError(f"array shape must be a list of at most {MAX_ARRAY_DIMS} ints ≥ 0, got {shape!r}")
    wire = np.dtype(dtype).newbyteorder("<")
    if not isinstance(data, bytes) or len(data) != math.prod(shape) * wire.itemsize:
        raise ProtocolError(f"array bytes do not match shape {shape} and dtype {dtype}")
    # A writable array in native byte order, as if it had been made locally.
    return np.frombuffer(data, dtype=wire).reshape(shape).astype(np.dtype(dtype), copy=True)


def pack(message: Any) -> bytes:
    """A message (maps, lists, strings, numbers, bytes, numpy arrays) as one msgpack frame."""
    data = msgpack.packb(message, default=_encode_default, use_bin_type=True)
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {len(data)} bytes exceeds the {MAX_MESSAGE_BYTES}-byte cap")
    return data


def unpack(data: bytes) -> Any:
    """The message in one msgpack frame; arrays come back as numpy arrays."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError(f"expected a binary msgpack frame, got {type(data).__name__}")
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {len(data)} bytes exceeds the {MAX_MESSAGE_BYTES}-byte cap")
    try:
        # Length caps per container: a small frame cannot unfold into millions of objects before validation.
        return msgpack.unpackb(data, raw=False, object_hook=_decode_array, max_array_len=MAX_ACTION_ELEMENTS,
                               max_map_len=64, max_str_len=4 * MAX_TEXT_CHARS, max_ext_len=0)
    except ProtocolError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException) as err:
        raise ProtocolError(f"not a valid msgpack message: {err}") from None


# ----- request validation ---------------------------------------------------------------------------------------


def _optional_int(name: str, value: Any) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise ProtocolError(f"{name} must be an int or nil, got {type(value).__name__}")


def _int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProtocolError(f"{name} must be an int, got {type(value).__name__}")


def _image(name: str, value: Any) -> None:
    if value is None:
        return
    if not (isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim in (3, 4)
            and value.shape[-1] == 3):
        got = f"{value.dtype} {value.shape}" if isinstance(value, np.ndarray) else type(value).__name__
        raise ProtocolError(f"{name} must be a uint8 array (H, W, 3) or (B, H, W, 3), or nil; got {got}")


def _nested(name: str, value: Any, text: bool, depth: int = 0) -> None:
    """Numbers, numeric arrays, (if `text`) short strings, and lists of those; structure and size only."""
    if depth > 3:
        raise ProtocolError(f"{name} is nested too deeply")
    if isinstance(value, str) and text:
        if len(value) > 64:
            raise ProtocolError(f"{name}: key strings are at most 64 characters")
    elif isinstance(value, np.ndarray):
        if value.size > MAX_ACTION_ELEMENTS or value.dtype == np.bool_:
            raise ProtocolError(f"{name}: arrays must be numeric with at most {MAX_ACTION_ELEMENTS} values")
    elif isinstance(value, (list, tuple)):
        if len(value) > MAX_ACTION_ELEMENTS:
            raise ProtocolError(f"{name}: at most {MAX_ACTION_ELEMENTS} entries")
        for item in value:
            _nested(name, item, text, depth + 1)
    elif not isinstance(value, (int, float)) or isinstance(value, bool):
        kinds = "a key string, numbers, an array or a list of those" if text else "numbers, an array or lists"
        raise ProtocolError(f"{name} must be {kinds}; got {type(value).__name__}")


def _action(name: str, value: Any) -> None:
    """What the action means is the world model's to check; here only its structure and size."""
    _nested(name, value, text=True)


def _optional_pose(name: str, value: Any) -> None:
    if value is not None:
        _nested(name, value, text=False)


def _optional_prompts(name: str, value: Any) -> None:
    """nil, a string, or one string per world."""
    texts = value if isinstance(value, list) else [value]
    if value is None or (len(texts) <= MAX_ACTION_ELEMENTS
                         and all(isinstance(t, str) and len(t) <= MAX_TEXT_CHARS for t in texts)):
        return
    raise ProtocolError(f"{name} must be nil, a string or a list of strings, each at most {MAX_TEXT_CHARS} "
                        "characters")


# method -> {argument: check}; every argument is optional on the wire except those in REQUIRED.
METHODS: dict[str, dict[str, Callable[[str, Any], None]]] = {
    "open": {"batch_size": _int},
    "reset": {"seed": _optional_int, "image": _image, "prompt": _optional_prompts, "pose": _optional_pose},
    "step": {"action": _action},
    "snapshot": {},
    "restore": {"handle": _int},
    "release": {"handle": _int},
}
REQUIRED = {"step": ("action",), "restore": ("handle",), "release": ("handle",)}


def _valid_id(rid: Any) -> bool:
    return (isinstance(rid, int) and not isinstance(rid, bool)) or (isinstance(rid, str) and len(rid) <= MAX_ID_CHARS)


def parse_request(request: Any) -> tuple[Any, str, dict[str, Any]]:
    """(id, method, args) of a well-formed request; ProtocolError naming the problem otherwise."""
    if not isinstance(request, dict):
        raise ProtocolError(f"a request must be a map, got {type(request).__name__}")
    unknown = sorted(set(request) - {"id", "method", "args"})
    if unknown:
        raise ProtocolError(f"unknown request field(s): {', '.join(map(str, unknown))}")
    rid = request.get("id")
    if rid is not None and not _valid_id(rid):
        raise ProtocolError(f"id must be an int or a string of at most {MAX_ID_CHARS} characters")
    method = request.get("method")
    if method not in METHODS:
        raise ProtocolError(f"unknown method {method!r}; methods: {', '.join(METHODS)}")
    args = request.get("args", {})
    if not isinstance(args, dict):
        raise ProtocolError(f"args must be a map, got {type(args).__name__}")
    checks = METHODS[method]
    unknown = sorted(set(args) - set(checks))
    if unknown:
        raise ProtocolError(f"{method}: unknown argument(s): {', '.join(map(str, unknown))}")
    missing = [name for name in REQUIRED.get(method, ()) if name not in args]
    if missing:
        raise ProtocolError(f"{method}: missing argument(s): {', '.join(missing)}")
    for name, value in args.items():
        checks[name](name, value)
    return rid, method, args


# ----- the server side of one connection ------------------------------------------------------------------------


def observation_message(obs: Any) -> dict[str, Any]:
    return {"frames": obs.frames, "info": obs.info}


class WorldSession:
    """One connection's worlds. make_world(batch_size) builds them at "open" (e.g. WorldModel.sibling on a
    model loaded once per server). handle() never raises: every problem comes back as {"error": message}."""

    def __init__(self, make_world: Callable[[int], Any], *, max_batch_size: int = 16, max_snapshots: int = 64):
        self._make_world = make_world
        self.max_batch_size, self.max_snapshots = max_batch_size, max_snapshots
        self.world: Any = None
        self._snapshots: dict[int, Any] = {}
        self._handles = itertools.count(1)

    def handle_message(self, data: bytes) -> bytes:
        """One binary frame in, one out (what a WebSocket route calls)."""
        try:
            request = unpack(data)
        except ProtocolError as err:
            return pack({"error": str(err)})
        reply = self.handle(request)
        try:
            return pack(reply)
        except ProtocolError as err:  # e.g. a reply over the size cap
            return pack({"id": reply.get("id"), "error": str(err)})

    def handle(self, request: Any) -> dict[str, Any]:
        # Echo the id even when the request is refused, if it is one; a malformed id is not sent back.
        rid = request.get("id") if isinstance(request, dict) else None
        rid = rid if _valid_id(rid) else None
        try:
            rid, method, args = parse_request(request)
            if method != "open" and self.world is None:
                raise ValueError(f"{method}: call open first")
            result = getattr(self, f"_{method}")(**args)
        except ValueError as err:  # bad input, protocol errors included: the world is unchanged
            return self._reply(rid, error=str(err))
        except Exception as err:  # a bug, not the client's fault: logged here, reported there
            log.exception("world session: %s failed", request.get("method") if isinstance(request, dict) else "?")
            return self._reply(rid, error=f"internal error ({type(err).__name__}): {err}")
        return self._reply(rid, result=result)

    def close(self) -> None:
        """Forget the worlds and every snapshot kept for this connection."""
        self._snapshots.clear()
        self.world = None

    @staticmethod
    def _reply(rid: Any, **fields: Any) -> dict[str, Any]:
        return {"id": rid, **fields} if rid is not None else fields

    # ----- methods ------------------------------------------------------------------------------------------

    def _open(self, batch_size: int = 1) -> dict[str, Any]:
        if self.world is not None:
            raise ValueError("open: this connection is already open")
        if not 1 <= batch_size <= self.max_batch_size:
            raise ValueError(f"open: batch_size must be in [1, {self.max_batch_size}], got {batch_size}")
        self.world = world = self._make_world(batch_size)
        c = world.config
        return {"batch_size": world.batch_size, "frame_size": list(c.frame_size), "fps": c.fps,
                "keys": list(c.keys), "action_dim": c.action_dim, "frames_per_step": c.frames_per_step,
                "prompt": c.prompt}

    def _reset(self, seed: int | None = None, image: np.ndarray | None = None, prompt: str | list[str] | None = None,
               pose: Any = None) -> dict[str, Any]:
        return observation_message(self.world.reset(seed=seed, image=image, prompt=prompt, pose=pose))

    def _step(self, action: Any) -> dict[str, Any]:
        return observation_message(self.world.step(action))

    def _snapshot(self) -> dict[str, Any]:
        if len(self._snapshots) >= self.max_snapshots:
            raise ValueError(f"snapshot: this connection keeps at most {self.max_snapshots} snapshots; "
                             "release some first")
        snap = self.world.snapshot()
        handle = next(self._handles)
        self._snapshots[handle] = snap
        return {"handle": handle, "frame_index": snap.frame_index, "steps": snap.steps}

    def _restore(self, handle: int) -> dict[str, Any]:
        self.world.restore(self._snapshot_of(handle))
        return {}

    def _release(self, handle: int) -> dict[str, Any]:
        self._snapshot_of(handle)
        del self._snapshots[handle]
        return {}

    def _snapshot_of(self, handle: int) -> Any:
        if handle not in self._snapshots:
            raise ValueError(f"unknown snapshot handle {handle} (released, or from another connection)")
        return self._snapshots[handle]


# ----- a standalone server ----------------------------------------------------------------------------------------


class WorldServer:
    """A running serve_world(): `url` to connect to, close() (or `with`) to stop."""

    def __init__(self, server: Any, thread: threading.Thread):
        self._server, self._thread = server, thread
        host, port = server.socket.getsockname()[:2]
        self.port = port
        self.url = f"ws://{host}:{port}{WORLD_PATH}"

    def close(self) -> None:
        self._server.shutdown()
        self._thread.join()

    def __enter__(self) -> "WorldServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def serve_world(make_world: Callable[[int], Any], host: str = "127.0.0.1", port: int = 0,
                **session_options: Any) -> WorldServer:
    """Serve `/ws/world` alone, from a background thread (port=0: any free port; see .url). Each connection
    gets its own WorldSession(make_world, **session_options) and is served in its own thread."""
    from websockets.sync.server import serve

    def route(connection: Any, request: Any) -> Any:
        if request.path != WORLD_PATH:
            return connection.respond(404, f"this server has only {WORLD_PATH}\n")
        return None

    def handler(connection: Any) -> None:
        session = WorldSession(make_world, **session_options)
        try:
            for message in connection:
                connection.send(session.handle_message(message) if isinstance(message, bytes)
                                else pack({"error": "send binary msgpack frames, not text"}))
        finally:
            session.close()

    server = serve(handler, host, port, process_request=route, max_size=MAX_MESSAGE_BYTES)
    thread = threading.Thread(target=server.serve_forever, name="serve_world", daemon=True)
    thread.start()
    return WorldServer(server, thread)
