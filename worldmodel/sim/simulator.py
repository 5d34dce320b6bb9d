"""The first-person simulator: a maze world built from a seed, a camera moved by actions, frames by ray casting.

    sim = Simulator(seed=3)
    frame = sim.reset()          # uint8 (H, W, 3), the start view
    frame = sim.step("w+a")      # any action encode_action accepts: keys, a 6-vector delta, a 4×4 target pose
    sim.pose                     # 4×4 camera-to-world matrix (worldmodel.actions conventions)

Everything about a world (map, theme, textures, start pose) is drawn from its seed, and motion has no randomness,
so the same seed and actions give the same frames. The camera is a body of radius BODY_RADIUS that slides
along walls instead of entering them; eye height, pitch and roll are clamped to ranges in which the view stays
inside the maze.
"""

from __future__ import annotations

import math

import numpy as np

from ..actions import Pose, delta_of, encode_action
from .maps import GridMap, generate_map
from .raycast import SUPERSAMPLE, camera_rays, render
from .textures import THEMES, make_textures, wall_variants

FRAME_SIZE = (64, 64)
FOV_DEGREES = 70.0
EYE_HEIGHT = 0.5
HEIGHT_RANGE = (0.2, 0.8)
PITCH_LIMIT = math.radians(40.0)
ROLL_LIMIT = math.radians(30.0)
BODY_RADIUS = 0.2
LANDMARKS = 4


class Simulator:
    def __init__(self, seed: int, frame_size: tuple[int, int] = FRAME_SIZE, fov_degrees: float = FOV_DEGREES):
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.seed = int(seed)
        self.frame_size = (int(frame_size[0]), int(frame_size[1]))
        rng = np.random.default_rng([self.seed, 0x5EED])
        self.theme = THEMES[int(rng.integers(len(THEMES)))]
        self.map: GridMap = generate_map(rng, wall_variants(self.theme), LANDMARKS)
        self.textures = make_textures(rng, self.theme, LANDMARKS)
        self.fog_colour = (self.textures["ceiling"].reshape(-1, 3).mean(axis=0) * 0.35).astype(np.float32)
        self._start_yaw = float(rng.uniform(-math.pi, math.pi))
        height, width = self.frame_size
        self._rays = camera_rays(height * SUPERSAMPLE, width * SUPERSAMPLE, fov_degrees).astype(np.float32)
        self._pose = self._start_pose()

    @property
    def caption(self) -> str:
        """The world's description, the world model's text prompt."""
        return f"a walk through a {self.theme} maze"

    @property
    def pose(self) -> np.ndarray:
        """The camera-to-world 4×4 matrix (float64)."""
        return self._pose.matrix()

    @property
    def camera(self) -> Pose:
        return self._pose

    @camera.setter
    def camera(self, pose: Pose) -> None:
        """Put the camera at a pose (one this world produced: no wall or range checks)."""
        self._pose = pose

    def _start_pose(self) -> Pose:
        x, z = self.map.start
        return Pose((x, -EYE_HEIGHT, z), self._start_yaw)

    def reset(self) -> np.ndarray:
        """Back to the world's start pose; the start view."""
        self._pose = self._start_pose()
        return self.render()

    def step(self, action) -> np.ndarray:
        """Apply one action (see worldmodel.actions.encode_action) and return the new view."""
        self.move(action)
        return self.render()

    def move(self, action) -> np.ndarray:
        """Apply one action without rendering; returns the encoded action."""
        encoded = encode_action(action, pose=self._pose)
        target = self._pose.moved(delta_of(encoded))
        x, z = self._slide(self._pose.position[0], self._pose.position[2], target.position[0], target.position[2])
        height = float(np.clip(-target.position[1], *HEIGHT_RANGE))
        self._pose = Pose((x, -height, z), target.yaw, float(np.clip(target.pitch, -PITCH_LIMIT, PITCH_LIMIT)),
                          float(np.clip(target.roll, -ROLL_LIMIT, ROLL_LIMIT)))
        return encoded

    def _blocked(self, x: float, z: float) -> bool:
        r = BODY_RADIUS
        return bool(self.map.is_wall(np.array([x - r, x + r, x - r, x + r]), np.array([z - r, z - r, z + r, z + r])).any())

    def _slide(self, x: float, z: float, new_x: float, new_z: float) -> tuple[float, float]:
        # Axis by axis, so a move into a wall keeps its component along the wall.
        if not self._blocked(new_x, z):
            x = new_x
        if not self._blocked(x, new_z):
            z = new_z
        return x, z

    def clearance(self, yaw_offset: float = 0.0, limit: float = 8.0) -> float:
        """Free distance (cells) from the camera along its heading turned by yaw_offset, up to limit."""
        x, _, z = self._pose.position
        heading = self._pose.yaw + yaw_offset
        steps = np.arange(1, int(limit / 0.05) + 1) * 0.05
        hit = self.map.is_wall(x + steps * math.sin(heading), z + steps * math.cos(heading))
        return float(steps[hit.argmax()]) if hit.any() else limit

    def render(self) -> np.ndarray:
        """The current view, uint8 (H, W, 3)."""
        return render(self.map, self.textures, self._pose, self._rays, self.frame_size, self.fog_colour)
