"""The streaming engine: endless chunked generation at constant memory, with live edits."""

from .source import AsyncFrameSource
from .stream import DEFAULT_FPS, Frame, Stream, StreamOptions, next_chunks, warm_up

__all__ = ["AsyncFrameSource", "DEFAULT_FPS", "Frame", "Stream", "StreamOptions", "next_chunks", "warm_up"]
