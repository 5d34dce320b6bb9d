"""Flow-DPM-Solver: DPM-Solver++(2M), multistep order 2 with data prediction, on the flow schedule.

The flow path x = α·x0 + σ·ε has α = 1 − σ; λ = log(α/σ) is half the log-SNR and h_i = λ_{i+1} − λ_i.
The network's velocity gives the data prediction x0_i = x − σ_i·v. With α_t, σ_t the next level and α_s, σ_s
the current one, DPM-Solver++ integrates exactly in λ:

    first order:   x ← (σ_t/σ_s)·x + α_t·(1 − e^{−h})·x0_i,   where α_t·(1 − e^{−h}) = α_t − α_s·σ_t/σ_s
    second order:  the same with x0_i replaced by D = x0_i + (h_i / (2·h_{i−1}))·(x0_i − x0_{i−1})  (midpoint)

Step 0 is first order (no history yet). The last step lands on σ = 0, where λ = ∞; it is first order too and
reduces to x ← x0 exactly. This is diffusers' DPMSolverMultistepScheduler(use_flow_sigmas=True,
prediction_type="flow_prediction", flow_shift=s) with its defaults (solver_order=2, "dpmsolver++",
"midpoint", lower_order_final, final_sigmas_type="zero") on its grid (`dpm_solver_grid`). The step
coefficients are computed in float64, so results agree with diffusers' float32 ones to ~1e-6.

Per-run state: the previous step's x0, kept on the object. Step 0 resets it, so one object can serve several
runs, but the steps of a run must come in order.
"""

from __future__ import annotations

import math

import torch

from .base import Sampler
from .schedule import dpm_solver_grid


class FlowDPMSolver(Sampler):
    def __init__(self, num_steps: int, shift: float = 1.0) -> None:
        super().__init__(*dpm_solver_grid(num_steps, shift))
        # λ of every level a step starts from (all have 0 < σ < 1, so λ is finite).
        self._lambdas = [math.log((1 - s) / s) for s in self.sigmas[:-1].tolist()]
        self._prev_x0: torch.Tensor | None = None
        self._next_index = 0

    def _update(self, v: torch.Tensor, i: int, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if i not in (0, self._next_index):
            raise ValueError(f"FlowDPMSolver steps must run in order: expected step {self._next_index}, got {i}")
        x0 = x - self.sigmas[i] * v
        sigma_s, sigma_t = self.sigmas[i].item(), self.sigmas[i + 1].item()
        ratio = sigma_t / sigma_s
        gain = (1 - sigma_t) - (1 - sigma_s) * ratio  # α_t·(1 − e^{−h}); equals 1 at σ_t = 0
        denoised = x0
        if 0 < i < self.num_steps - 1:
            h = self._lambdas[i + 1] - self._lambdas[i]
            h_prev = self._lambdas[i] - self._lambdas[i - 1]
            denoised = x0 + (0.5 * h / h_prev) * (x0 - self._prev_x0)
        self._prev_x0, self._next_index = x0, i + 1
        return ratio * x + gain * denoised
