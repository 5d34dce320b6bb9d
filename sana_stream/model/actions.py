"""Action conditioning: a per-latent-frame action vector joins the time embedding that drives adaLN.

A world model is the video DiT told, frame by frame, what the camera did. As in SANA-WM's optional delta-action
embedder, each latent frame's action vector (B, T, action_dim) goes through Linear -> SiLU -> Linear to the model
width and is added to that frame's timestep embedding; adaLN-single then turns the sum into every block's
shift/scale/gate and the final layer's shift/scale. A frame's action therefore modulates only its own frame, which
is what lets a one-frame chunk carry exactly one action.

The last layer starts at zero, so a model with a freshly added action branch computes exactly what it did
without one: existing checkpoints keep their outputs until the branch is trained.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ActionEmbedder(nn.Module):
    """(..., action_dim) action vectors -> (..., dim) additions to the time embedding; zero at initialisation."""

    def __init__(self, action_dim: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(action_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)
        nn.init.zeros_(self.linear_2.weight)
        nn.init.zeros_(self.linear_2.bias)

    def forward(self, action: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(action.to(self.linear_1.weight.dtype))))
