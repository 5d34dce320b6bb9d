"""Camera-motion Plücker maps: a world model's action drawn at every latent pixel.

The per-frame action vector (model/actions.py) joins the time embedding, so it modulates all of a frame's tokens
alike; but the image motion a camera action causes differs across the view: a yaw moves every pixel alike, a
strafe moves near walls more than far ones, a step forward spreads the view out from its centre. SANA-WM
therefore also gives its DiT Plücker ray maps: 6 channels per pixel, patch-embedded and added to every block
after self-attention through zero-initialised projections. Here they are computed inside the model from the
action's continuous camera delta, so callers pass the same `action=` as before.

A frame's map holds, for the ray of its camera through each latent pixel's centre, expressed in the previous
frame's camera (origin o, unit direction d): (d − d_still, o × d), d_still the same pixel's ray of a camera that
did not move. A still camera ("none", or no action) thus draws an all-zero map, and since neither the embedding
nor the blocks' projections have a bias, it adds exactly nothing: the "none" prediction that action guidance
pushes away from is the one without the maps.

The action layout (DESIGN §5): its last six entries are the camera delta (forward, strafe, up, yaw, pitch, roll),
distances in the world's units and angles in radians; translation in the heading frame, rotation
R_y(yaw)·R_x(pitch)·R_z(roll); cameras look along +z with +x right and +y down.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

CAMERA_DELTA = 6  # the action's last entries: forward, strafe, up, yaw, pitch, roll
MAP_CHANNELS = 6
# Maps are multiplied by this so that one key step (8° of yaw: |d − d_still| ≈ 0.14; 0.2 of strafe) reads near 1.
MAP_SCALE = 4.0


def _rotation(yaw: torch.Tensor, pitch: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """(...,) angles -> (..., 3, 3) R_y(yaw)·R_x(pitch)·R_z(roll)."""
    one, zero = torch.ones_like(yaw), torch.zeros_like(yaw)

    def matrix(*rows):
        return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)

    cy, sy, cp, sp, cr, sr = yaw.cos(), yaw.sin(), pitch.cos(), pitch.sin(), roll.cos(), roll.sin()
    r_yaw = matrix((cy, zero, sy), (zero, one, zero), (-sy, zero, cy))
    r_pitch = matrix((one, zero, zero), (zero, cp, -sp), (zero, sp, cp))
    r_roll = matrix((cr, -sr, zero), (sr, cr, zero), (zero, zero, one))
    return r_yaw @ r_pitch @ r_roll


def pixel_rays(height: int, width: int, fov_degrees: float, device=None) -> torch.Tensor:
    """(height·width, 3) unit camera-space rays through pixel centres; fov_degrees spans the width."""
    focal = (width / 2) / math.tan(math.radians(fov_degrees) / 2)
    v, u = torch.meshgrid(torch.arange(height, device=device) + 0.5 - height / 2,
                          torch.arange(width, device=device) + 0.5 - width / 2, indexing="ij")
    rays = torch.stack([u / focal, v / focal, torch.ones_like(u)], dim=-1).reshape(-1, 3)
    return F.normalize(rays, dim=-1)


def plucker_maps(action: torch.Tensor, height: int, width: int, fov_degrees: float) -> torch.Tensor:
    """(B, T, action_dim) actions -> (B, T, height·width, 6) float32 camera-motion maps (zero for a still camera)."""
    delta = action[..., -CAMERA_DELTA:].float()
    forward, strafe, up, yaw, pitch, roll = delta.unbind(-1)
    still = pixel_rays(height, width, fov_degrees, action.device)  # (P, 3)
    # Elementwise, not a matmul: autocast would run a matmul in bf16, too coarse for a few degrees of turn.
    direction = (_rotation(yaw, pitch, roll)[:, :, None] * still[:, None, :]).sum(-1)
    origin = torch.stack([strafe, -up, forward], dim=-1)[:, :, None].expand_as(direction)
    return MAP_SCALE * torch.cat([direction - still, torch.linalg.cross(origin, direction)], dim=-1)


class PluckerEmbedder(nn.Module):
    """Actions -> (B, T, S, D) per-token camera-motion features; blocks add them through their zero-initialised
    `plucker_proj`, so a model given this branch computes what it did without it until the branch is trained."""

    def __init__(self, patch: tuple[int, int], dim: int, fov_degrees: float):
        super().__init__()
        self.patch = patch
        self.fov_degrees = fov_degrees
        self.linear = nn.Linear(MAP_CHANNELS * patch[0] * patch[1], dim, bias=False)

    def forward(self, action: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        (h, w), (ph, pw) = grid, self.patch
        b, t = action.shape[:2]
        maps = plucker_maps(action, h * ph, w * pw, self.fov_degrees)  # (B, T, H·W, 6), row-major pixels
        patches = maps.view(b, t, h, ph, w, pw, MAP_CHANNELS).permute(0, 1, 2, 4, 6, 3, 5)
        return F.silu(self.linear(patches.reshape(b, t, h * w, -1).to(self.linear.weight.dtype)))
