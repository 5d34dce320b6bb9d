"""Exact tiled evaluation of a local image operator.

A convolution stack only looks a fixed number of pixels (its context margin) around each output pixel.
Evaluating it on a tile grown by that margin on every side that has neighbours, then cropping the grown
part off the result, gives exactly the pixels the whole-image evaluation gives: zero padding happens at the
same places (the true image border), and every other pixel it reads is real data. So the tiles need no
blending and can leave no seam; memory is bounded by the tile, not the image.
"""

from __future__ import annotations

from typing import Callable

import torch


def spans(length: int, tile: int) -> list[tuple[int, int]]:
    """[0, length) cut into the fewest runs of at most `tile`, of near-equal size (no sliver at the end)."""
    count = -(-length // tile)
    bounds = [i * length // count for i in range(count + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def run_tiled(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int, margin: int, scale: int
) -> torch.Tensor:
    """fn(x) computed tile by tile.

    fn maps (B, C, h, w) to (B, C', h·scale, w·scale) and reads at most `margin` input pixels around each
    output pixel; under that condition the result equals fn(x) (up to floating-point reassociation).
    """
    height, width = x.shape[-2:]
    out = None
    for top, bottom in spans(height, tile):
        for left, right in spans(width, tile):
            y0, y1 = max(top - margin, 0), min(bottom + margin, height)
            x0, x1 = max(left - margin, 0), min(right + margin, width)
            grown = fn(x[..., y0:y1, x0:x1])
            if out is None:
                # Allocated once the first tile tells the output channels, dtype and memory format.
                channels_last = grown.dim() == 4 and grown.is_contiguous(memory_format=torch.channels_last)
                out = torch.empty(
                    (*grown.shape[:-2], height * scale, width * scale), dtype=grown.dtype, device=grown.device,
                    memory_format=torch.channels_last if channels_last else torch.contiguous_format,
                )
            out[..., top * scale:bottom * scale, left * scale:right * scale] = grown[
                ..., (top - y0) * scale:(bottom - y0) * scale, (left - x0) * scale:(right - x0) * scale
            ]
    return out
