"""A headless sana-stream client: connects over WebRTC (aiortc), receives and optionally records the video,
sends edits and measures first-frame and prompt-to-photon latency where the frames arrive.

    python clients/python/sana_client.py --url ws://127.0.0.1:8000/ws --seconds 10 -o session.mp4 \\
        --prompt "a red circle moving right on a blue background" --then "a white square moving up"

From code:

    async with SanaClient("ws://127.0.0.1:8000/ws", prompt="...") as client:
        await client.wait_frames(48)
        shown = await client.set_prompt("...")       # shown.latency_s: prompt-to-photon latency

How latency is measured: the server stamps frame n of its track with pts = n · 90000 / fps, and answers each
edit with the slot n of the first frame that shows it ("applied"). aiortc's receiver hands frames over with pts
counted from the first frame received, so a frame's slot is known here too: the latency is the time from
sending the edit to decoding the first frame whose slot is at least n.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import websockets
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

KEEP_FRAMES = 256  # recent frames kept in memory (slot, arrival time, pixels)


class ServerError(RuntimeError):
    """An {"type": "error"} answer from the server."""


@dataclass
class Received:
    slot: int
    arrived: float  # perf_counter() when decoded
    pixels: np.ndarray  # uint8 (H, W, 3)


@dataclass
class Shown:
    """An edit reaching the picture: the first frame that shows it and the time from sending to decoding it."""

    latency_s: float
    frame: Received


@dataclass
class ClientStats:
    first_frame_s: float | None = None  # offer sent -> first frame decoded
    edit_latencies_s: list[float] = field(default_factory=list)  # edit sent -> first frame showing it decoded
    server: dict[str, Any] = field(default_factory=dict)  # the last stats message


class SanaClient:
    def __init__(self, url: str = "ws://127.0.0.1:8000/ws", *, prompt: str = "", seed: int | None = None,
                 token: str | None = None, codec: str | None = None, record: str | None = None,
                 origin: str | None = None, mode: str = "video"):
        if token is not None:
            url += ("&" if "?" in url else "?") + "token=" + quote(token, safe="")
        self.url, self.prompt, self.seed, self.codec, self.record, self.origin = url, prompt, seed, codec, record, origin
        self.mode = mode
        self.frames: deque[Received] = deque(maxlen=KEEP_FRAMES)
        self.frame_count = 0
        self.fps = 0.0
        self.session: str | None = None
        self.stats = ClientStats()
        self.errors: list[str] = []
        self._ids = itertools.count(1)
        self._waiting: dict[int, tuple[asyncio.Future, str]] = {}  # request id -> (future, answer type)
        self._frame_event = asyncio.Event()
        self._next_error: asyncio.Future | None = None
        self._ws: Any = None
        self._pc: RTCPeerConnection | None = None
        self._tasks: list[asyncio.Task] = []
        self._writer: Any = None
        self._offer_sent = 0.0

    # ----- connecting -----------------------------------------------------------------------------------------

    async def __aenter__(self) -> "SanaClient":
        await self.connect()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def connect(self, timeout: float = 120.0) -> None:
        """Open the control socket and start a session (everything is closed again if that fails)."""
        try:
            await self.open()
            await self.start(timeout)
        except BaseException:
            await self.close()
            raise

    async def open(self) -> None:
        """Open the control socket (no session yet)."""
        self._ws = await websockets.connect(self.url, origin=self.origin, max_size=2**22)
        self._tasks.append(asyncio.create_task(self._read_messages()))

    async def start(self, timeout: float = 120.0) -> None:
        """Send an offer (ICE fully gathered: the server does not trickle) and start receiving video."""
        self._pc = RTCPeerConnection()
        self._pc.addTransceiver("video", direction="recvonly")
        self._pc.on("track", lambda track: self._tasks.append(asyncio.create_task(self._read_video(track))))
        await self._pc.setLocalDescription(await self._pc.createOffer())
        fields: dict[str, Any] = {"sdp": self._pc.localDescription.sdp, "prompt": self.prompt, "mode": self.mode}
        if self.seed is not None:
            fields["seed"] = self.seed
        if self.codec is not None:
            fields["codec"] = self.codec
        self._offer_sent = time.perf_counter()
        answer = await asyncio.wait_for(self.request("offer", **fields), timeout)
        self.session, self.fps = answer["session"], answer["fps"]
        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._pc is not None:
            await self._pc.close()
        if self._ws is not None:
            await self._ws.close()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # ----- control --------------------------------------------------------------------------------------------

    async def expect_error(self, frame: str | bytes, timeout: float = 60.0) -> str:
        """Send `frame` exactly as given (e.g. a malformed one) and return the server's error message about it."""
        self._next_error = asyncio.get_running_loop().create_future()
        await self._ws.send(frame)
        return await asyncio.wait_for(self._next_error, timeout)

    async def request(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Send and wait for the answer ("answer" to an offer, else "ok"); ServerError if it was refused."""
        return await self._tracked(kind, fields, "answer" if kind == "offer" else "ok")

    async def edit(self, kind: str, timeout: float = 120.0, **fields: Any) -> Shown:
        """Send an edit (prompt, image, reset) and wait until the first frame showing it is decoded."""
        sent = time.perf_counter()
        applied = await asyncio.wait_for(self._tracked(kind, fields, "applied"), timeout)
        frame = await asyncio.wait_for(self._frame_at(applied["frame"]), timeout)
        self.stats.edit_latencies_s.append(frame.arrived - sent)
        return Shown(frame.arrived - sent, frame)

    async def set_prompt(self, text: str, transition: int | None = None, timeout: float = 120.0) -> Shown:
        """Switch the prompt; .latency_s is the prompt-to-photon latency."""
        fields = {"text": text} if transition is None else {"text": text, "transition": transition}
        return await self.edit("prompt", timeout, **fields)

    async def reset(self, seed: int | None = None, timeout: float = 120.0) -> Shown:
        """Restart the video with `seed` (the same seed gives the same frames)."""
        return await self.edit("reset", timeout, seed=seed)

    async def set_image(self, image: bytes | str, timeout: float = 120.0) -> Shown:
        """Restart the video from an image: encoded file bytes (PNG, JPEG, ...) or a file path."""
        data = image if isinstance(image, bytes) else Path(image).read_bytes()
        return await self.edit("image", timeout, data=base64.b64encode(data).decode())

    async def act(self, keys: str, timeout: float = 120.0) -> Shown:
        """World mode: hold `keys` ("w", "a+w", "none") from now on; .latency_s is action-to-photon."""
        return await self.edit("action", timeout, keys=keys, t=round(1e3 * time.time()))

    async def _tracked(self, kind: str, fields: dict[str, Any], until: str) -> dict[str, Any]:
        """Send a message and wait for the server's message of type `until` with its id (or an error)."""
        request_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = (future, until)
        try:
            await self._ws.send(json.dumps({"type": kind, "id": request_id, **fields}))
            return await future
        finally:
            self._waiting.pop(request_id, None)

    async def _read_messages(self) -> None:
        try:
            async for raw in self._ws:
                message = json.loads(raw)
                kind = message.get("type")
                if kind == "stats":
                    self.stats.server = message
                elif kind == "error":
                    self.errors.append(message["message"])
                    if self._next_error is not None and not self._next_error.done():
                        self._next_error.set_result(message["message"])
                waiting = self._waiting.get(message.get("id"))
                if waiting is not None and not waiting[0].done():
                    future, until = waiting
                    if kind == "error":
                        future.set_exception(ServerError(message["message"]))
                    elif kind == until:
                        future.set_result(message)
        except websockets.ConnectionClosed:
            pass
        finally:  # nothing more will come: whoever waits learns why
            reason = self.errors[-1] if self.errors else "connection closed"
            for future, _ in self._waiting.values():
                if not future.done():
                    future.set_exception(ServerError(reason))

    # ----- video ----------------------------------------------------------------------------------------------

    async def _read_video(self, track: Any) -> None:
        try:
            while True:
                frame = await track.recv()
                now = time.perf_counter()
                pixels = frame.to_ndarray(format="rgb24")
                slot = round(frame.pts * frame.time_base * self.fps) if self.fps else self.frame_count
                if self.stats.first_frame_s is None:
                    self.stats.first_frame_s = now - self._offer_sent
                self.frames.append(Received(slot, now, pixels))
                self.frame_count += 1
                if self.record is not None:
                    self._write(pixels)
                self._frame_event.set()
        except MediaStreamError:
            pass

    def _write(self, pixels: np.ndarray) -> None:
        from sana_stream.media import VideoWriter

        if self._writer is None:
            height, width = pixels.shape[:2]
            self._writer = VideoWriter(self.record, self.fps or 16, width, height)
        self._writer.write(pixels)

    async def wait_frames(self, count: int, timeout: float = 120.0) -> None:
        """Wait until `count` frames in all have been decoded."""
        async def wait() -> None:
            while self.frame_count < count:
                self._frame_event.clear()
                await self._frame_event.wait()
        await asyncio.wait_for(wait(), timeout)

    async def _frame_at(self, slot: int) -> Received:
        """The first decoded frame whose slot is `slot` or later (waits for it if it has not come yet)."""
        while True:
            for frame in self.frames:
                if frame.slot >= slot:
                    return frame
            self._frame_event.clear()
            await self._frame_event.wait()

    def frame_at(self, slot: int) -> Received | None:
        """The first frame kept with slot ≥ `slot`, or None."""
        return next((f for f in self.frames if f.slot >= slot), None)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Record a sana-stream session to MP4 and measure its latency.")
    parser.add_argument("--url", default="ws://127.0.0.1:8000/ws", help="the server's control socket")
    parser.add_argument("--token", help="the server's --token, if it has one")
    parser.add_argument("--prompt", default="", help="the starting prompt")
    parser.add_argument("--then", metavar="PROMPT", help="a prompt to switch to half way through")
    parser.add_argument("--seed", type=int, help="the stream's seed")
    parser.add_argument("--mode", choices=("video", "world"), default="video", help="video (default) or world")
    parser.add_argument("--codec", choices=("vp8", "h264"), help="ask for this codec")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to record (default 10)")
    parser.add_argument("-o", "--output", help="the .mp4 to record into (default: record nothing)")
    return parser.parse_args(argv)


async def _main(args: argparse.Namespace) -> None:
    async with SanaClient(args.url, prompt=args.prompt, seed=args.seed, token=args.token, codec=args.codec,
                          record=args.output, mode=args.mode) as client:
        await client.wait_frames(1)
        half = args.seconds / 2
        await asyncio.sleep(half)
        if args.then is not None:
            shown = await client.set_prompt(args.then)
            print(f"prompt-to-photon: {1e3 * shown.latency_s:.0f} ms")
        await asyncio.sleep(half)
        print(f"first frame: {1e3 * client.stats.first_frame_s:.0f} ms; {client.frame_count} frames received"
              + (f"; recorded {args.output}" if args.output else ""))


if __name__ == "__main__":
    options = _parse(sys.argv[1:])
    try:
        asyncio.run(_main(options))
    except (OSError, ServerError, asyncio.TimeoutError, websockets.InvalidHandshake) as err:
        print(f"sana_client: error: {err or type(err).__name__}", file=sys.stderr)
        sys.exit(2)
