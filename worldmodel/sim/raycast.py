"""A per-pixel ray caster for a grid world with walls one cell high, a floor at height 0 and a ceiling at 1.

Every pixel's ray is traced through the grid in the floor plane with a DDA (all rays at once, in numpy) to the
first wall block; its height there says whether it met the wall, or the floor or ceiling in front of it. Because
each pixel has its own 3-D ray, yaw, pitch, roll and eye height are all exact camera motions, with no
special cases. Textures are looked up at the hit point, x-facing walls are shaded a little darker, and
distance fog gives depth. The image is rendered at SUPERSAMPLE× its size and box-filtered, so distant textures
blur instead of flickering.
"""

from __future__ import annotations

import math

import numpy as np

from ..actions import Pose
from .maps import GridMap
from .textures import TEXELS

SUPERSAMPLE = 2
FOG_DISTANCE = 6.0  # cells: contrast falls to 1/e at this distance
X_FACE_SHADE = 0.8


def camera_rays(height: int, width: int, fov_degrees: float) -> np.ndarray:
    """(height·width, 3) camera-space ray directions through pixel centres (x right, y down, z = 1 forward)."""
    focal = (width / 2) / math.tan(math.radians(fov_degrees) / 2)
    v, u = np.meshgrid(np.arange(height) + 0.5 - height / 2, np.arange(width) + 0.5 - width / 2, indexing="ij")
    return np.stack([u / focal, v / focal, np.ones_like(u)], axis=-1).reshape(-1, 3)


def _trace_walls(grid: GridMap, ox: float, oz: float, dx: np.ndarray, dz: np.ndarray):
    """Ray parameter t of the first wall crossing, which face (True: an x face), and the material, per ray."""
    n = dx.shape[0]
    cell_x = np.full(n, math.floor(ox), dtype=np.int64)
    cell_z = np.full(n, math.floor(oz), dtype=np.int64)
    with np.errstate(divide="ignore"):
        step_tx = np.where(dx != 0, np.abs(1.0 / dx), np.inf)  # t to cross one cell along x
        step_tz = np.where(dz != 0, np.abs(1.0 / dz), np.inf)
    dir_x, dir_z = np.where(dx < 0, -1, 1), np.where(dz < 0, -1, 1)
    next_tx = np.where(dx < 0, ox - cell_x, cell_x + 1 - ox) * step_tx
    next_tz = np.where(dz < 0, oz - cell_z, cell_z + 1 - oz) * step_tz
    t_hit = np.zeros(n)
    x_face = np.zeros(n, dtype=bool)
    material = np.zeros(n, dtype=np.int64)
    active = np.arange(n)
    size = grid.cells.shape[0]
    for _ in range(2 * size + 2):  # a ray crosses at most 2·size cells before leaving the (walled) map
        cross_x = next_tx[active] < next_tz[active]
        t = np.where(cross_x, next_tx[active], next_tz[active])
        cell_x[active] += np.where(cross_x, dir_x[active], 0)
        cell_z[active] += np.where(cross_x, 0, dir_z[active])
        next_tx[active] += np.where(cross_x, step_tx[active], 0)
        next_tz[active] += np.where(cross_x, 0, step_tz[active])
        cx, cz = np.clip(cell_x[active], 0, size - 1), np.clip(cell_z[active], 0, size - 1)
        hit = grid.cells[cx, cz]
        outside = (cell_x[active] < 0) | (cell_x[active] >= size) | (cell_z[active] < 0) | (cell_z[active] >= size)
        done = (hit > 0) | outside
        finished = active[done]
        t_hit[finished] = t[done]
        x_face[finished] = cross_x[done]
        material[finished] = np.where(outside[done], 1, hit[done])
        active = active[~done]
        if active.size == 0:
            break
    return t_hit, x_face, material


def render(grid: GridMap, textures: dict[str, np.ndarray], pose: Pose, rays: np.ndarray, size: tuple[int, int],
           fog_colour: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) view from `pose`; `rays` from camera_rays at SUPERSAMPLE× the size."""
    dirs = rays @ pose.matrix()[:3, :3].T.astype(np.float32)  # world-space, un-normalised: t scales all alike
    ox, oy, oz = pose.position
    dx, dy, dz = dirs[:, 0], dirs[:, 1], dirs[:, 2]
    t_wall, x_face, material = _trace_walls(grid, ox, oz, dx, dz)

    # The floor is the plane y = 0 and the ceiling y = -1 (y points down); a ray meets one of them first when
    # it gets there before the wall.
    with np.errstate(divide="ignore", invalid="ignore"):
        t_floor = np.where(dy > 0, -oy / dy, np.inf)
        t_ceiling = np.where(dy < 0, (-1.0 - oy) / dy, np.inf)
    on_floor = t_floor < t_wall
    on_ceiling = t_ceiling < t_wall
    t = np.minimum(t_wall, np.minimum(t_floor, t_ceiling))
    hx, hy, hz = ox + t * dx, oy + t * dy, oz + t * dz

    def texel(coord: np.ndarray) -> np.ndarray:
        return np.clip(((coord - np.floor(coord)) * TEXELS).astype(np.int64), 0, TEXELS - 1)

    # Each pixel takes its colour from the one surface its ray met.
    colour = np.empty((t.shape[0], 3), dtype=np.float32)
    wall = ~(on_floor | on_ceiling)
    wall_u = texel(np.where(x_face, hz, hx)[wall])
    wall_v = np.clip(((1.0 + hy[wall]) * TEXELS).astype(np.int64), 0, TEXELS - 1)  # texture top at the ceiling
    colour[wall] = textures["walls"][material[wall], wall_v, wall_u]
    colour[wall & x_face] *= X_FACE_SHADE
    for mask, name in ((on_floor, "floor"), (on_ceiling & ~on_floor, "ceiling")):
        colour[mask] = textures[name][texel(hx[mask]), texel(hz[mask])]

    distance = t * np.sqrt((dirs * dirs).sum(axis=1))
    fog = np.exp(-distance / FOG_DISTANCE).astype(np.float32)[:, None]
    colour = colour * fog + fog_colour * (1 - fog)

    h, w = size
    colour = colour.reshape(h, SUPERSAMPLE, w, SUPERSAMPLE, 3).sum(axis=(1, 3)) / SUPERSAMPLE**2
    return np.clip(colour + 0.5, 0, 255).astype(np.uint8)
