"""Conditioning images from users: file paths, PIL images or uint8 arrays -> model input, with size caps."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

# Anything bigger is refused before decoding: a 16-megapixel cap keeps a hostile upload from eating memory.
MAX_IMAGE_PIXELS = 4096 * 4096


def load_image(image: Any, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """An RGB PIL image from a path, encoded file bytes (an upload), a PIL image, or a uint8 (H, W, 3|4) /
    (H, W) array; more than `max_pixels` pixels is refused, for files before the pixels are decoded."""
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise ValueError(f"image file not found: {path}")
        return _decode(path, path.name, max_pixels)
    if isinstance(image, bytes):
        return _decode(io.BytesIO(image), "data", max_pixels)
    if isinstance(image, Image.Image):
        _check_pixels(image.size, max_pixels)
        return image.convert("RGB")
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
            raise ValueError(f"image arrays must be uint8 (H, W), (H, W, 3) or (H, W, 4); got {image.dtype} "
                             f"{image.shape}")
        _check_pixels((image.shape[1], image.shape[0]), max_pixels)
        return Image.fromarray(image).convert("RGB")
    raise ValueError(f"image must be a path, file bytes, a PIL image or a uint8 array, got {type(image).__name__}")


# What Pillow raises on a file it cannot decode (truncated, corrupt, not an image, a decompression bomb).
_UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def _decode(source: Path | io.BytesIO, name: str, max_pixels: int) -> Image.Image:
    """The header is read first: the pixel count is checked before any pixel is decoded."""
    try:
        img = Image.open(source)
    except _UNREADABLE as err:
        raise ValueError(f"cannot read image {name}: {str(err)[:120]}") from None
    with img:
        _check_pixels(img.size, max_pixels)
        try:
            img.load()
        except _UNREADABLE as err:
            raise ValueError(f"cannot read image {name}: {str(err)[:120]}") from None
        return img.convert("RGB")


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width < 1 or height < 1 or width * height > max_pixels:
        raise ValueError(f"image of {width}×{height} pixels is outside 1..{max_pixels} pixels")


def to_model_image(image: Any, height: int, width: int) -> torch.Tensor:
    """(1, 3, height, width) float32 in [-1, 1], resized with Lanczos like the reference preprocessing."""
    img = load_image(image)
    if img.size != (width, height):
        img = img.resize((width, height), Image.LANCZOS)
    pixels = torch.from_numpy(np.asarray(img, dtype=np.float32) / 127.5 - 1.0)
    return pixels.permute(2, 0, 1)[None]
