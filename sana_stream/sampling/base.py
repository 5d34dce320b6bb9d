"""The interface every sampler implements, so one loop drives them all.

A sampler is built per run (it is cheap: a few small tensors) and is driven like this::

    x = torch.randn(shape, generator=g)                     # every sampler starts from unit Gaussian noise
    for i, t in enumerate(sampler.timesteps):
        v = model(sampler.model_input(x, i).to(dtype), t.expand(batch), ...)   # the flow velocity
        x = sampler.step(v, i, x, generator=g)
    # x is now the clean latent

- `timesteps` (N,) float32: exactly what the transformer receives at step i.
- `sigmas` (N + 1,) float32: the flow noise level σ of the sample entering step i; sigmas[N] = 0.
- `model_input(x, i)`: the tensor to feed the transformer (x itself except for sCM, which rescales it).
- `step(v, i, x, generator)`: the sample after step i, in float32 whatever the model's dtype, because the
  updates subtract nearly equal numbers. Stochastic samplers (sCM, LongSANA) draw their fresh noise from
  `generator`, which is therefore required for them: same seed, same result.
"""

from __future__ import annotations

import torch


class Sampler:
    def __init__(self, timesteps: torch.Tensor, sigmas: torch.Tensor) -> None:
        self.timesteps = timesteps
        self.sigmas = sigmas

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    def model_input(self, sample: torch.Tensor, step_index: int) -> torch.Tensor:
        return sample

    def step(
        self,
        model_output: torch.Tensor,
        step_index: int,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        if not 0 <= step_index < self.num_steps:
            raise ValueError(f"step_index must be in [0, {self.num_steps}), got {step_index}")
        return self._update(model_output.float(), step_index, sample.float(), generator)

    def _update(self, v: torch.Tensor, i: int, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Step i from float32 sample x and velocity v; subclasses implement it."""
        raise NotImplementedError

    def _is_last(self, step_index: int) -> bool:
        return step_index == self.num_steps - 1


def gaussian_like(sample: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Fresh N(0, I) noise shaped like `sample`, in float32, from `generator`.

    Drawn on the generator's device and then moved, so a CPU generator gives the same noise on any device
    (diffusers' `randn_tensor` does the same)."""
    if generator is None:
        raise ValueError("this sampler re-noises between steps: pass a torch.Generator so the run is seeded")
    noise = torch.randn(sample.shape, generator=generator, device=generator.device, dtype=torch.float32)
    return noise.to(sample.device)
