"""The TrigFlow <-> flow bridge that lets a flow-velocity network act as a TrigFlow (sCM) network.

TrigFlow with data scale σ_d works in units of σ_d: with y0 = x0/σ_d and z ~ N(0, I),
    y_τ = cos τ·y0 + sin τ·z,  τ ∈ [0, π/2],
and the network F predicts dy_τ/dτ = cos τ·z − sin τ·y0, so y0 = cos τ·y_τ − sin τ·F.

Dividing y_τ by (sin τ + cos τ) gives a flow-matching point (1 − t)·y0 + t·z with
    t = sin τ / (sin τ + cos τ)   and   1 / (sin τ + cos τ) = √(t² + (1 − t)²).
A flow model fed that point and the timestep t returns v = z − y0, and F follows linearly from (x_flow, v).
SANA-Sprint's backbone is such a flow model (`SanaMSCM`; diffusers' SanaSprintPipeline does the same algebra).
"""

from __future__ import annotations

import torch


def trigflow_to_flow_time(tau: torch.Tensor) -> torch.Tensor:
    """t = sin τ / (sin τ + cos τ): the flow noise level (in [0, 1]) of TrigFlow time τ."""
    return torch.sin(tau) / (torch.cos(tau) + torch.sin(tau))


def flow_input_scale(t: torch.Tensor) -> torch.Tensor:
    """√(t² + (1 − t)²): multiply a TrigFlow sample y_τ by this to get the flow model's input x_flow."""
    return torch.sqrt(t**2 + (1 - t) ** 2)


def flow_to_trigflow(x_flow: torch.Tensor, velocity: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The TrigFlow prediction F from the flow model's input x_flow and its velocity output v at flow time t:
    F = ((1 − 2t)·x_flow + (1 − 2t + 2t²)·v) / √(t² + (1 − t)²)."""
    return ((1 - 2 * t) * x_flow + (1 - 2 * t + 2 * t**2) * velocity) / flow_input_scale(t)
