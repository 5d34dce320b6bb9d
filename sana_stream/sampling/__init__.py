"""Samplers for the Sana / SANA-Video / LongSANA transformers, one per module, all driven by one loop
(see `base`): Flow Euler, Flow-DPM-Solver (DPM-Solver++ 2M), SANA-Sprint's sCM and LongSANA's re-noising
chunk sampler, plus CFG and image-to-video helpers.

Defaults by model family (DESIGN §4): image flow_dpm_solver 20 steps, shift 3 (0.6B: 4; 4K: 6), CFG 4.5;
video flow_dpm_solver 50 steps, shift 8, CFG 6 (image-to-video: flow_euler); Sprint scm 2 steps;
LongSANA longsana with its 4 fixed timesteps per chunk.
"""

from __future__ import annotations

from typing import Any

from .base import Sampler
from .conditioning import frame_timesteps, hold_conditioning_frames
from .dpm_solver import FlowDPMSolver
from .euler import FlowEulerSampler
from .guidance import classifier_free_guidance
from .longsana import LONGSANA_TIMESTEPS, LongSanaSampler
from .schedule import NUM_TRAIN_TIMESTEPS, shift_sigmas, sigmas_to_timesteps
from .scm import SCMSampler
from .trigflow import flow_input_scale, flow_to_trigflow, trigflow_to_flow_time

SAMPLERS: dict[str, type[Sampler]] = {
    "flow_euler": FlowEulerSampler,
    "flow_dpm_solver": FlowDPMSolver,
    "scm": SCMSampler,
    "longsana": LongSanaSampler,
}


def make_sampler(name: str, **options: Any) -> Sampler:
    """A fresh sampler for one run, e.g. make_sampler("flow_dpm_solver", num_steps=50, shift=8.0)."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name](**options)


__all__ = [
    "LONGSANA_TIMESTEPS",
    "NUM_TRAIN_TIMESTEPS",
    "SAMPLERS",
    "FlowDPMSolver",
    "FlowEulerSampler",
    "LongSanaSampler",
    "SCMSampler",
    "Sampler",
    "classifier_free_guidance",
    "flow_input_scale",
    "flow_to_trigflow",
    "frame_timesteps",
    "hold_conditioning_frames",
    "make_sampler",
    "shift_sigmas",
    "sigmas_to_timesteps",
    "trigflow_to_flow_time",
]
