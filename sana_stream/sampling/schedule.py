"""Flow-matching noise grids: the shifted sigma schedule, the 0..1000 timestep scale, and the exact grids
diffusers' flow schedulers build (the timesteps the model sees must match them to the bit).

Flow matching interpolates x_σ = (1 − σ)·x0 + σ·ε for σ ∈ [0, 1] and the network predicts the velocity
v = ε − x0. The transformer is conditioned on t = 1000·σ (diffusers' scale, `NUM_TRAIN_TIMESTEPS`).
A shift s > 1 spends more of a grid at high noise, which large images and videos need:
σ' = s·σ / (1 + (s − 1)·σ). It keeps σ = 0 and σ = 1 fixed and is monotone in σ.

Every grid is returned as (timesteps (N,), sigmas (N + 1,)) in float32, sigmas ending with σ = 0.
"""

from __future__ import annotations

from numbers import Integral

import torch

NUM_TRAIN_TIMESTEPS = 1000


def shift_sigmas(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    """σ' = s·σ / (1 + (s − 1)·σ), in the dtype of `sigmas` (written as diffusers evaluates it)."""
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def sigmas_to_timesteps(sigmas: torch.Tensor) -> torch.Tensor:
    """The transformer's timestep for a noise level: t = 1000·σ."""
    return sigmas * NUM_TRAIN_TIMESTEPS


def append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    """Add the terminal σ = 0 (the clean sample) after the last step's noise level."""
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def euler_grid(num_steps: int, shift: float) -> tuple[torch.Tensor, torch.Tensor]:
    """FlowMatchEulerDiscreteScheduler(shift=s).set_timesteps(N).

    It spaces N sigmas evenly between the ends of its 1000-point training grid, which is already shifted (so
    the low end is shift(1/1000), not 1/1000), and then shifts the N points once more. That is kept as is,
    not "fixed", so the timesteps match diffusers'."""
    shift = _check_grid_args(num_steps, shift)
    # Ends of the shifted training grid, evaluated in float32 as the scheduler stores them.
    train_ends = shift_sigmas(torch.tensor([1.0, 1.0 / NUM_TRAIN_TIMESTEPS]), shift)
    high, low = (float(end) * NUM_TRAIN_TIMESTEPS for end in train_ends)
    sigmas = shift_sigmas(_linspace64(high, low, num_steps) / NUM_TRAIN_TIMESTEPS, shift).float()
    return sigmas_to_timesteps(sigmas), append_zero(sigmas)


def dpm_solver_grid(num_steps: int, shift: float) -> tuple[torch.Tensor, torch.Tensor]:
    """DPMSolverMultistepScheduler(use_flow_sigmas=True, flow_shift=s).set_timesteps(N).

    N + 1 evenly spaced α = 1 − σ from 1 down to 1/1000, shifted; the σ = 0 end is dropped, so the first step
    starts just below σ = 1 (at shift(0.999)) and the last one lands on the appended σ = 0. The timesteps
    are integers, truncated (not rounded) from float64."""
    shift = _check_grid_args(num_steps, shift)
    alphas = _linspace64(1.0, 1.0 / NUM_TRAIN_TIMESTEPS, num_steps + 1)
    sigmas = shift_sigmas(1.0 - alphas, shift).flip(0)[:-1]
    timesteps = sigmas_to_timesteps(sigmas).to(torch.int64).to(torch.float32)
    return timesteps, append_zero(sigmas).float()


def check_num_steps(num_steps: int) -> int:
    if isinstance(num_steps, bool) or not isinstance(num_steps, Integral) or num_steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")
    return num_steps


def _check_grid_args(num_steps: int, shift: float) -> float:
    check_num_steps(num_steps)
    if not shift > 0:  # also rejects NaN
        raise ValueError(f"shift must be > 0, got {shift!r}")
    return float(shift)


def _linspace64(start: float, stop: float, num: int) -> torch.Tensor:
    """`numpy.linspace(start, stop, num)` in float64, operation for operation (i·step + start, last point =
    stop): diffusers builds its grids with numpy, and torch.linspace rounds differently in the last bit,
    which can flip a truncated integer timestep."""
    if num == 1:
        return torch.tensor([start], dtype=torch.float64)
    grid = torch.arange(num, dtype=torch.float64) * ((stop - start) / (num - 1)) + start
    grid[-1] = stop
    return grid
