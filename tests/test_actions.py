"""The world model's action language: keys, deltas and poses encode to one vector, with clear errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sana_stream.model.plucker import MAP_SCALE, pixel_rays, plucker_maps
from worldmodel.actions import (
    ACTION_DIM, CONTINUOUS, DELTA_LIMITS, KEY_EFFECTS, KEYS, MOVE_STEP, TURN_STEP, Pose, encode_action,
)
from worldmodel.sim.raycast import camera_rays


def test_contract_constants():
    assert KEYS == ("w", "s", "a", "d", "i", "k", "j", "l")
    assert ACTION_DIM == 14 == len(KEYS) + len(CONTINUOUS)


def test_keys_set_their_bit_and_their_delta():
    for key, (component, amount) in KEY_EFFECTS.items():
        v = encode_action(key)
        assert v.dtype == np.float32 and v.shape == (ACTION_DIM,)
        assert v[KEYS.index(key)] == 1 and v[: len(KEYS)].sum() == 1
        delta = v[len(KEYS):]
        assert delta[CONTINUOUS.index(component)] == pytest.approx(amount)
        assert np.count_nonzero(delta) == 1
    assert encode_action("d")[len(KEYS) + CONTINUOUS.index("yaw")] > 0  # d turns right: positive yaw
    assert not encode_action("none").any()


def test_combos_are_tolerant_of_case_order_and_spaces():
    want = encode_action("w+a")
    for text in ("a+w", " W + A ", "A+w"):
        assert np.array_equal(encode_action(text), want)
    assert want[len(KEYS)] == pytest.approx(MOVE_STEP)
    assert want[len(KEYS) + CONTINUOUS.index("yaw")] == pytest.approx(-TURN_STEP)
    assert np.array_equal(encode_action("NONE"), np.zeros(ACTION_DIM, np.float32))


@pytest.mark.parametrize("action,message", [
    ("x", "unknown key name"), ("w+q", "'q'"), ("", "unknown key name"), ("none+w", "'none'"),
    ("w+s", "opposite keys"), ([0.1, 0.2], "shape"), (np.zeros((3, 3)), "shape"),
    ([0.1, 0, 0, float("nan"), 0, 0], "NaN"), ([5.0, 0, 0, 0, 0, 0], "forward delta 5 is out of range"),
    ([0, 0, 0, 0, 0, -1.0], "roll delta"), (np.eye(4), "pass pose="), ({"w": 1}, "key string"),
    (np.r_[np.full(8, 0.5), np.zeros(6)], "key bits"),
])
def test_bad_actions_name_the_problem(action, message):
    with pytest.raises(ValueError, match=message):
        encode_action(action)


def test_deltas_and_encoded_vectors_pass_through():
    delta = np.array([0.1, -0.2, 0.05, 0.3, -0.1, 0.02])
    v = encode_action(delta)
    assert not v[: len(KEYS)].any() and np.allclose(v[len(KEYS):], delta)
    assert np.array_equal(encode_action(v), v)
    assert np.array_equal(encode_action(encode_action("w+l")), encode_action("w+l"))


def test_pose_matrix_round_trip_and_conventions():
    pose = Pose((1.5, -0.4, 2.5), yaw=0.7, pitch=-0.3, roll=0.2)
    m = pose.matrix()
    back = Pose.from_matrix(m)
    assert np.allclose(back.position, pose.position)
    assert (back.yaw, back.pitch, back.roll) == pytest.approx((0.7, -0.3, 0.2))
    level = Pose((0.0, 0.0, 0.0))
    assert np.allclose(level.matrix(), np.eye(4))  # OpenCV axes: a level camera with yaw 0 is the identity
    looking_up = Pose((0.0, 0.0, 0.0), pitch=0.5).matrix()
    assert looking_up[1, 2] < 0  # the view direction (third column) points up, i.e. to negative y
    turned_right = Pose((0.0, 0.0, 0.0), yaw=math.pi / 2).matrix()
    assert np.allclose(turned_right[:3, 2], [1, 0, 0])  # now facing the old right (+x)


def test_target_pose_becomes_the_delta_that_reaches_it():
    current = Pose((3.5, -0.5, 4.5), yaw=2.9, pitch=0.1)
    delta = np.array([0.2, -0.1, 0.05, 0.4, -0.05, 0.03])  # yaw crosses +pi: the delta must wrap
    target = current.moved(delta)
    v = encode_action(target.matrix(), pose=current.matrix())
    assert not v[: len(KEYS)].any()
    assert np.allclose(v[len(KEYS):], delta, atol=1e-6)
    assert np.allclose(encode_action(target.matrix(), pose=current), v)
    far = current.moved(np.array([3.0, 0, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match="forward delta .* out of range"):
        encode_action(far.matrix(), pose=current.matrix())
    skewed = target.matrix()
    skewed[0, 0] = 2.0
    with pytest.raises(ValueError, match="rotation"):
        encode_action(skewed, pose=current.matrix())
    assert all(DELTA_LIMITS[c] > 0 for c in CONTINUOUS)



@pytest.mark.parametrize("seed", range(4))
def test_plucker_maps_draw_the_motion_the_simulator_makes(seed):
    # The model's Plücker maps against the camera that Pose.moved (the simulator's own motion) makes of a level
    # camera: each pixel's new ray, seen from the old camera, as (d − d_still, o × d).
    rng = np.random.default_rng(seed)
    delta = rng.uniform(-1, 1, 6) * np.array([DELTA_LIMITS[name] for name in CONTINUOUS]) / 2
    moved = Pose((0.0, 0.0, 0.0)).moved(delta).matrix()
    still = pixel_rays(4, 6, 70.0).double().numpy()
    direction = still @ moved[:3, :3].T
    want = np.concatenate([direction - still, np.cross(moved[:3, 3], direction)], axis=-1) * MAP_SCALE
    got = plucker_maps(torch.from_numpy(encode_action(delta)).view(1, 1, -1), 4, 6, 70.0)[0, 0]
    np.testing.assert_allclose(got.double().numpy(), want, atol=1e-5)


def test_plucker_rays_are_the_simulators_and_none_draws_nothing():
    rays = camera_rays(8, 8, 70.0)
    np.testing.assert_allclose(pixel_rays(8, 8, 70.0).numpy(), rays / np.linalg.norm(rays, axis=1, keepdims=True),
                               atol=1e-6)
    none = torch.from_numpy(encode_action("none")).view(1, 1, -1)
    assert torch.equal(plucker_maps(none, 8, 8, 70.0), torch.zeros(1, 1, 64, 6))
