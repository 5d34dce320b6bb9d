"""The streaming state: everything a stream remembers of its past, at a size that never grows.

Per block: the linear-attention sums S = Σ v k̃ᵀ (B, h, d, d) and z = Σ φ(k) (B, h, d) in fp32, and the FFN
features of the last frame (B, H·W, D) that the next chunk's temporal conv sees as its left neighbour.

The newest chunk's own sums are kept apart from the older ones, and the last frame of the chunk before it is
kept too, so the newest chunk can be replaced exactly (a prompt switch re-runs it under the new prompt) without
subtracting anything:
- global history: older = running sum of every chunk before the newest (O(1) per chunk);
- a window of N chunks: a ring of the last N chunks' own sums, re-added on each change (N is fixed, so still
  O(1) in stream length, and exact: no rounding drift however long the stream runs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .attention import AttentionSums


@dataclass
class BlockRecord:
    """What one block contributes when a finished chunk is appended."""

    sums: AttentionSums
    last_features: torch.Tensor | None  # (B, H·W, D), None for image models


class StreamState:
    def __init__(
        self,
        num_layers: int,
        batch_size: int,
        heads: int,
        head_dim: int,
        window: int | None = None,
        device: torch.device | str | None = None,
    ):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if window is not None and (not isinstance(window, int) or window < 1):
            raise ValueError(f"window must be None (global history) or a positive int, got {window!r}")
        self.batch_size, self.window = batch_size, window
        self.frames = 0  # latent frames appended: the absolute RoPE index of the next chunk
        self.chunks = 0
        self.newest_frames = 0  # latent frames of the newest chunk
        self.grid: tuple[int, int] | None = None  # (H, W) tokens per frame, fixed by the first chunk
        # slots[l] holds chunk entries: global = [older-sum, newest]; windowed = a ring of `window` chunks.
        slots = 2 if window is None else window
        zeros = lambda *shape: [torch.zeros((slots, batch_size, heads, *shape), device=device)  # noqa: E731
                                for _ in range(num_layers)]
        self._kv, self._z = zeros(head_dim, head_dim), zeros(head_dim)
        self._total_kv = [torch.zeros_like(kv[0]) for kv in self._kv]
        self._total_z = [torch.zeros_like(z[0]) for z in self._z]
        self._last: list[torch.Tensor | None] = [None] * num_layers  # newest chunk's last frame
        self._before: list[torch.Tensor | None] = [None] * num_layers  # last frame of the chunk before it

    @property
    def num_layers(self) -> int:
        return len(self._kv)

    def _newest_slot(self) -> int:
        return 1 if self.window is None else (self.chunks - 1) % self.window

    def history(
        self, layer: int, exclude_newest: bool = False
    ) -> tuple[AttentionSums | None, torch.Tensor | None]:
        """(S, z) and the FFN features of the frame just before the input, that a chunk sees at `layer`.
        exclude_newest: the history the newest chunk itself saw (to re-run it); None when empty."""
        if not exclude_newest:
            if self.chunks == 0:
                return None, None
            return (self._total_kv[layer], self._total_z[layer]), self._last[layer]
        if self.chunks <= 1:
            return None, None
        keep = [i for i in range(self._kv[layer].shape[0]) if i != self._newest_slot()]
        sums = (self._kv[layer][keep].sum(0), self._z[layer][keep].sum(0))
        return sums, self._before[layer]

    def evicted(self, layer: int) -> AttentionSums | None:
        """The sums the next append pushes out of the window: the oldest chunk's, or zeros while the window is not
        yet full (the ring slot the append will fill is still empty); None for a global history."""
        if self.window is None:
            return None
        slot = self.chunks % self.window
        # Copies, not views: a view's offset moves round the ring, and a compiled model would recompile for it.
        return self._kv[layer][slot].clone(), self._z[layer][slot].clone()

    def append(self, records: list[BlockRecord], frames: int, grid: tuple[int, int],
               replace_newest: bool = False) -> None:
        """Add one finished chunk (`frames` latent frames on a `grid` of tokens) to the history, or, with
        replace_newest, put it in place of the newest chunk (same frames, re-run under another prompt)."""
        if len(records) != self.num_layers:
            raise ValueError(f"expected {self.num_layers} block records, got {len(records)}")
        if replace_newest:
            if self.chunks == 0:
                raise ValueError("there is no appended chunk to replace")
            if frames != self.newest_frames:
                raise ValueError(f"the replacement has {frames} frames, the newest chunk {self.newest_frames}")
        for i, rec in enumerate(records):
            kv, z = self._kv[i], self._z[i]
            if not replace_newest:
                if self.window is None:
                    kv[0] += kv[1]  # the previous newest joins the older sum
                    z[0] += z[1]
                if rec.last_features is not None:
                    self._before[i], self._last[i] = self._last[i], self._before[i]
            slot = 1 if self.window is None else (self.chunks - (1 if replace_newest else 0)) % self.window
            kv[slot], z[slot] = rec.sums
            torch.sum(kv, dim=0, out=self._total_kv[i])
            torch.sum(z, dim=0, out=self._total_z[i])
            if rec.last_features is not None:
                if self._last[i] is None:
                    self._last[i] = rec.last_features.detach().clone()
                    self._before[i] = torch.zeros_like(self._last[i])
                else:
                    self._last[i].copy_(rec.last_features)
        if not replace_newest:
            self.grid = grid
            self.frames += frames
            self.chunks += 1
            self.newest_frames = frames

    def check_fits(self, batch_size: int, grid: tuple[int, int]) -> None:
        if batch_size != self.batch_size:
            raise ValueError(f"chunk batch size {batch_size} does not fit the state's batch size {self.batch_size}")
        if self.grid is not None and grid != self.grid:
            raise ValueError(f"chunk token grid {grid} (H, W) does not fit the state's grid {self.grid}")

    def _tensors(self) -> list[torch.Tensor]:
        tails = [t for t in (*self._last, *self._before) if t is not None]
        return [*self._kv, *self._z, *self._total_kv, *self._total_z, *tails]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._tensors())

    def clone(self) -> "StreamState":
        """An independent copy (fork a stream or a world); costs one copy of a constant-size state."""
        other = object.__new__(StreamState)
        other.__dict__.update(self.__dict__)
        for name in ("_kv", "_z", "_total_kv", "_total_z", "_last", "_before"):
            setattr(other, name, [None if t is None else t.clone() for t in getattr(self, name)])
        return other

    def frame_start(self, replace_newest: bool = False) -> int:
        """The absolute RoPE frame index of the next chunk (or of the newest one, to re-run it)."""
        return self.frames - (self.newest_frames if replace_newest else 0)


class StateBatch:
    """Several streams' states seen as one batch, so their chunks run in one forward pass.

    Each stream keeps its own StreamState (its own place in time, window ring and history); the batch hands the
    model their histories stacked along the batch axis and gives every stream back its own rows of the chunk it
    appended. A stream with no history yet contributes zero sums and zero features, which is exactly what
    having none means to the attention and to the temporal conv. A stream listed more than once (rows that read
    one history under different conditioning, as action guidance's) appends a chunk once, from its first rows."""

    def __init__(self, states: list[StreamState]):
        if not states or not all(isinstance(s, StreamState) for s in states):
            raise ValueError("a StateBatch needs one or more StreamStates")
        if len({s.num_layers for s in states}) != 1:
            raise ValueError("the states come from different models")
        self.states = states
        self.batch_size = sum(s.batch_size for s in states)
        # Every denoising step of a chunk reads the same histories: each layer's are stacked once, until append.
        self._stacked: dict[tuple[int, bool | str], Any] = {}

    @property
    def num_layers(self) -> int:
        return self.states[0].num_layers

    def frame_start(self, replace_newest: bool = False) -> list[int]:
        """One RoPE frame index per batch row."""
        return [s.frame_start(replace_newest) for s in self.states for _ in range(s.batch_size)]

    def check_fits(self, batch_size: int, grid: tuple[int, int]) -> None:
        if batch_size != self.batch_size:
            raise ValueError(f"chunk batch size {batch_size} does not fit the states' {self.batch_size} rows")
        for s in self.states:
            s.check_fits(s.batch_size, grid)

    def history(self, layer: int, exclude_newest: bool = False
                ) -> tuple[AttentionSums | None, torch.Tensor | None]:
        key = (layer, exclude_newest)
        if key not in self._stacked:
            parts = [s.history(layer, exclude_newest) for s in self.states]
            self._stacked[key] = (self._stack_sums([sums for sums, _ in parts]),
                                  self._stack([features for _, features in parts]))
        return self._stacked[key]

    def evicted(self, layer: int) -> AttentionSums | None:
        key = (layer, "evicted")
        if key not in self._stacked:
            self._stacked[key] = self._stack_sums([s.evicted(layer) for s in self.states])
        return self._stacked[key]

    def _stack_sums(self, parts: list[AttentionSums | None]) -> AttentionSums | None:
        kv = self._stack([None if sums is None else sums[0] for sums in parts])
        return None if kv is None else (kv, self._stack([None if sums is None else sums[1] for sums in parts]))

    def _stack(self, rows: list[torch.Tensor | None]) -> torch.Tensor | None:
        like = next((r for r in rows if r is not None), None)
        if like is None:
            return None
        return torch.cat([r if r is not None else like.new_zeros((s.batch_size, *like.shape[1:]))
                          for r, s in zip(rows, self.states)])

    def append(self, records: list[BlockRecord], frames: int, grid: tuple[int, int],
               replace_newest: bool = False) -> None:
        self._stacked.clear()
        start, done = 0, set()
        for s in self.states:
            rows = slice(start, start + s.batch_size)
            if id(s) not in done:
                s.append([BlockRecord((r.sums[0][rows], r.sums[1][rows]),
                                      None if r.last_features is None else r.last_features[rows]) for r in records],
                         frames, grid, replace_newest)
                done.add(id(s))
            start += s.batch_size
