"""World mode: a world model stepped by the keys a viewer holds, and the `/ws/world` remote step() API.

WorldStream is a chunk source like the streaming engine's Stream (next_chunk + stats), so a world session is
played by the same frame queue, edit tickets and paced track as a video session. Each chunk is one world
step. The browser sends key edges; the step takes every key held at any moment since the previous step, so a
tap shorter than a step still moves the camera. Prompt, image and seed changes restart the world at the next
step: a new prompt continues from the frame on screen, an image starts from that image.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from ..engine.stream import Frame
from .log import log_event

_ON_SCREEN = object()  # restart from the frame last made


class WorldStream:
    """One world (a WorldModel sibling) as an endless chunk source steered by keys."""

    def __init__(self, world: Any, prompt: str | None, seed: int | None):
        from worldmodel.actions import parse_keys

        self._parse_keys = parse_keys
        self.world, self.fps = world, float(world.fps)
        self.prompt = prompt or world.config.prompt
        self.seed = seed
        self._lock = threading.Lock()
        self._held: tuple[str, ...] = ()
        self._since_step: set[str] = set()  # every key held at some moment since the last step
        self._restart: dict[str, Any] | None = {"seed": seed, "image": None, "prompt": self.prompt}
        self._next_index = 0
        self._last: np.ndarray | None = None
        self.stats: dict[str, Any] = {"frames": 0, "chunks": 0, "fps": 0.0, "state_bytes": 0, "last_chunk_ms": {},
                                      "keys": "none"}

    # ----- edits (thread-safe; applied at the next step) --------------------------------------------------------

    def set_keys(self, keys: str) -> None:
        """The keys held now ("none", "w", "a+w"); ValueError for unknown or opposite keys."""
        held = self._parse_keys(keys)
        with self._lock:
            self._held = held
            self._since_step.update(held)

    def set_prompt(self, text: str) -> None:
        with self._lock:
            self.prompt = text
            self._restart = {"seed": self.seed, "image": _ON_SCREEN, "prompt": text}

    def set_image(self, image: Any) -> None:
        with self._lock:
            self._restart = {"seed": self.seed, "image": image, "prompt": self.prompt}

    def reset(self, seed: int | None) -> None:
        with self._lock:
            self._restart = {"seed": seed, "image": None, "prompt": self.prompt}

    # ----- stepping ---------------------------------------------------------------------------------------------

    def next_chunk(self) -> list[Frame]:
        start = time.perf_counter()
        with self._lock:
            restart, self._restart = self._restart, None
            keys = self._combined_keys()
            self._since_step = set(self._held)
        if restart is not None:
            if restart["image"] is _ON_SCREEN:
                restart["image"] = self._last
            obs = self.world.reset(**restart)
            self.seed = obs.info.get("seed", restart["seed"])
        else:
            obs = self.world.step(keys)
        first = self._next_index
        frames = [Frame.at(np.ascontiguousarray(p), first + i, self.fps) for i, p in enumerate(obs.frames)]
        self._next_index += len(frames)
        self._last = np.asarray(frames[-1])
        seconds = time.perf_counter() - start
        s = self.stats
        s["frames"] += len(frames)
        s["chunks"] += 1
        s["fps"] = len(frames) / seconds if seconds > 0 else 0.0
        s["last_chunk_ms"] = obs.info.get("timings_ms", {})
        s["keys"] = keys
        return frames

    def _combined_keys(self) -> str:
        """Held keys plus keys tapped since the last step; if a tap and a held key are opposites, the held one."""
        text = "+".join(sorted(self._since_step)) or "none"
        try:
            self._parse_keys(text)
            return text
        except ValueError:
            return "+".join(self._held) or "none"


async def serve_world_socket(ws: ServerConnection, world: Any, generation_lock: threading.Lock) -> None:
    """The `/ws/world` route: the worldmodel package's msgpack request/reply protocol, one WorldSession per
    connection, each request run off the event loop and in turn with the streaming sessions."""
    from worldmodel.protocol import WorldSession, pack

    session = WorldSession(world.sibling)
    loop = asyncio.get_running_loop()

    def handle(data: bytes) -> bytes:
        with generation_lock:
            return session.handle_message(data)

    log_event("world_open", peer=str(ws.remote_address))
    try:
        async for message in ws:
            if isinstance(message, str):
                reply = pack({"error": "send binary msgpack frames, not text"})
            else:
                reply = await loop.run_in_executor(None, handle, message)
            await ws.send(reply)
    except ConnectionClosed:
        pass
    finally:
        session.close()
        log_event("world_close", peer=str(ws.remote_address))
