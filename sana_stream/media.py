"""Writing frames to files: PNG stills and MP4 video encoded as the frames arrive.

    write_png("cat.png", image)                     # uint8 (H, W, 3)
    write_mp4("boat.mp4", frames, fps=16)           # uint8 (F, H, W, 3), all at once
    with VideoWriter("long.mp4", 16, 832, 480) as out:
        for chunk in chunks:                        # uint8 (N, H, W, 3) or one frame (H, W, 3)
            out.write(chunk)                        # encoded now: nothing is kept beyond the encoder's lookahead
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np
from av.codec import Codec
from av.codec.codec import UnknownCodecError
from PIL import Image

DEFAULT_CODEC = "libx264"
FALLBACK_CODEC = "mpeg4"  # FFmpeg's built-in encoder: present in every PyAV build, unlike libx264
DEFAULT_CRF = 18  # x264's "visually lossless" end: generated frames are smooth and compress well anyway
# Without a bitrate, FFmpeg's mpeg4 encoder picks 200 kb/s whatever the size, which smears 480p badly;
# this many bits per pixel keeps it clean.
FALLBACK_BITS_PER_PIXEL = 0.5


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Save one uint8 (H, W, 3) RGB image as PNG."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"write_png takes a uint8 (H, W, 3) array, got {image.dtype} {image.shape}")
    Image.fromarray(image).save(path, format="PNG")


def _encoder(name: str) -> str:
    """`name` if this FFmpeg build can encode with it; libx264 falls back to mpeg4 (LGPL builds lack it)."""
    try:
        Codec(name, "w")
        return name
    except UnknownCodecError:
        if name == DEFAULT_CODEC:
            return _encoder(FALLBACK_CODEC)
        raise ValueError(f"this FFmpeg build has no {name!r} video encoder") from None


class VideoWriter:
    """An MP4 file fed frame by frame or chunk by chunk; each frame is encoded and muxed as it comes.

    The pixel format is yuv420p (what every player decodes), which halves the chroma resolution and so needs
    an even width and height: odd sizes are refused rather than silently padded or cropped.
    Quality: `crf` (x264's constant rate factor, lower = better, default 18) or a fixed `bitrate` in bit/s.
    Without libx264 the writer falls back to mpeg4, which has no crf: it gets `bitrate` or about 0.5 bit/pixel.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float,
        width: int,
        height: int,
        *,
        codec: str = DEFAULT_CODEC,
        crf: int | None = None,
        bitrate: int | None = None,
    ):
        for name, value in (("width", width), ("height", height)):
            if not isinstance(value, int) or value < 2 or value % 2:
                raise ValueError(f"MP4 (yuv420p) needs an even {name} ≥ 2, got {value!r}")
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps!r}")
        if crf is not None and bitrate is not None:
            raise ValueError("give crf or bitrate, not both")
        self.width, self.height = width, height
        self.frames_written = 0
        # A Fraction keeps 29.97-style rates exact; timestamps count frames at 1/fps.
        rate = Fraction(fps).limit_denominator(1001)
        self.codec = _encoder(codec)
        self._container = av.open(str(path), mode="w", format="mp4")
        self._stream = self._container.add_stream(self.codec, rate=rate)
        self._stream.width, self._stream.height = width, height
        self._stream.pix_fmt = "yuv420p"
        # Frames are stamped in this time base; the MP4 muxer replaces the stream's own once the header is
        # written, so it is kept here rather than read back from the stream.
        self._time_base = 1 / rate
        self._stream.time_base = self._time_base
        if bitrate is not None:
            self._stream.bit_rate = int(bitrate)
        elif self.codec == "libx264":
            self._stream.options = {"crf": str(DEFAULT_CRF if crf is None else crf)}
        else:
            self._stream.bit_rate = int(FALLBACK_BITS_PER_PIXEL * width * height * rate)

    def write(self, frames: np.ndarray) -> None:
        """Encode uint8 frames, (N, H, W, 3) or one (H, W, 3), at this writer's size."""
        if self._container is None:
            raise ValueError("this VideoWriter is closed")
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (self.height, self.width, 3):
            raise ValueError(f"frames must be uint8 (N, {self.height}, {self.width}, 3), got {frames.dtype} "
                             f"{frames.shape}")
        for frame in frames:
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            picture.pts = self.frames_written
            picture.time_base = self._time_base
            self._container.mux(self._stream.encode(picture))
            self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder and finish the file; closing twice is harmless."""
        if self._container is None:
            return
        container, self._container = self._container, None
        try:
            container.mux(self._stream.encode(None))
        finally:
            container.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        # On an error the frames written so far still make a playable file.
        self.close()


def write_mp4(path: str | Path, frames: np.ndarray, fps: float = 16, **options: int | str | None) -> None:
    """Save uint8 (F, H, W, 3) frames as an MP4; `options` are VideoWriter's codec, crf and bitrate."""
    frames = np.asarray(frames)
    if frames.ndim != 4:
        raise ValueError(f"write_mp4 takes uint8 (F, H, W, 3) frames, got shape {frames.shape}")
    with VideoWriter(path, fps, frames.shape[2], frames.shape[1], **options) as out:
        out.write(frames)
