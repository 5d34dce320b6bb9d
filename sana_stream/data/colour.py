"""The procedural world's named colours and the perceptual space (CIE Lab) used to tell them apart.

The twelve RGB values were tuned so every pair is at least ~42 ΔE (CIE76) apart: far enough that a small model's
colour drift still maps back to the right name, and that the analyser's nearest-name rule is unambiguous.
"""

from __future__ import annotations

import numpy as np

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30), "orange": (250, 140, 0), "yellow": (250, 220, 30), "green": (30, 160, 50),
    "cyan": (0, 200, 220), "blue": (20, 70, 240), "purple": (150, 30, 170), "pink": (250, 120, 200),
    "brown": (120, 70, 20), "white": (245, 245, 245), "gray": (128, 128, 128), "black": (15, 15, 15),
}
COLOURS: tuple[str, ...] = tuple(PALETTE)

# sRGB (D65) -> XYZ, and the D65 white point Lab is relative to.
_RGB_TO_XYZ = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
_WHITE = np.array([0.95047, 1.0, 1.08883])


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in 0..255 (any leading shape, last axis 3) -> CIE Lab float32 (same shape)."""
    c = np.asarray(rgb, dtype=np.float32) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = (linear @ _RGB_TO_XYZ.T.astype(np.float32)) / _WHITE.astype(np.float32)
    eps = (6 / 29) ** 3
    f = np.where(xyz > eps, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    lab = np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)
    return lab.astype(np.float32)


PALETTE_RGB = np.array([PALETTE[name] for name in COLOURS], dtype=np.float32)
PALETTE_LAB = rgb_to_lab(PALETTE_RGB)


def nearest_colour(lab: np.ndarray) -> tuple[str, float]:
    """The palette name nearest to one Lab colour, and a confidence in [0, 1]: 1 - d_nearest / d_second."""
    d = np.linalg.norm(PALETTE_LAB - np.asarray(lab, dtype=np.float32), axis=-1)
    first, second = np.argsort(d)[:2]
    return COLOURS[first], float(1.0 - d[first] / max(float(d[second]), 1e-6))


def min_distance(colour: str, rgb: np.ndarray) -> float:
    """Smallest ΔE between a named colour and any of the given sRGB colours (N, 3)."""
    lab = rgb_to_lab(np.asarray(rgb, dtype=np.float32).reshape(-1, 3))
    return float(np.linalg.norm(lab - PALETTE_LAB[COLOURS.index(colour)], axis=-1).min())
