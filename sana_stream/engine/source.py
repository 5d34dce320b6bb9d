"""Frames for asyncio consumers (the WebRTC video track): generation in a worker thread, back-pressure on a
queue of at most `max_chunks` finished chunks.

A chunked generator produces bursts. An unbounded queue would let latency grow without limit, so the worker
blocks as soon as a finished chunk is waiting: at any time there is at most one chunk being played, one
waiting, and one being generated — and an edit reaches the picture within about two chunks.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import Any

from .stream import Frame, Stream

_STOP = object()


class AsyncFrameSource:
    def __init__(self, stream: Stream, *, max_chunks: int = 1):
        if not isinstance(max_chunks, int) or max_chunks < 1:
            raise ValueError(f"max_chunks must be a positive int, got {max_chunks!r}")
        self.stream = stream
        self.max_chunks = max_chunks
        self._queue: asyncio.Queue | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._running = threading.Event()  # cleared while paused: the worker waits before its next chunk
        self._running.set()
        self._closed = False
        self._playing: deque[Frame] = deque()
        self._last: Frame | None = None
        self._error: BaseException | None = None

    # ----- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start generating; call from the event loop that will consume the frames."""
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue(maxsize=self.max_chunks)
        self._thread = threading.Thread(target=self._work, name="sana-stream-generate", daemon=True)
        self._thread.start()

    async def close(self) -> None:
        """Stop the worker and wait for it; frames still queued are dropped."""
        self._closed = True
        self._running.set()
        if self._queue is not None:
            while not self._queue.empty():
                self._queue.get_nowait()  # unblocks a worker waiting to put
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
            self._thread = None

    def _work(self) -> None:
        try:
            while not self._closed:
                self._running.wait()
                if self._closed:
                    break
                chunk = self.stream.next_chunk()
                # Blocks while the queue is full: back-pressure instead of a backlog.
                asyncio.run_coroutine_threadsafe(self._queue.put(chunk), self._loop).result()
        except BaseException as err:  # surfaced to the consumer, which owns the error handling
            self._error = err
            if not self._closed:
                asyncio.run_coroutine_threadsafe(self._queue.put(_STOP), self._loop).result()

    # ----- consuming ------------------------------------------------------------------------------------------

    async def next_frame(self) -> Frame:
        """The next frame; while paused, the last frame again (the picture freezes, the state is kept)."""
        if self._closed:
            raise RuntimeError("this frame source is closed")
        self.start()
        if self.paused and self._last is not None:
            return self._last
        if not self._playing:
            chunk = await self._queue.get()
            if chunk is _STOP:
                raise RuntimeError(f"generation failed: {self._error!r}") from self._error
            self._playing.extend(chunk)
        self._last = self._playing.popleft()
        return self._last

    # ----- edits (thread-safe, applied at the next chunk boundary) -------------------------------------------

    def set_prompt(self, text: str, **options: Any) -> None:
        self.stream.set_prompt(text, **options)

    def set_image(self, image: Any) -> None:
        self.stream.set_image(image)

    def reset(self, seed: int | None = None) -> None:
        self.stream.reset(seed)

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    @property
    def stats(self) -> dict[str, Any]:
        queued = self._queue.qsize() if self._queue is not None else 0
        return {**self.stream.stats, "queued_chunks": queued, "queued_frames": len(self._playing),
                "paused": self.paused}
