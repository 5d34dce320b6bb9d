"""Maze maps: a square grid of cells, each free (0) or a wall block with a material number.

Rooms of random sizes are carved out of solid rock and joined in sequence by L-shaped corridors, so every free
cell is reachable. Wall blocks take their material from the 4×4-cell district they lie in, which gives each part
of a map its own look, and bigger rooms get a free-standing landmark pillar with a material of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAP_SIZE = 16
DISTRICT = 4  # wall materials change every DISTRICT cells
ROOM_SIDES = (2, 5)  # inclusive range of a room's width and depth, in cells
MAX_ROOMS = 6


@dataclass(frozen=True)
class GridMap:
    """cells[x, z]: 0 free, 1..wall_materials a wall material, above that a landmark (wall_materials + i)."""

    cells: np.ndarray
    wall_materials: int
    landmarks: int
    start: tuple[float, float]  # (x, z) of the start cell's centre

    def is_wall(self, x: np.ndarray | float, z: np.ndarray | float) -> np.ndarray:
        """Whether the points (x, z) lie in a wall block (outside the map counts as wall)."""
        ix, iz = np.floor(x).astype(int), np.floor(z).astype(int)
        size = self.cells.shape[0]
        inside = (ix >= 0) & (iz >= 0) & (ix < size) & (iz < size)
        return ~inside | (self.cells[np.clip(ix, 0, size - 1), np.clip(iz, 0, size - 1)] > 0)


def generate_map(rng: np.random.Generator, wall_materials: int, landmarks: int, size: int = MAP_SIZE) -> GridMap:
    free = np.zeros((size, size), dtype=bool)
    rooms: list[tuple[int, int, int, int]] = []  # x0, z0, width, depth
    for _ in range(60):
        if len(rooms) == MAX_ROOMS:
            break
        w, d = (int(v) for v in rng.integers(ROOM_SIDES[0], ROOM_SIDES[1] + 1, size=2))
        x0, z0 = int(rng.integers(1, size - w)), int(rng.integers(1, size - d))
        # Rooms keep one cell of rock between them, so corridors, not merged blobs, join them.
        if free[x0 - 1:x0 + w + 1, z0 - 1:z0 + d + 1].any():
            continue
        free[x0:x0 + w, z0:z0 + d] = True
        rooms.append((x0, z0, w, d))
    centres = [(x0 + w // 2, z0 + d // 2) for x0, z0, w, d in rooms]
    for (ax, az), (bx, bz) in zip(centres, centres[1:]):
        if rng.random() < 0.5:  # horizontal leg first, or vertical first
            free[min(ax, bx):max(ax, bx) + 1, az] = True
            free[bx, min(az, bz):max(az, bz) + 1] = True
        else:
            free[ax, min(az, bz):max(az, bz) + 1] = True
            free[min(ax, bx):max(ax, bx) + 1, bz] = True

    districts = rng.integers(1, wall_materials + 1, size=(-(-size // DISTRICT),) * 2)
    ix, iz = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    cells = np.where(free, 0, districts[ix // DISTRICT, iz // DISTRICT]).astype(np.int16)

    # Landmarks: one pillar on an inner cell of each room of at least 3×3 (removing an inner cell cannot cut the
    # room, or a corridor ending in it, off), until the landmark materials run out.
    placed = 0
    for x0, z0, w, d in rooms:
        if placed == landmarks or w < 3 or d < 3:
            continue
        px, pz = int(rng.integers(x0 + 1, x0 + w - 1)), int(rng.integers(z0 + 1, z0 + d - 1))
        cells[px, pz] = wall_materials + 1 + placed
        placed += 1

    open_cells = np.argwhere(cells == 0)
    sx, sz = open_cells[int(rng.integers(len(open_cells)))]
    return GridMap(cells, wall_materials, landmarks, (float(sx) + 0.5, float(sz) + 0.5))
