"""One viewer's session: a peer connection playing a frame source, steered by control messages.

The session lives exactly as long as its peer: it ends when the control socket closes, when the peer
connection fails or closes, when the peer does not connect in time, or when generation fails. Whatever ends it,
close() releases everything (worker thread, encoder, sockets) and is safe to call more than once.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from ..engine.stream import Frame
from .log import log_event
from .media import PacedVideoTrack, prefer_codec
from .metrics import Metrics, SessionGauges
from .protocol import Message, ProtocolError, decode_image, encode
from .sources import SessionSource

CONNECT_TIMEOUT_S = 30.0  # offer answered -> ICE connected
STATS_INTERVAL_S = 1.0
OUTBOX_SIZE = 64  # server -> client notifications waiting to be sent; beyond this a stuck client misses some


@dataclass
class _Ticket:
    """An edit on its way to the picture."""

    kind: str
    id: int | None
    received: float  # perf_counter()


class Session:
    def __init__(self, sid: str, send: Callable[[str], Awaitable[None]], on_end: Callable[[str], None],
                 metrics: Metrics, codec: str | None = None, decode_slots: asyncio.Semaphore | None = None):
        """decode_slots: shared by the sessions so that image uploads are decoded a few at a time, however
        many clients upload at once."""
        self.id = sid
        self._decode_slots = decode_slots or asyncio.Semaphore(1)
        self._send, self._on_end, self._metrics, self._codec = send, on_end, metrics, codec
        self.pc = RTCPeerConnection()
        self.source: SessionSource | None = None
        self._created = time.perf_counter()
        self._first_frame_s: float | None = None
        self._last_edit_ms: float | None = None
        self._frames_sent = 0
        self._sent_times: list[float] = []  # send times of the last second's frames, for the sent frames/s
        self._outbox: asyncio.Queue[str] = asyncio.Queue(maxsize=OUTBOX_SIZE)
        self._tasks: list[asyncio.Task] = []
        self._closed = False
        self.pc.on("connectionstatechange", self._on_connection_state)

    # ----- start ----------------------------------------------------------------------------------------------

    async def start(self, offer: str, make_source: Callable[[], Awaitable[SessionSource]]) -> str:
        """Answer `offer` (ICE fully gathered: aiortc does not trickle) and start playing; returns the SDP."""
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        except Exception as err:  # noqa: BLE001 - the SDP parser fails in many ways; all mean a bad offer
            raise ProtocolError(f"invalid SDP offer: {str(err)[:160] or type(err).__name__}") from None
        video = [t for t in self.pc.getTransceivers() if t.kind == "video"]
        if len(video) != 1:
            raise ProtocolError(f"the offer must have exactly one video m-line, it has {len(video)}")
        self.source = await make_source()
        track = PacedVideoTrack(self._next_frame, self.source.fps, self._on_frame_sent)
        self.pc.addTrack(track)
        if self._codec is not None:
            prefer_codec(video[0], self._codec)
        try:
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except Exception as err:  # noqa: BLE001 - e.g. no codec in common: still the offer's fault
            raise ProtocolError(f"cannot answer this offer: {str(err)[:160] or type(err).__name__}") from None
        self._tasks = [asyncio.create_task(self._deliver()), asyncio.create_task(self._report()),
                       asyncio.create_task(self._watch_connect())]
        return self.pc.localDescription.sdp

    # ----- control ----------------------------------------------------------------------------------------------

    async def handle(self, msg: Message) -> None:
        """Apply a validated control message; ProtocolError if it does not apply now."""
        source = self.source
        if msg.type == "pause":
            source.pause()
        elif msg.type == "resume":
            source.resume()
        else:
            fields = msg.fields
            if msg.type == "image":
                # Decoding a picture takes a while: off the event loop, so other sessions keep their pace.
                async with self._decode_slots:
                    image = await asyncio.get_running_loop().run_in_executor(None, decode_image, fields["data"])
                fields = {"data": image}
            try:
                source.edit(_Ticket(msg.type, msg.id, time.perf_counter()), msg.type, fields)
            except ValueError as err:  # the engine's own checks (ProtocolError is a ValueError too)
                raise ProtocolError(f"{msg.type}: {err}", msg.id) from None

    # ----- media ----------------------------------------------------------------------------------------------

    async def _next_frame(self) -> Frame:
        try:
            return await self.source.next_frame()
        except Exception as err:  # noqa: BLE001 - generation failed: this session ends, the others go on
            if not self._closed:
                self._metrics.errors["generation"] += 1
                log_event("generation_failed", session=self.id, error=repr(err))
                self.notify("error", message="generation failed; this session is closed")
                self._on_end("generation failed")
            raise MediaStreamError from err

    def _on_frame_sent(self, frame: Frame, slot: int) -> None:
        now = time.perf_counter()
        self._frames_sent += 1
        self._metrics.frames_sent += 1
        self._sent_times = [t for t in self._sent_times if now - t < 1.0] + [now]
        if self._first_frame_s is None:
            self._first_frame_s = now - self._created
            self._metrics.first_frame.observe(self._first_frame_s)
            log_event("first_frame", session=self.id, ms=round(1e3 * self._first_frame_s, 1))
        for ticket in self.source.shown(frame.index):
            latency = now - ticket.received
            self._last_edit_ms = round(1e3 * latency, 1)
            self._metrics.edits[ticket.kind] += 1
            self._metrics.edit_to_frame.observe(latency)
            self.notify("applied", edit=ticket.kind, id=ticket.id, frame=slot, ms=self._last_edit_ms)

    # ----- reporting ------------------------------------------------------------------------------------------

    def notify(self, kind: str, **fields: Any) -> None:
        """Queue a message for the client; dropped if a client that does not read has let the queue fill."""
        try:
            self._outbox.put_nowait(encode(kind, **fields))
        except asyncio.QueueFull:
            pass

    async def _deliver(self) -> None:
        while True:
            await self._send(await self._outbox.get())

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(STATS_INTERVAL_S)
            self.notify("stats", **self.stats())

    def stats(self) -> dict[str, Any]:
        s = self.source.stats if self.source is not None else {}
        return {
            "session": self.id, "frames_sent": self._frames_sent, "fps": self.fps_sent(),
            "generated_fps": round(s.get("fps", 0.0), 2), "frames_generated": s.get("frames", 0),
            "queued_frames": self.queued_frames(), "paused": s.get("paused", False),
            "first_frame_ms": None if self._first_frame_s is None else round(1e3 * self._first_frame_s, 1),
            "edit_ms": self._last_edit_ms, "chunk_ms": s.get("last_chunk_ms", {}),
            "state_bytes": s.get("state_bytes", 0), "seed": s.get("seed"), "prompt": s.get("prompt"),
            "keys": s.get("keys"),  # world mode: the keys of the last step
        }

    def fps_sent(self) -> float:
        now = time.perf_counter()
        return float(sum(1 for t in self._sent_times if now - t < 1.0))

    def queued_frames(self) -> int:
        return self.source.stats.get("waiting_frames", 0) if self.source is not None else 0

    def gauges(self) -> SessionGauges:
        s = self.source.stats if self.source is not None else {}
        return SessionGauges(self.fps_sent(), float(s.get("fps", 0.0)), self.queued_frames())

    # ----- ending ---------------------------------------------------------------------------------------------

    async def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        log_event("peer_state", session=self.id, state=state)
        if state in ("failed", "closed") and not self._closed:
            self._on_end(f"peer connection {state}")

    async def _watch_connect(self) -> None:
        await asyncio.sleep(CONNECT_TIMEOUT_S)
        if self.pc.connectionState != "connected":
            self._on_end(f"the peer did not connect within {CONNECT_TIMEOUT_S:.0f} s")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        await self.pc.close()
        if self.source is not None:
            await self.source.close()
