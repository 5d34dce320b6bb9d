"""The streaming state: everything a stream remembers of its past, at a size that never grows.

Per block: the linear-attention sums S = Σ v k̃ᵀ (B, h, d, d) and z = Σ φ(k) (B, h, d) in fp32, and one frame of
FFN features (B, H·W, D) that the next chunk's temporal conv sees as its left neighbour.

Global history keeps a running sum (O(1) per chunk). A window of N chunks keeps the last N chunks' own sums in a
ring and re-adds them on each append (N is fixed, so this is still O(1) in stream length, and exact: nothing is
subtracted, so no rounding drift accumulates however long the stream runs).
"""

from __future__ import annotations

from dataclasses import dataclass

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
        self.grid: tuple[int, int] | None = None  # (H, W) tokens per frame, fixed by the first chunk
        slots = 1 if window is None else window
        shape_kv, shape_z = (batch_size, heads, head_dim, head_dim), (batch_size, heads, head_dim)
        self._kv = [torch.zeros((slots, *shape_kv), device=device) for _ in range(num_layers)]
        self._z = [torch.zeros((slots, *shape_z), device=device) for _ in range(num_layers)]
        self._sum_kv = [kv[0] if window is None else kv.sum(0) for kv in self._kv]
        self._sum_z = [z[0] if window is None else z.sum(0) for z in self._z]
        self._last: list[torch.Tensor | None] = [None] * num_layers

    @property
    def num_layers(self) -> int:
        return len(self._kv)

    def history(self, layer: int) -> tuple[AttentionSums | None, torch.Tensor | None]:
        """(S, z) and the last frame of FFN features that a new chunk attends to at `layer`; None when empty."""
        if self.chunks == 0:
            return None, None
        return (self._sum_kv[layer], self._sum_z[layer]), self._last[layer]

    def append(self, records: list[BlockRecord], frames: int, grid: tuple[int, int]) -> None:
        """Add one finished chunk (`frames` latent frames on a `grid` of tokens) to the history."""
        if len(records) != self.num_layers:
            raise ValueError(f"expected {self.num_layers} block records, got {len(records)}")
        slot = 0 if self.window is None else self.chunks % self.window
        for i, rec in enumerate(records):
            kv, z = rec.sums
            if self.window is None:
                self._kv[i][0] += kv
                self._z[i][0] += z
            else:
                self._kv[i][slot] = kv
                self._z[i][slot] = z
                torch.sum(self._kv[i], dim=0, out=self._sum_kv[i])
                torch.sum(self._z[i], dim=0, out=self._sum_z[i])
            if rec.last_features is not None:
                if self._last[i] is None:
                    self._last[i] = rec.last_features.detach().clone()
                else:
                    self._last[i].copy_(rec.last_features)
        self.grid = grid
        self.frames += frames
        self.chunks += 1

    def check_fits(self, batch_size: int, grid: tuple[int, int]) -> None:
        if batch_size != self.batch_size:
            raise ValueError(f"chunk batch size {batch_size} does not fit the state's batch size {self.batch_size}")
        if self.grid is not None and grid != self.grid:
            raise ValueError(f"chunk token grid {grid} (H, W) does not fit the state's grid {self.grid}")

    @property
    def nbytes(self) -> int:
        tensors = [*self._kv, *self._z, *(t for t in self._last if t is not None)]
        if self.window is not None:
            tensors += [*self._sum_kv, *self._sum_z]
        return sum(t.numel() * t.element_size() for t in tensors)

    def clone(self) -> "StreamState":
        """An independent copy (fork a stream or a world); costs one copy of a constant-size state."""
        other = object.__new__(StreamState)
        other.__dict__.update(self.__dict__)
        other._kv = [t.clone() for t in self._kv]
        other._z = [t.clone() for t in self._z]
        other._sum_kv = [kv[0] if self.window is None else s.clone() for kv, s in zip(other._kv, self._sum_kv)]
        other._sum_z = [z[0] if self.window is None else s.clone() for z, s in zip(other._z, self._sum_z)]
        other._last = [None if t is None else t.clone() for t in self._last]
        return other
