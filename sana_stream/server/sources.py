"""What a session plays: a frame source that takes the session's edits.

A session only needs the small interface below (SessionSource). Both sources here are chunk generators run
by the engine's AsyncFrameSource (a worker thread, at most one finished chunk queued) behind a TrackedStream
(edit tickets; chunks made by the shared ChunkScheduler): the video source wraps the streaming engine's Stream, the world source a
world model stepped by the viewer's keys.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Protocol

from ..engine.source import AsyncFrameSource
from ..engine.stream import Frame
from .edits import TrackedStream
from .protocol import ProtocolError
from .scheduler import ChunkScheduler


class SessionSource(Protocol):
    fps: float

    async def next_frame(self) -> Frame: ...

    def edit(self, ticket: Any, kind: str, fields: dict[str, Any]) -> None:
        """Apply a validated edit (prompt, image as a PIL image, reset, action); ValueError if it does not
        apply to this source. `ticket` comes back from shown() with the first frame that shows the edit."""

    def shown(self, index: int) -> list[Any]: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    @property
    def stats(self) -> dict[str, Any]: ...

    async def close(self) -> None: ...


class _QueuedSource:
    """A chunk generator (next_chunk, stats, prompt, seed) played through a one-chunk queue."""

    def __init__(self, stream: Any, fps: float, scheduler: ChunkScheduler):
        self._stream, self.fps = stream, fps
        self._tracked = TrackedStream(stream, scheduler)
        self._source = AsyncFrameSource(self._tracked, max_chunks=1)

    async def next_frame(self) -> Frame:
        return await self._source.next_frame()

    def shown(self, index: int) -> list[Any]:
        return self._tracked.shown(index)

    def pause(self) -> None:
        self._source.pause()

    def resume(self) -> None:
        self._source.resume()

    @property
    def stats(self) -> dict[str, Any]:
        s = self._source.stats
        # Frames not yet sent: the chunk being played out plus the finished chunk waiting behind it.
        waiting = s["queued_frames"] + s["queued_chunks"] * self._tracked.last_chunk_frames
        return {**s, "waiting_frames": waiting, "seed": self._stream.seed, "prompt": self._stream.prompt}

    async def close(self) -> None:
        await self._source.close()

    def edit(self, ticket: Any, kind: str, fields: dict[str, Any]) -> None:
        self._tracked.edit(ticket, self._change(kind, fields))

    def _change(self, kind: str, fields: dict[str, Any]) -> Callable[[], None]:
        """The call that applies a validated edit, run by the generation thread at the next chunk boundary;
        ProtocolError at once for an edit this source does not take. Subclasses add their own kinds."""
        stream = self._stream
        if kind == "image":
            return lambda: stream.set_image(fields["data"])
        if kind == "reset":
            return lambda: stream.reset(fields["seed"])
        raise ProtocolError(f"{kind} is not an edit")


class VideoSource(_QueuedSource):
    """Text- (or image-) prompted video from the streaming engine."""

    def __init__(self, pipe: Any, prompt: str, seed: int | None, scheduler: ChunkScheduler):
        stream = pipe.stream(prompt, seed=seed)
        super().__init__(stream, stream.options.fps, scheduler)

    @classmethod
    async def create(cls, pipe: Any, prompt: str, seed: int | None,
                     scheduler: ChunkScheduler) -> "VideoSource":
        # Encoding the first prompt runs the text encoder: kept off the event loop.
        return await asyncio.get_running_loop().run_in_executor(None, cls, pipe, prompt, seed, scheduler)

    def _change(self, kind: str, fields: dict[str, Any]) -> Callable[[], None]:
        if kind == "prompt":
            return lambda: self._stream.set_prompt(fields["text"], transition_chunks=fields["transition"])
        if kind == "action":
            raise ProtocolError("actions need a world-mode session; this one plays video (offer with "
                                "\"mode\": \"world\")")
        return super()._change(kind, fields)


class WorldSource(_QueuedSource):
    """A world model's frames, one step per chunk, moved by the keys the viewer holds."""

    def __init__(self, world: Any, prompt: str, seed: int | None, scheduler: ChunkScheduler):
        from .world import WorldStream

        stream = WorldStream(world.sibling(1), prompt or None, seed)
        super().__init__(stream, stream.fps, scheduler)

    def _change(self, kind: str, fields: dict[str, Any]) -> Callable[[], None]:
        if kind == "action":
            return lambda: self._stream.set_keys(fields["keys"])
        if kind == "prompt":
            return lambda: self._stream.set_prompt(fields["text"])
        return super()._change(kind, fields)
