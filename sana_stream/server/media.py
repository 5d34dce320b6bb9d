"""The WebRTC side of a session: a video track paced at the stream's frame rate, codec choice and bitrate.

aiortc's sender calls `recv()` as fast as it returns. Our frames come in bursts (a chunk at a time), so the
track spaces them itself: frame n is due at start + n / fps, and its pts says so on the 90 kHz RTP clock. If
generation stalls (a slow chunk, several sessions sharing the CPU), the clock jumps ahead to now instead of
letting the late frames out in a burst, which a browser's jitter buffer would answer by fast-forwarding; pts
keeps following wall time, so receivers never see the stream drift from real time.
"""

from __future__ import annotations

import asyncio
from fractions import Fraction
from typing import Awaitable, Callable

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCRtpSender, RTCRtpTransceiver
from aiortc.codecs import h264, vpx

CLOCK_RATE = 90000
TIME_BASE = Fraction(1, CLOCK_RATE)
MIME_TYPES = {"vp8": "video/VP8", "h264": "video/H264"}
DEFAULT_BITRATE = 3_000_000
# A frame later than this many frame periods re-anchors the clock (smaller lags are absorbed silently).
MAX_LAG_FRAMES = 2


def set_bitrate(bitrate: int) -> None:
    """Start every new encoder at `bitrate` bit/s and let the receiver's REMB move it within [½×, 2×].

    aiortc keeps the start value and the REMB clamp range in module constants (VP8: 0.5 Mbps start, at most
    1.5; H.264: 1 and 3), read when an encoder is created and whenever REMB arrives; they are process-wide,
    so the server sets them once at start-up.
    """
    if not isinstance(bitrate, int) or not 50_000 <= bitrate <= 100_000_000:
        raise ValueError(f"bitrate must be an int in [50 kbit/s, 100 Mbit/s] (bit/s), got {bitrate!r}")
    for codec in (vpx, h264):
        codec.DEFAULT_BITRATE, codec.MIN_BITRATE, codec.MAX_BITRATE = bitrate, bitrate // 2, bitrate * 2


def prefer_codec(transceiver: RTCRtpTransceiver, codec: str) -> None:
    """Offer only `codec` ("vp8" or "h264") on this transceiver; the browser then has to pick it."""
    capabilities = RTCRtpSender.getCapabilities("video").codecs
    transceiver.setCodecPreferences([c for c in capabilities if c.mimeType == MIME_TYPES[codec]])


def to_video_frame(pixels: np.ndarray) -> av.VideoFrame:
    """An av frame from uint8 (H, W, 3) pixels, cropped to even sides (the encoders' yuv420p needs them)."""
    height, width = pixels.shape[0] & ~1, pixels.shape[1] & ~1
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels[:height, :width]), format="rgb24")


class PacedVideoTrack(MediaStreamTrack):
    """A video track that takes frames from `next_frame()` and sends them at `fps`.

    on_frame(frame, slot) is called for each frame as it is sent; `slot` is its place on the track's clock
    (pts = slot · 90000 / fps), which a receiver recovers from the RTP timestamps.
    """

    kind = "video"

    def __init__(self, next_frame: Callable[[], Awaitable[np.ndarray]], fps: float,
                 on_frame: Callable[[np.ndarray, int], None] | None = None):
        super().__init__()
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps!r}")
        self._next_frame, self.fps, self._on_frame = next_frame, fps, on_frame
        self._start: float | None = None
        self._slot = -1

    async def recv(self) -> av.VideoFrame:
        pixels = await self._next_frame()
        now = asyncio.get_running_loop().time()
        if self._start is None:
            self._start, slot = now, 0
        else:
            slot = self._slot + 1
            due = self._start + slot / self.fps
            if now - due > MAX_LAG_FRAMES / self.fps:
                slot = max(slot, round((now - self._start) * self.fps))  # re-anchor: no burst after a stall
            elif due > now:
                await asyncio.sleep(due - now)
        self._slot = slot
        frame = to_video_frame(pixels)
        frame.pts, frame.time_base = round(slot * CLOCK_RATE / self.fps), TIME_BASE
        if self._on_frame is not None:
            self._on_frame(pixels, slot)
        return frame
