"""The streaming engine: endless chunked generation at constant memory, with live edits."""

from .stream import DEFAULT_FPS, Frame, Stream, StreamOptions

__all__ = ["DEFAULT_FPS", "Frame", "Stream", "StreamOptions"]
