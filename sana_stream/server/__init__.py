"""The WebRTC streaming-edit server (`sana-stream serve`): browser page, signaling/control socket, metrics."""

from .app import Server, ServerConfig

__all__ = ["Server", "ServerConfig"]
