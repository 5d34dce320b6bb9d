"""Conditioning and position: timestep/guidance embeddings, caption projection, 2-D sincos PE, 3-D RoPE."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def timestep_sinusoid(t: torch.Tensor, dim: int = 256, max_period: float = 10000.0) -> torch.Tensor:
    """(N,) timesteps -> (N, dim) fp32 [cos | sin] features, frequencies max_period^(-i/half)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class TimestepMLP(nn.Module):
    """256-d sinusoid -> Linear -> SiLU -> Linear."""

    def __init__(self, dim: int, in_dim: int = 256):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        features = timestep_sinusoid(t, self.linear_1.in_features).to(self.linear_1.weight.dtype)
        return self.linear_2(F.silu(self.linear_1(features)))


class TimeConditioning(nn.Module):
    """adaLN-single: t_emb = MLP(t) (+ MLP(guidance) for Sprint); t0 = Linear(SiLU(t_emb)) of size 6·D.

    t0 gives every block's shift/scale/gate (added to its own (6, D) table); t_emb feeds the final layer.
    """

    def __init__(self, dim: int, guidance: bool):
        super().__init__()
        self.timestep_embedder = TimestepMLP(dim)
        self.guidance_embedder = TimestepMLP(dim) if guidance else None
        self.linear = nn.Linear(dim, 6 * dim)

    def forward(self, t: torch.Tensor, guidance: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.timestep_embedder(t)
        if self.guidance_embedder is not None:
            emb = emb + self.guidance_embedder(guidance)
        return self.linear(F.silu(emb)), emb


class CaptionProjection(nn.Module):
    """Text features (caption_channels) -> model width: Linear -> GELU(tanh) -> Linear."""

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.gelu(self.linear_1(y), approximate="tanh"))


class RMSNorm(nn.Module):
    """RMSNorm with a learned scale, statistics in fp32 (caption norm and the full-width q/k norms)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        return y.to(self.weight.dtype) * self.weight


def sincos_2d(dim: int, height: int, width: int, base_size: int, interpolation_scale: float) -> torch.Tensor:
    """2-D sincos position embedding (H·W, dim) fp32 for Sana 2K/4K: half the channels encode the column, half
    the row, each as [sin | cos] of position·10000^(-i/(dim/4)); grids are rescaled to base_size."""
    rows = torch.arange(height, dtype=torch.float32) / (height / base_size) / interpolation_scale
    cols = torch.arange(width, dtype=torch.float32) / (width / base_size) / interpolation_scale

    def encode(pos: torch.Tensor) -> torch.Tensor:
        omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))
        angles = pos.double()[:, None] * omega[None]
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)

    col_emb = encode(cols)[None, :, :].expand(height, width, -1)
    row_emb = encode(rows)[:, None, :].expand(height, width, -1)
    return torch.cat([col_emb, row_emb], dim=-1).reshape(height * width, dim).float()


class Rope3D(nn.Module):
    """3-D rotary embedding over (time, height, width) for the video linear attention.

    The head channels are split t/h/w = d − 2·2⌊d/6⌋ / 2⌊d/6⌋ / 2⌊d/6⌋ (40/36/36 for d = 112) and rotated in
    interleaved pairs. Angles are computed for any position (no table), so a stream's absolute frame index may
    grow past the reference's 1024-entry table without failing.
    """

    def __init__(self, head_dim: int, theta: float = 10000.0):
        super().__init__()
        hw = 2 * (head_dim // 6)
        self.dims, self.theta = (head_dim - 2 * hw, hw, hw), theta

    def forward(
        self, frame_start: int | Sequence[int], frames: int, height: int, width: int,
        device: torch.device | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin of shape (frames·height·width, 1, d/2) fp32 for token order (t, h, w); with one frame_start
        per batch row (streams at different places, batched), (B, frames·height·width, 1, d/2)."""
        if not isinstance(frame_start, int):
            angles = {start: self(start, frames, height, width, device) for start in set(frame_start)}
            return (torch.stack([angles[start][0] for start in frame_start]),
                    torch.stack([angles[start][1] for start in frame_start]))

        def angles_of(start: int, count: int, dim: int) -> torch.Tensor:
            inv = 1.0 / self.theta ** (torch.arange(0, dim, 2, dtype=torch.float64, device=device)[: dim // 2] / dim)
            return torch.arange(start, start + count, dtype=torch.float64, device=device)[:, None] * inv

        t = angles_of(frame_start, frames, self.dims[0])
        h = angles_of(0, height, self.dims[1])
        w = angles_of(0, width, self.dims[2])
        angles = torch.cat(
            [
                t[:, None, None].expand(frames, height, width, -1),
                h[None, :, None].expand(frames, height, width, -1),
                w[None, None, :].expand(frames, height, width, -1),
            ],
            dim=-1,
        ).reshape(frames * height * width, 1, -1)
        return torch.cos(angles).float(), torch.sin(angles).float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved channel pairs (2i, 2i+1) of x (..., N, h, d) by the angles behind cos/sin (N, 1, d/2),
    or (B, N, 1, d/2) per batch row."""
    pairs = x.unflatten(-1, (-1, 2))
    even, odd = pairs[..., 0], pairs[..., 1]
    return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)
