"""Procedural textures: a theme (brick, stone, wood, metal) gives the walls, floor and ceiling their patterns;
landmarks are bright emblems that stand out from any theme.

Every texture is TEXELS × TEXELS RGB (uint8) and covers one cell face. Colours are jittered per world, so two
worlds of the same theme still differ.
"""

from __future__ import annotations

import numpy as np

TEXELS = 16
THEMES: tuple[str, ...] = ("brick", "stone", "wood", "metal")
# Base colours (RGB) of each theme: wall variants, then floor tiles (two), then ceiling.
_PALETTES: dict[str, dict[str, list[tuple[int, int, int]]]] = {
    "brick": {"walls": [(150, 60, 45), (120, 80, 60), (170, 110, 70)], "floor": [(90, 90, 95), (60, 60, 66)],
              "ceiling": [(200, 190, 170)]},
    "stone": {"walls": [(120, 120, 125), (100, 110, 95), (140, 130, 115)], "floor": [(85, 75, 60), (55, 50, 42)],
              "ceiling": [(70, 70, 80)]},
    "wood": {"walls": [(140, 95, 50), (110, 70, 40), (165, 125, 75)], "floor": [(75, 50, 30), (105, 75, 45)],
             "ceiling": [(210, 200, 180)]},
    "metal": {"walls": [(90, 110, 130), (120, 125, 130), (70, 95, 85)], "floor": [(50, 55, 60), (80, 85, 90)],
              "ceiling": [(150, 160, 170)]},
}
LANDMARK_COLOURS: tuple[tuple[int, int, int], ...] = (
    (230, 40, 40), (40, 200, 60), (50, 90, 240), (240, 220, 40), (220, 60, 220), (40, 220, 230),
)
_V, _U = np.meshgrid(np.arange(TEXELS), np.arange(TEXELS), indexing="ij")  # texel row (v), column (u)


def _jitter(rng: np.random.Generator, colour: tuple[int, int, int], amount: float = 0.12) -> np.ndarray:
    return np.asarray(colour, dtype=np.float32) * (1 + amount * rng.uniform(-1, 1, size=3)).astype(np.float32)


def _brick(rng, base):
    row = _V // 4
    brick = (_U + 4 * (row % 2)) // 8
    shade = 1 + 0.15 * rng.uniform(-1, 1, size=(TEXELS // 4, 3))[row, brick]  # one shade per brick
    mortar = (_V % 4 == 3) | ((_U + 4 * (row % 2)) % 8 == 7)
    return np.where(mortar[..., None], 200.0, base * shade[..., None])


def _stone(rng, base):
    blocks = rng.uniform(0.75, 1.2, size=(4, 4))
    offset = rng.integers(0, 4, size=4)
    col = (_U + offset[_V // 4]) // 4 % 4
    seam = (_V % 4 == 0) | ((_U + offset[_V // 4]) % 4 == 0)
    value = blocks[_V // 4, col][..., None] * base
    return np.where(seam[..., None], base * 0.45, value)


def _wood(rng, base):
    plank = _U // 4
    grain = 1 + 0.12 * np.sin(_V * rng.uniform(0.6, 1.2) + plank * 1.7) + 0.08 * rng.uniform(-1, 1, size=4)[plank]
    value = base * grain[..., None]
    return np.where((_U % 4 == 0)[..., None], base * 0.55, value)


def _metal(rng, base):
    seam = (_U % 8 == 0) | (_V % 8 == 0)
    rivet = ((_U % 8 == 2) | (_U % 8 == 6)) & ((_V % 8 == 2) | (_V % 8 == 6))
    value = base * (1 + 0.06 * (_V / TEXELS))[..., None]
    value = np.where(rivet[..., None], base * 1.45, value)
    return np.where(seam[..., None], base * 0.5, value)


_WALL_PATTERNS = {"brick": _brick, "stone": _stone, "wood": _wood, "metal": _metal}


def _floor(colours):
    tile = ((_U // 8) + (_V // 8)) % 2
    value = np.where(tile[..., None] == 0, colours[0], colours[1])
    return np.where(((_U % 8 == 0) | (_V % 8 == 0))[..., None], value * 0.7, value)


def _ceiling(colour):
    return np.where(((_U % 16 == 0) | (_V % 16 == 0))[..., None], colour * 0.75, np.broadcast_to(colour, (TEXELS,
                    TEXELS, 3)))


def _landmark(index: int, colour: np.ndarray) -> np.ndarray:
    """A bright emblem: a white frame around a coloured field with one of a few symbols, differing by index."""
    centre = (TEXELS - 1) / 2
    du, dv = np.abs(_U - centre), np.abs(_V - centre)
    symbols = [du + dv < 5.5, np.hypot(du, dv) < 4.5, (du < 1.6) | (dv < 1.6), (_U // 3 % 2) == 0,
               (du < 4.5) & (dv < 4.5), np.abs(du - dv) < 1.6]
    value = np.where(symbols[index % len(symbols)][..., None], 255 - colour * 0.6, colour)
    frame = (_U < 1) | (_V < 1) | (_U >= TEXELS - 1) | (_V >= TEXELS - 1)
    return np.where(frame[..., None], 245.0, value)


def make_textures(rng: np.random.Generator, theme: str, landmarks: int) -> dict[str, np.ndarray]:
    """uint8 textures: "walls" (1 + wall variants + landmarks, TEXELS, TEXELS, 3) indexed by map material (entry 0
    unused), "floor" and "ceiling" (TEXELS, TEXELS, 3)."""
    palette = _PALETTES[theme]
    walls = [np.zeros((TEXELS, TEXELS, 3))]
    walls += [_WALL_PATTERNS[theme](rng, _jitter(rng, c)) for c in palette["walls"]]
    order = rng.permutation(len(LANDMARK_COLOURS))[:landmarks]
    walls += [_landmark(int(i), np.asarray(LANDMARK_COLOURS[i], dtype=np.float32)) for i in order]
    floor = _floor([_jitter(rng, c) for c in palette["floor"]])
    ceiling = _ceiling(_jitter(rng, palette["ceiling"][0]))

    def to_uint8(a):
        return np.clip(np.asarray(a), 0, 255).astype(np.uint8)

    return {"walls": to_uint8(np.stack(walls)), "floor": to_uint8(floor), "ceiling": to_uint8(ceiling)}


def wall_variants(theme: str) -> int:
    return len(_PALETTES[theme]["walls"])
