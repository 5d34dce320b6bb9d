"""RemoteWorldModel: the WorldModel API, served by a sana-stream server over its `/ws/world` WebSocket.

    with RemoteWorldModel("ws://host:8000/ws/world", batch_size=4) as wm:
        obs = wm.reset(seed=0, image=start_frame)
        obs = wm.step(["w", "a", "none", "w+a"])
        snap = wm.snapshot(); ...; wm.restore(snap)

Calls block until the server answers. Bad input raises ValueError with the server's message, and, as with a
local WorldModel, the world is unchanged after a rejected call. Snapshots live on the server; `release()` frees
one (the server keeps a limited number per connection), and closing the connection frees them all.
"""

from __future__ import annotations

import itertools
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .model import Observation
from .protocol import MAX_MESSAGE_BYTES, ProtocolError, pack, unpack


@dataclass(frozen=True)
class RemoteSnapshot:
    """A handle to a snapshot kept by the server for the connection that took it."""

    handle: int
    frame_index: int
    steps: int
    _client: int  # id() of the RemoteWorldModel that took it


class RemoteWorldModel:
    def __init__(self, url: str, *, batch_size: int = 1, timeout: float | None = 120.0):
        """Connect and open `batch_size` worlds. timeout: seconds to wait for each answer (None: forever)."""
        from websockets.sync.client import connect

        self._timeout = timeout
        self._ids = itertools.count(1)
        # The connection is a context manager that lives as long as this object: an ExitStack holds it open.
        self._resources = ExitStack()
        self._ws = self._resources.enter_context(connect(url, max_size=MAX_MESSAGE_BYTES, open_timeout=timeout))
        try:
            self.info: dict[str, Any] = self._call("open", batch_size=batch_size)
        except BaseException:
            self._resources.close()
            raise
        self.batch_size: int = self.info["batch_size"]
        self.frame_size: tuple[int, int] = tuple(self.info["frame_size"])
        self.fps: float = self.info["fps"]
        self.keys: tuple[str, ...] = tuple(self.info["keys"])

    # ----- the WorldModel API --------------------------------------------------------------------------------

    def reset(self, seed: int | None = None, image: Any = None, prompt: str | list[str] | None = None,
              pose: Any = None) -> Observation:
        """As WorldModel.reset; image: uint8 array(s), PIL image(s) or local paths, sent as pixels."""
        return self._observation("reset", seed=seed, image=_pixels(image), prompt=prompt, pose=pose)

    def step(self, action: Any) -> Observation:
        """As WorldModel.step; info gains round_trip_ms (the call as this client saw it)."""
        return self._observation("step", action=action)

    def snapshot(self) -> RemoteSnapshot:
        reply = self._call("snapshot")
        return RemoteSnapshot(reply["handle"], reply["frame_index"], reply["steps"], id(self))

    def restore(self, snapshot: RemoteSnapshot) -> None:
        self._call("restore", handle=self._handle(snapshot))

    def release(self, snapshot: RemoteSnapshot) -> None:
        """Free a snapshot on the server; it cannot be restored afterwards."""
        self._call("release", handle=self._handle(snapshot))

    def close(self) -> None:
        self._resources.close()

    def __enter__(self) -> "RemoteWorldModel":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ----- internals -----------------------------------------------------------------------------------------

    def _handle(self, snapshot: Any) -> int:
        if not isinstance(snapshot, RemoteSnapshot):
            raise ValueError(f"expected a RemoteSnapshot from snapshot(), got {type(snapshot).__name__}")
        if snapshot._client != id(self):
            raise ValueError("this snapshot was taken on another connection; it cannot be used on this one")
        return snapshot.handle

    def _observation(self, method: str, **args: Any) -> Observation:
        start = time.perf_counter()
        reply = self._call(method, **args)
        reply["info"]["round_trip_ms"] = round(1e3 * (time.perf_counter() - start), 3)
        return Observation(reply["frames"], reply["info"])

    def _call(self, method: str, **args: Any) -> Any:
        rid = next(self._ids)
        self._ws.send(pack({"id": rid, "method": method, "args": args}))
        reply = unpack(self._ws.recv(timeout=self._timeout))
        if not isinstance(reply, dict) or reply.get("id") not in (rid, None):
            raise ProtocolError(f"the server answered out of turn: {reply!r:.200}")
        if "error" in reply:  # an error without an id: the server could not read the request at all
            raise ValueError(reply["error"])
        if "result" not in reply:
            raise ProtocolError(f"the server's answer has neither a result nor an error: {reply!r:.200}")
        return reply["result"]


def _pixels(image: Any) -> np.ndarray | None:
    """Start frame(s) as uint8 (H, W, 3) or (B, H, W, 3) pixels: files are read here, not on the server."""
    if image is None or isinstance(image, np.ndarray):
        return image
    if isinstance(image, (list, tuple)):
        frames = [_pixels(img) for img in image]
        if len({f.shape for f in frames}) > 1:
            raise ValueError("start images for a batch must all have the same size")
        return np.stack(frames)
    from PIL import Image

    if isinstance(image, (str, Path)):
        if not Path(image).is_file():
            raise ValueError(f"image file not found: {image}")
        with Image.open(image) as img:
            return np.asarray(img.convert("RGB"))
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    raise ValueError(f"image must be a uint8 array, a PIL image or a path, got {type(image).__name__}")
