"""The procedural first-person simulator: determinism, motion, collisions, policies and trajectories."""

from __future__ import annotations

import math

import numpy as np
import pytest

from worldmodel.actions import ACTION_DIM, KEYS, Pose, encode_action
from worldmodel.sim import BRANCH_ACTIONS, ExplorePolicy, RandomPolicy, Simulator, branching, make_policy, rollout
from worldmodel.sim.simulator import PITCH_LIMIT


def test_frames_and_determinism():
    a, b, other = Simulator(7), Simulator(7), Simulator(8)
    fa, fb = a.reset(), b.reset()
    assert fa.dtype == np.uint8 and fa.shape == (*a.frame_size, 3) == (64, 64, 3)
    assert np.array_equal(fa, fb) and not np.array_equal(fa, other.reset())
    for action in ("w", "w+a", "l", "i", [0.1, 0.05, 0.02, 0.1, 0.0, 0.05]):
        assert np.array_equal(a.step(action), b.step(action))
    assert np.array_equal(a.pose, b.pose)
    assert np.array_equal(a.reset(), fa)  # reset returns to the world's start
    assert a.caption.startswith("a walk through a ")


def test_actions_move_the_view_as_named():
    sim = Simulator(3)
    start = sim.reset()
    assert np.array_equal(sim.step("none"), start)
    turned = sim.step("d")
    assert sim.camera.yaw == pytest.approx(Simulator(3).camera.yaw + math.radians(8), abs=1e-6)
    assert np.abs(turned.astype(int) - start).mean() > 5
    back = sim.step("a")
    assert np.abs(back.astype(int) - start).mean() < 1.0  # turning back restores the view (up to rounding)
    for _ in range(20):
        sim.step("i")
    assert sim.camera.pitch == pytest.approx(PITCH_LIMIT)  # pitch is clamped
    for _ in range(20):
        sim.step("k")
    assert sim.camera.pitch == pytest.approx(-PITCH_LIMIT)


def test_pitch_shifts_the_view_vertically():
    sim = Simulator(5)
    level = sim.reset().astype(float)
    up = sim.step("i").astype(float)
    # Looking up moves the scene down the image: the new row r matches the old row r - shift for a few rows.
    errors = [np.abs(up[s:] - level[:64 - s]).mean() for s in range(0, 12)]
    assert int(np.argmin(errors)) >= 3


def test_walls_stop_the_camera():
    sim = Simulator(11)
    sim.reset()
    for _ in range(300):
        sim.step("w")
        x, _, z = sim.camera.position
        assert not sim.map.is_wall(np.array([x]), np.array([z]))[0]
    stuck = sim.pose
    sim.step("w")
    assert np.allclose(sim.pose, stuck)  # facing a wall after 300 steps forward: no further motion


def test_target_poses_are_reached():
    sim = Simulator(2)
    sim.reset()
    target = sim.camera.moved(np.array([0.0, 0.0, 0.1, 0.3, 0.2, -0.1]))  # no translation in the floor plane
    sim.step(target.matrix())
    assert np.allclose(sim.pose, target.matrix(), atol=1e-9)


def test_policies_are_seeded_and_explore_covers_more():
    def cells(policy_name, seed):
        sim = Simulator(4)
        sim.reset()
        policy = make_policy(policy_name, np.random.default_rng(seed))
        seen, actions = set(), []
        for _ in range(200):
            action = policy(sim)
            actions.append(encode_action(action, pose=sim.pose))
            sim.move(action)
            x, _, z = sim.camera.position
            seen.add((int(x), int(z)))
        return seen, np.stack(actions)

    explored, a1 = cells("explore", 0)
    _, a2 = cells("explore", 0)
    wandered, r = cells("random", 0)
    assert np.array_equal(a1, a2)
    assert len(explored) > len(wandered)
    assert len({tuple(np.flatnonzero(v[:len(KEYS)])) for v in r}) >= 8  # the random walk uses many key sets
    assert isinstance(make_policy("random", np.random.default_rng(0)), RandomPolicy)
    assert isinstance(make_policy("explore", np.random.default_rng(0)), ExplorePolicy)
    with pytest.raises(ValueError, match="unknown policy"):
        make_policy("greedy", np.random.default_rng(0))


def warmed_up(seed: int, policy: str, warmup: int, policy_seed: int) -> Simulator:
    """A fresh simulator taken through a rollout's unrecorded warm-up (dataset.rollout's seeding)."""
    sim = Simulator(seed)
    sim.reset()
    act = make_policy(policy, np.random.default_rng([seed, policy_seed + 1]))
    for _ in range(warmup):
        sim.move(act(sim))
    return sim


def test_rollout_pairs_each_frame_with_the_action_that_made_it():
    frames, actions, caption = rollout(9, "random", 12, warmup=5, policy_seed=1)
    assert frames.shape == (12, 64, 64, 3) and actions.shape == (12, ACTION_DIM) and actions.dtype == np.float32
    again = rollout(9, "random", 12, warmup=5, policy_seed=1)
    assert np.array_equal(again[0], frames) and np.array_equal(again[1], actions)
    # Replaying the warm-up and the recorded actions in a fresh simulator gives the same frames.
    sim = warmed_up(9, "random", 5, policy_seed=1)
    replayed = [sim.step(a) for a in actions]
    assert np.array_equal(np.stack(replayed), frames)
    assert caption == sim.caption
    assert not np.array_equal(rollout(9, "random", 12, warmup=5, policy_seed=2)[1], actions)


def test_branches_share_one_history_and_differ_only_by_their_action():
    history, history_actions, branches, branch_actions, caption = branching(9, 4, warmup=5, policy_seed=1)
    assert history.shape == (4, 64, 64, 3) and history_actions.shape == (4, ACTION_DIM)
    assert branches.shape == (len(BRANCH_ACTIONS), 64, 64, 3) == (9, 64, 64, 3)
    assert branch_actions.shape == (9, ACTION_DIM)
    # The history is the switching policy's trajectory: a fresh draw every step.
    again = rollout(9, "switching", 4, warmup=5, policy_seed=1)
    assert np.array_equal(again[0], history) and np.array_equal(again[1], history_actions)
    # Every branch starts from the history's last pose.
    sim = warmed_up(9, "switching", 5, policy_seed=1)
    for a in history_actions:
        sim.move(a)
    pose = sim.camera
    for i, action in enumerate(BRANCH_ACTIONS):
        sim.camera = pose
        assert np.array_equal(sim.step(action), branches[i]), action
        assert np.array_equal(branch_actions[i], encode_action(action))
    assert np.array_equal(branches[0], history[-1])  # "none" changes nothing
    assert len({branches[i].tobytes() for i in range(9)}) == 9
    assert caption == sim.caption


def test_bad_seeds_and_poses_name_the_problem():
    with pytest.raises(ValueError, match="seed"):
        Simulator(-1)
    sim = Simulator(1)
    sim.reset()
    with pytest.raises(ValueError, match="out of range"):
        sim.step(Pose((0.0, -0.5, 0.0)).matrix())  # far from the current pose: refused, not teleported
