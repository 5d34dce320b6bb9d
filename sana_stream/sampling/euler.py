"""Flow Euler: x ← x + (σ_{i+1} − σ_i)·v, on diffusers' FlowMatchEulerDiscreteScheduler grid (`euler_grid`).
SANA-Video's reference image-to-video sampler (LTXFlowEuler) is a flow Euler sampler."""

from __future__ import annotations

import torch

from .base import Sampler
from .schedule import euler_grid


class FlowEulerSampler(Sampler):
    def __init__(self, num_steps: int, shift: float = 1.0) -> None:
        super().__init__(*euler_grid(num_steps, shift))

    def _update(self, v: torch.Tensor, i: int, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return x + (self.sigmas[i + 1] - self.sigmas[i]) * v
