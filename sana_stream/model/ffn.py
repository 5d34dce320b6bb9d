"""Mix-FFN (GLUMBConv) with the video model's temporal conv.

Spatial part, per frame: 1×1 conv to 2·hid + SiLU -> depthwise 3×3 -> split (a, g) -> a·SiLU(g) -> 1×1 conv.
Video adds y + TemporalConv(y), a full D×D conv of kernel 3 over time (zero-initialised in training):

    out[t] = y[t] + W₀ y[t−1] + W₁ y[t] + W₂ y[t+1]

Causality lives entirely in which neighbours exist: the frame before a chunk is the previous chunk's last
frame (or, streaming, the one frame of features kept in the state); the frame after the last frame of a chunk
is zero, so no frame ever sees a later chunk.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MixFFN(nn.Module):
    # Convs are stored as diffusers stores them (conv_inverted/conv_depth/conv_point/conv_temp); the 1×1 convs
    # run as matmuls on channel-last tokens and the depthwise conv on a channels-last view, so nothing is copied
    # between layouts.
    def __init__(self, dim: int, hidden: int, temporal: bool):
        super().__init__()
        self.conv_inverted = nn.Conv2d(dim, 2 * hidden, 1)
        self.conv_depth = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden)
        self.conv_point = nn.Conv2d(hidden, dim, 1, bias=False)
        self.conv_temp = nn.Conv2d(dim, dim, (3, 1), padding=(1, 0), bias=False) if temporal else None

    def spatial(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, H, W, D) -> y: (B, T, H, W, D), each frame on its own."""
        b, t, h, w, d = x.shape
        hidden = F.silu(F.linear(x, self.conv_inverted.weight.flatten(1), self.conv_inverted.bias))
        frames = hidden.view(b * t, h, w, -1).permute(0, 3, 1, 2)  # a channels-last view, no copy
        mixed = F.conv2d(frames, self.conv_depth.weight, self.conv_depth.bias, padding=1, groups=frames.shape[1])
        a, gate = mixed.permute(0, 2, 3, 1).chunk(2, dim=-1)
        return F.linear(a * F.silu(gate), self.conv_point.weight.flatten(1)).view(b, t, h, w, d)

    def temporal(
        self, y: torch.Tensor, chunk_ends: list[int], previous: torch.Tensor | None
    ) -> torch.Tensor:
        """y: (B, T, S, D) features; chunk_ends: frame indices that end a chunk (their next frame is unseen);
        previous: (B, S, D) features of the frame before y[0], or None (zero)."""
        d = y.shape[-1]
        # One matmul gives each frame's contribution to the frame after it, to itself and to the frame before.
        taps = self.conv_temp.weight[:, :, :, 0].permute(2, 0, 1).reshape(3 * d, d)  # [W₀; W₁; W₂], (3D, D)
        to_next, to_self, to_prev = F.linear(y, taps).split(d, dim=-1)
        out = y + to_self
        out[:, 1:] += to_next[:, :-1]
        if previous is not None:
            out[:, 0] += F.linear(previous, taps[:d])
        from_next = to_prev[:, 1:]
        ends = [e for e in chunk_ends if e < y.shape[1] - 1]
        if ends:
            from_next = from_next.clone()
            from_next[:, ends] = 0
        out[:, :-1] += from_next
        return out

    def forward(
        self, x: torch.Tensor, chunk_ends: list[int], previous: torch.Tensor | None, record_frame: int = -1
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, T, H, W, D) -> (out (B, T, H·W, D), y of frame `record_frame` (B, H·W, D) for a stream's state:
        the last frame of the chunk being appended)."""
        b, t, h, w, d = x.shape
        y = self.spatial(x).view(b, t, h * w, d)
        if self.conv_temp is None:
            return y, y[:, record_frame]
        return self.temporal(y, chunk_ends, previous), y[:, record_frame]
