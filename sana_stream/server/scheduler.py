"""One model, many sessions: chunks asked for while the model is busy are generated together, in one batch.

Each session's frame source asks for its next chunk from its own worker thread and blocks. Whichever waiting
thread gets the model's lock next runs every request pending at that moment through the engine's
`next_chunks`, which batches the transformer passes of streams whose shapes fit; the others find their chunk
made when they get the lock. N viewers then cost one batched pass per denoising step instead of N passes taken
in turn. Sources that are not engine streams (world-mode sessions, `/ws/world` calls) run alone, in turn,
under the same lock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from ..engine.stream import Frame, Stream, next_chunks


@dataclass
class _Request:
    stream: Stream
    done: threading.Event = field(default_factory=threading.Event)
    frames: list[Frame] | None = None
    error: BaseException | None = None


class ChunkScheduler:
    def __init__(self) -> None:
        self.lock = threading.Lock()  # the model's turn
        self._pending: list[_Request] = []
        self._pending_lock = threading.Lock()
        self.batches = 0
        self.batched_chunks = 0

    def next_chunk(self, source: Any) -> list[Frame]:
        """The source's next chunk, generated with whatever else is waiting (blocks until made)."""
        if not isinstance(source, Stream):
            with self.lock:
                return source.next_chunk()
        request = _Request(source)
        with self._pending_lock:
            self._pending.append(request)
        with self.lock:
            if not request.done.is_set():
                with self._pending_lock:
                    batch, self._pending = self._pending, []
                self._run(batch)
        if request.error is not None:
            raise request.error
        return request.frames

    def _run(self, batch: list[_Request]) -> None:
        try:
            for request, frames in zip(batch, next_chunks([r.stream for r in batch])):
                request.frames = frames
        except Exception:  # noqa: BLE001 - one session's failure must not reach the others: retry each alone
            for request in batch:
                try:
                    request.frames = next_chunks([request.stream])[0]
                except Exception as err:  # noqa: BLE001 - handed to that session's own worker
                    request.error = err
        self.batches += 1
        self.batched_chunks += len(batch)
        for request in batch:
            request.done.set()
