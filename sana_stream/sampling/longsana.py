"""LongSANA's few-step chunk sampler: denoise fully, then re-noise to the next level with fresh noise.

Per chunk the distilled model runs at timesteps [1000, 960, 889, 727] (σ = t/1000; these are the shift-8
warp of [1, 0.75, 0.5, 0.25]). At each step x0 = x − σ·v; unless it is the last step, x0 is re-noised to the
next σ' with new Gaussian noise, x = (1 − σ')·x0 + σ'·ε, and the last step's x0 is the chunk's output.
CFG stays off: guidance is distilled into the weights. The reference is LongLiveFlowEuler.sample; diffusers
has no merged counterpart.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import Sampler, gaussian_like
from .schedule import NUM_TRAIN_TIMESTEPS, append_zero

LONGSANA_TIMESTEPS = (1000.0, 960.0, 889.0, 727.0)


class LongSanaSampler(Sampler):
    def __init__(self, timesteps: Sequence[float] = LONGSANA_TIMESTEPS) -> None:
        values = [float(t) for t in timesteps]
        if not values:
            raise ValueError("timesteps must hold at least one value")
        if not all(0 < t <= NUM_TRAIN_TIMESTEPS for t in values):
            raise ValueError(f"timesteps must lie in (0, {NUM_TRAIN_TIMESTEPS}], got {values}")
        if any(later >= earlier for earlier, later in zip(values, values[1:])):
            raise ValueError(f"timesteps must be strictly decreasing, got {values}")
        timesteps = torch.tensor(values)
        super().__init__(timesteps, append_zero(timesteps / NUM_TRAIN_TIMESTEPS))

    def _update(self, v: torch.Tensor, i: int, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        x0 = x - self.sigmas[i] * v
        if self._is_last(i):
            return x0
        sigma_next = self.sigmas[i + 1]
        return (1 - sigma_next) * x0 + sigma_next * gaussian_like(x0, generator)
