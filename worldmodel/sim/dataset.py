"""Trajectories for training and evaluation: a world, a policy, and the frames and actions it produces.

Frame i of a trajectory is the view after action i, so each frame is paired with the action that made it (the
convention the world model is trained with: an action acts on the next latent frame). A random number of
unrecorded warm-up steps first moves the camera away from the start pose, so trajectories start all over the map.
"""

from __future__ import annotations

import numpy as np

from .policies import make_policy
from .simulator import Simulator


def rollout(seed: int, policy: str, length: int, *, warmup: int = 0, policy_seed: int | None = None,
            ) -> tuple[np.ndarray, np.ndarray, str]:
    """(frames uint8 (length, H, W, 3), actions float32 (length, ACTION_DIM), caption) in world `seed`."""
    rng = np.random.default_rng([seed, 0 if policy_seed is None else policy_seed + 1])
    sim = Simulator(seed)
    sim.reset()
    act = make_policy(policy, rng)
    for _ in range(warmup):
        sim.move(act(sim))
    frames, actions = [], []
    for _ in range(length):
        actions.append(sim.move(act(sim)))
        frames.append(sim.render())
    return np.stack(frames), np.stack(actions), sim.caption
