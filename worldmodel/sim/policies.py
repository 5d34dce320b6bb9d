"""Policies that drive the simulator to make training and test trajectories.

- RandomPolicy: key actions (single keys, forward/turn combos, "none") held for a few steps, now and then a
  random continuous 6-DoF delta; it steers pitch, roll and eye height back towards level when they wander,
  so views stay mostly on the maze rather than the floor or ceiling.
- "switching": the random policy with a fresh draw every step, so that no action can be told from the motion
  before it (a model trained only on held actions learns to carry the motion on and to ignore the action);
- ExplorePolicy: walks forward, turns towards the more open side when a wall comes close, and sometimes turns,
  strafes or looks around on its own; it covers much more of a map than the random walk.

A policy is called with the simulator and returns an action that encode_action accepts. All randomness comes
from the generator it was made with.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np

from ..actions import CONTINUOUS, MOVE_STEP, STRAFE_STEP, TILT_STEP, TURN_STEP
from .simulator import EYE_HEIGHT, Simulator

RANDOM_CHOICES: dict[str, float] = {
    "w": 0.22, "s": 0.06, "a": 0.09, "d": 0.09, "i": 0.04, "k": 0.04, "j": 0.06, "l": 0.06, "none": 0.08,
    "w+a": 0.06, "w+d": 0.06, "w+j": 0.03, "w+l": 0.03, "s+a": 0.02, "s+d": 0.02, "a+i": 0.02, "d+k": 0.02,
}
CONTINUOUS_PROB = 0.1
# Typical size of a random continuous delta, per component: about one key step, small up and roll.
CONTINUOUS_SCALE = np.array([MOVE_STEP, STRAFE_STEP, 0.05, TURN_STEP, TILT_STEP, math.radians(3.0)])
LEVEL_BEYOND = math.radians(15.0)  # pitch beyond this, a tilt key steers back towards level


def _level(sim: Simulator, rng: np.random.Generator, action: str) -> str:
    """Replace a tilt key by the one towards level when the pitch has wandered far."""
    pitch = sim.camera.pitch
    if abs(pitch) > LEVEL_BEYOND and rng.random() < 0.5:
        return "k" if pitch > 0 else "i"
    return action


class RandomPolicy:
    def __init__(self, rng: np.random.Generator, max_hold: int = 5):
        self.rng, self.max_hold = rng, max_hold
        self._names = list(RANDOM_CHOICES)
        weights = np.array(list(RANDOM_CHOICES.values()))
        self._probs = weights / weights.sum()
        self._current: str | np.ndarray = "none"
        self._left = 0

    def __call__(self, sim: Simulator) -> str | np.ndarray:
        if self._left == 0:
            self._left = int(self.rng.integers(1, self.max_hold + 1))
            if self.rng.random() < CONTINUOUS_PROB:
                delta = self.rng.normal(size=len(CONTINUOUS)) * CONTINUOUS_SCALE
                camera = sim.camera
                # Up and roll pull back towards the level view at the standard eye height (-y is the height).
                delta[2] -= 0.3 * (-camera.position[1] - EYE_HEIGHT)
                delta[5] -= 0.3 * camera.roll
                self._current = np.clip(delta, -3 * CONTINUOUS_SCALE, 3 * CONTINUOUS_SCALE)
            else:
                self._current = self._names[int(self.rng.choice(len(self._names), p=self._probs))]
        self._left -= 1
        if isinstance(self._current, str):
            return _level(sim, self.rng, self._current)
        return self._current


class ExplorePolicy:
    def __init__(self, rng: np.random.Generator, near: float = 0.9):
        self.rng, self.near = rng, near
        self._turn: str | None = None
        self._left = 0

    def __call__(self, sim: Simulator) -> str:
        if self._left > 0 and self._turn is not None:
            self._left -= 1
            return self._turn
        if sim.clearance() < self.near:
            # Turn towards the side that opens up more, for long enough to face away from the wall.
            left, right = sim.clearance(-math.pi / 2), sim.clearance(math.pi / 2)
            self._turn = "a" if left > right else "d"
            self._left = int(self.rng.integers(3, 10))
            return self._turn
        r = self.rng.random()
        if r < 0.08:
            self._turn = str(self.rng.choice(["w+a", "w+d", "a", "d"]))
            self._left = int(self.rng.integers(1, 6))
            return self._turn
        if r < 0.14:
            return str(self.rng.choice(["j", "l", "none", "s"]))
        if r < 0.18:
            return _level(sim, self.rng, str(self.rng.choice(["i", "k"])))
        return "w"


POLICIES = {"random": RandomPolicy, "switching": partial(RandomPolicy, max_hold=1), "explore": ExplorePolicy}


def make_policy(name: str, rng: np.random.Generator) -> RandomPolicy | ExplorePolicy:
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}: choose from {', '.join(POLICIES)}")
    return POLICIES[name](rng)
