"""Which frame first shows an edit: a Stream wrapper that tags each edit with the chunk that carries it.

A Stream applies edits at its next chunk boundary, in its worker thread. To report prompt-to-photon latency
the session needs the index of the first frame made under the edit. The wrapper applies the edit and queues
its ticket under one lock, and takes the queued tickets just before generating a chunk: a ticket taken there
belongs to an edit the Stream has already received, so a frame is never reported early. (An edit arriving
between the two steps is reported one chunk late, which only overstates the latency.)
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Callable

from ..engine.stream import Frame, Stream
from .scheduler import ChunkScheduler


class TrackedStream:
    """What AsyncFrameSource needs of a Stream (next_chunk, stats), plus edits with tickets.

    The shared `scheduler` runs the chunk: with the other sessions' waiting chunks in one batch, never
    concurrently with them (that would only split the same cores between threads and oversubscribe them)."""

    def __init__(self, stream: Stream, scheduler: ChunkScheduler | None = None):
        self.stream = stream
        self._scheduler = scheduler or ChunkScheduler()
        self._lock = threading.Lock()
        self._waiting: list[Any] = []
        self._landed: deque[tuple[int, list[Any]]] = deque()  # (first frame index, tickets)
        self.last_chunk_frames = 0

    def edit(self, ticket: Any, apply: Callable[[], None]) -> None:
        """Run `apply` (a Stream edit) and remember `ticket` until the first frame that shows it is made."""
        with self._lock:
            apply()
            self._waiting.append(ticket)

    def next_chunk(self) -> list[Frame]:
        with self._lock:
            tickets, self._waiting = self._waiting, []
        frames = self._scheduler.next_chunk(self.stream)
        self.last_chunk_frames = len(frames)
        if tickets and frames:
            with self._lock:
                self._landed.append((frames[0].index, tickets))
        return frames

    def shown(self, index: int) -> list[Any]:
        """Tickets of the edits first visible in frame `index` (or earlier): each is returned once."""
        out: list[Any] = []
        with self._lock:
            while self._landed and self._landed[0][0] <= index:
                out.extend(self._landed.popleft()[1])
        return out

    @property
    def stats(self) -> dict[str, Any]:
        return self.stream.stats
