"""SANA-Sprint's few-step sCM sampler (TrigFlow), driven by the flow-velocity transformer.

TrigFlow time τ runs from τ_max ≈ π/2 (pure noise) to 0. With 2 steps the grid is [τ_max, 1.3, 0]; any other
step count uses an even grid linspace(τ_max, 0, N + 1). Sprint is distilled for 1–4 steps. Each step denoises
and, unless it is the last, re-noises to the next τ with fresh noise:
    y0 = cos τ_i·y − sin τ_i·F,   y ← cos τ_{i+1}·y0 + sin τ_{i+1}·z.

Samples are kept in units of σ_d (y = x/σ_d, see `trigflow`), where σ_d cancels out of the sampler: the
pipeline starts from unit noise (diffusers starts from σ_d·noise) and decodes the result as is (diffusers
divides by σ_d). Steps equal diffusers' SCMScheduler(prediction_type="trigflow", sigma_data=σ_d) with
max_timesteps=τ_max, intermediate_timesteps=1.3 (2 steps) or None, divided by σ_d.

What a pipeline does around it (the loop in `base`), and nothing else:
- feed the transformer `model_input(y, i)` = y·√(t² + (1 − t)²) and the timestep `timesteps[i]` = t, the flow
  time of τ_i in [0, 1], unscaled: the Sprint checkpoint embeds t itself (the original divides its 1000·t
  by `timestep_norm_scale_factor` = 1000; diffusers passes t). Also pass the embedded guidance (scale ×
  `guidance_embeds_scale`); there is no CFG pass;
- hand the transformer's raw velocity to `step`, which turns it into F and takes the TrigFlow step.
"""

from __future__ import annotations

import torch

from .base import Sampler, gaussian_like
from .schedule import check_num_steps
from .trigflow import flow_input_scale, flow_to_trigflow, trigflow_to_flow_time

MAX_TAU = 1.57080  # π/2 rounded up as the release does; t(τ_max) is a hair above 1
INTERMEDIATE_TAU = 1.3


class SCMSampler(Sampler):
    def __init__(
        self, num_steps: int = 2, max_tau: float = MAX_TAU, intermediate_tau: float | None = INTERMEDIATE_TAU
    ) -> None:
        check_num_steps(num_steps)
        if not 0 < max_tau <= MAX_TAU:
            raise ValueError(f"max_tau must be in (0, {MAX_TAU}], got {max_tau!r}")
        if num_steps == 2 and intermediate_tau is not None:
            if not 0 < intermediate_tau < max_tau:
                raise ValueError(f"intermediate_tau must be in (0, max_tau={max_tau}), got {intermediate_tau!r}")
            taus = torch.tensor([max_tau, intermediate_tau, 0.0])
        else:
            taus = torch.linspace(max_tau, 0, num_steps + 1)
        self.taus = taus  # (N + 1,) TrigFlow times; what SCMScheduler.timesteps holds
        flow_times = trigflow_to_flow_time(taus)
        super().__init__(flow_times[:-1], flow_times)  # t(0) = 0 exactly

    def model_input(self, sample: torch.Tensor, step_index: int) -> torch.Tensor:
        return sample.float() * flow_input_scale(self.timesteps[step_index])

    def _update(self, v: torch.Tensor, i: int, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        trig_output = flow_to_trigflow(self.model_input(x, i), v, self.timesteps[i])
        tau, tau_next = self.taus[i], self.taus[i + 1]
        x0 = torch.cos(tau) * x - torch.sin(tau) * trig_output
        if self._is_last(i):  # τ = 0: nothing to re-noise
            return x0
        return torch.cos(tau_next) * x0 + torch.sin(tau_next) * gaussian_like(x0, generator)
