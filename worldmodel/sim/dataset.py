"""Trajectories for training and evaluation: a world, a policy, and the frames and actions it produces.

Frame i of a trajectory is the view after action i, so each frame is paired with the action that made it (the
convention the world model is trained with: an action acts on the next latent frame). A random number of
unrecorded warm-up steps first moves the camera away from the start pose, so trajectories start all over the map.

Branching trajectories are what teach a model to read the action: a short history, then the next frame under
every single-key action from the same pose. In plain trajectories the action behind a frame can mostly be told
from the motion before it (policies hold actions), so a model learns to carry that motion on and ignores the
action; in a branch group the history is the same for every branch and only the action tells them apart.
"""

from __future__ import annotations

import numpy as np

from ..actions import KEYS, NONE
from .policies import make_policy
from .simulator import Simulator


def rollout(seed: int, policy: str, length: int, *, warmup: int = 0, policy_seed: int | None = None,
            then: tuple[str, ...] = ()) -> tuple[np.ndarray, np.ndarray, str]:
    """(frames uint8 (length, H, W, 3), actions float32 (length, ACTION_DIM), caption) in world `seed`. `then`:
    actions each taken from the last recorded pose (not one after another), their frames appended."""
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
    last = sim.camera
    for action in then:
        sim.camera = last
        actions.append(sim.move(action))
        frames.append(sim.render())
    return np.stack(frames), np.stack(actions), sim.caption


BRANCH_ACTIONS: tuple[str, ...] = (NONE, *KEYS)


def branching(seed: int, history: int, *, warmup: int = 0, policy_seed: int | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """A history of `history` frames from the switching policy (a fresh random action every step), then one
    frame for each of BRANCH_ACTIONS taken from the history's last pose: (history frames uint8 (history, H, W,
    3), history actions float32 (history, ACTION_DIM), branch frames (len(BRANCH_ACTIONS), H, W, 3), branch
    actions (len(BRANCH_ACTIONS), ACTION_DIM), caption)."""
    frames, actions, caption = rollout(seed, "switching", history, warmup=warmup, policy_seed=policy_seed,
                                       then=BRANCH_ACTIONS)
    return frames[:history], actions[:history], frames[history:], actions[history:], caption
