"""Classifier-free guidance: push the conditional prediction away from the unconditional one."""

from __future__ import annotations

import torch


def classifier_free_guidance(uncond: torch.Tensor, cond: torch.Tensor, scale: float) -> torch.Tensor:
    """uncond + g·(cond − uncond), in float32. g = 1 returns cond; the distilled samplers (sCM, LongSANA) need
    no CFG pass at all."""
    if scale == 1:  # exactly cond: the formula rounds values near zero differently
        return cond.float()
    uncond = uncond.float()
    return uncond + scale * (cond.float() - uncond)
