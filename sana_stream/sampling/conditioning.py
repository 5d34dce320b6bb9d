"""Image-to-video conditioning: latent frames given as input (e.g. the encoded first image) stay clean.

The transformer modulates every latent frame by its own timestep, so conditioning frames are shown t = 0
(clean) while the rest see the step's timestep; after each sampler step the conditioning latents are put
back, so only the other frames move. (Reference: LTXFlowEuler and diffusers' SanaImageToVideoPipeline,
which gives the model t·(1 − mask) and steps only the unmasked frames. The flow samplers update each
element independently, so stepping all frames and restoring the conditioned ones is the same thing.)
"""

from __future__ import annotations

import torch


def _check_mask(cond_mask: torch.Tensor) -> torch.Tensor:
    if cond_mask.ndim != 2:
        raise ValueError(f"cond_mask must have shape (B, T), got {tuple(cond_mask.shape)}")
    mask = cond_mask.to(torch.float32)
    if not torch.all((mask == 0) | (mask == 1)):
        raise ValueError("cond_mask must hold only 0/1 (or bool) values")
    return mask


def frame_timesteps(timestep: torch.Tensor | float, cond_mask: torch.Tensor) -> torch.Tensor:
    """Per-frame timesteps (B, T) for the transformer: `timestep` (a scalar) on free frames, 0 on frames where
    `cond_mask` (B, T) is 1/True."""
    mask = _check_mask(cond_mask)
    t = torch.as_tensor(timestep, dtype=torch.float32, device=mask.device)
    if t.ndim != 0:
        raise ValueError(f"timestep must be a scalar, got shape {tuple(t.shape)}")
    return t * (1 - mask)


def hold_conditioning_frames(
    sample: torch.Tensor, cond_latents: torch.Tensor, cond_mask: torch.Tensor
) -> torch.Tensor:
    """`sample` (B, C, T, H, W) with the frames where `cond_mask` (B, T) is set taken from `cond_latents`
    (same shape as `sample`)."""
    mask = _check_mask(cond_mask).to(sample.device).bool()[:, None, :, None, None]
    return torch.where(mask, cond_latents.to(sample.dtype), sample)
