"""Conditioning images from users: file paths, PIL images or uint8 arrays -> model input, with size caps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

# Anything bigger is refused before decoding: a 16-megapixel cap keeps a hostile upload from eating memory.
MAX_IMAGE_PIXELS = 4096 * 4096


def load_image(image: Any) -> Image.Image:
    """An RGB PIL image from a path, a PIL image, or a uint8 (H, W, 3|4) / (H, W) array."""
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise ValueError(f"image file not found: {path}")
        try:
            with Image.open(path) as img:
                _check_pixels(img.size)
                img.load()
                return img.convert("RGB")
        except (OSError, Image.DecompressionBombError) as err:
            raise ValueError(f"cannot read image {path.name}: {err}") from None
    if isinstance(image, Image.Image):
        _check_pixels(image.size)
        return image.convert("RGB")
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
            raise ValueError(f"image arrays must be uint8 (H, W), (H, W, 3) or (H, W, 4); got {image.dtype} "
                             f"{image.shape}")
        _check_pixels((image.shape[1], image.shape[0]))
        return Image.fromarray(image).convert("RGB")
    raise ValueError(f"image must be a path, a PIL image or a uint8 array, got {type(image).__name__}")


def _check_pixels(size: tuple[int, int]) -> None:
    width, height = size
    if width < 1 or height < 1 or width * height > MAX_IMAGE_PIXELS:
        raise ValueError(f"image of {width}×{height} pixels is outside 1..{MAX_IMAGE_PIXELS} pixels")


def to_model_image(image: Any, height: int, width: int) -> torch.Tensor:
    """(1, 3, height, width) float32 in [-1, 1], resized with Lanczos like the reference preprocessing."""
    img = load_image(image)
    if img.size != (width, height):
        img = img.resize((width, height), Image.LANCZOS)
    pixels = torch.from_numpy(np.asarray(img, dtype=np.float32) / 127.5 - 1.0)
    return pixels.permute(2, 0, 1)[None]
