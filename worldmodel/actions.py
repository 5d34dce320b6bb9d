"""The action language of the world model (DESIGN §5) and the camera poses it moves.

An action is one step of camera motion, given as
- keys: "w"/"s" forward/back, "a"/"d" yaw left/right, "i"/"k" pitch up/down, "j"/"l" strafe left/right, "none",
  or a combination held together such as "w+a" (case and whitespace do not matter);
- a 6-vector of continuous deltas (forward, strafe, up, yaw, pitch, roll) in the simulator's units:
  cells of the map for distances, radians for angles;
- a 4×4 camera-to-world pose to move to, relative to the current pose (`pose=`).

`encode_action` turns any of them into the model's vector of ACTION_DIM floats: 8 key bits (1 = held) followed by
the 6 continuous deltas. A key also fills in the delta it causes, so the key bits and the continuous part always
agree; deltas and poses leave the key bits at 0.

Coordinates follow the OpenCV camera convention used by camera-controlled video models: the camera looks along
its +z with +x to the right and +y down, and the world is y-down too, so a level camera with yaw 0 has the
identity rotation. Positions are (x, y, z) with the map's floor plane at y = 0 and heights negative y.
Rotation = R_y(yaw) · R_x(pitch) · R_z(roll): positive yaw turns right, positive pitch looks up, positive roll
lowers the right side of the view. Translation moves in the heading frame (forward along the horizontal
view direction, strafe to the right, up against gravity) before the rotation of the same step is applied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

KEYS: tuple[str, ...] = ("w", "s", "a", "d", "i", "k", "j", "l")
CONTINUOUS: tuple[str, ...] = ("forward", "strafe", "up", "yaw", "pitch", "roll")
ACTION_DIM = len(KEYS) + len(CONTINUOUS)  # 14
NONE = "none"

# What one step of a held key does, in the simulator's units (cells, radians).
MOVE_STEP = 0.25
STRAFE_STEP = 0.2
TURN_STEP = math.radians(8.0)
TILT_STEP = math.radians(5.0)
KEY_EFFECTS: dict[str, tuple[str, float]] = {
    "w": ("forward", MOVE_STEP), "s": ("forward", -MOVE_STEP),
    "a": ("yaw", -TURN_STEP), "d": ("yaw", TURN_STEP),
    "i": ("pitch", TILT_STEP), "k": ("pitch", -TILT_STEP),
    "j": ("strafe", -STRAFE_STEP), "l": ("strafe", STRAFE_STEP),
}
# Key bits are 0 (up) or 1 (held).
KEY_BOUNDS = (0.0, 1.0)
# The largest |delta| one step may ask for, per continuous component: about four key steps, so that a pose
# target far from the current pose is refused instead of teleporting the camera.
DELTA_LIMITS: dict[str, float] = {
    "forward": 1.0, "strafe": 1.0, "up": 0.5,
    "yaw": math.radians(45.0), "pitch": math.radians(30.0), "roll": math.radians(30.0),
}
_OPPOSITES = (("w", "s"), ("a", "d"), ("i", "k"), ("j", "l"))


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    cy, sy, cp, sp, cr, sr = (math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch), math.cos(roll),
                              math.sin(roll))
    r_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    r_pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    r_roll = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return r_yaw @ r_pitch @ r_roll


def _wrap(angle: float) -> float:
    """An angle in (-pi, pi]."""
    return -(math.remainder(-angle, 2 * math.pi))


@dataclass(frozen=True)
class Pose:
    """A camera pose: position (x, y, z) in cells (y down: the eye height is -y) and yaw/pitch/roll in radians."""

    position: tuple[float, float, float]
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0

    def matrix(self) -> np.ndarray:
        """The 4×4 camera-to-world matrix (float64)."""
        out = np.eye(4)
        out[:3, :3] = _rotation(self.yaw, self.pitch, self.roll)
        out[:3, 3] = self.position
        return out

    @classmethod
    def from_matrix(cls, matrix: np.ndarray) -> "Pose":
        m = check_pose_matrix(matrix)
        r = m[:3, :3]
        # R = R_y(yaw) R_x(pitch) R_z(roll): the third column is the view direction
        # (cos p sin y, -sin p, cos p cos y), the second row (cos p sin r, cos p cos r, -sin p).
        pitch = math.asin(float(np.clip(-r[1, 2], -1.0, 1.0)))
        yaw = math.atan2(r[0, 2], r[2, 2])
        roll = math.atan2(r[1, 0], r[1, 1])
        return cls(tuple(float(v) for v in m[:3, 3]), yaw, pitch, roll)

    def moved(self, delta: np.ndarray) -> "Pose":
        """This pose after a 6-vector delta (forward, strafe, up, yaw, pitch, roll), without any limits."""
        forward, strafe, up, d_yaw, d_pitch, d_roll = (float(v) for v in delta)
        heading = np.array([math.sin(self.yaw), 0.0, math.cos(self.yaw)])
        right = np.array([math.cos(self.yaw), 0.0, -math.sin(self.yaw)])
        position = np.asarray(self.position) + forward * heading + strafe * right + np.array([0.0, -up, 0.0])
        return Pose(tuple(float(v) for v in position), _wrap(self.yaw + d_yaw), self.pitch + d_pitch,
                    self.roll + d_roll)

    def delta_to(self, target: "Pose") -> np.ndarray:
        """The 6-vector delta that moves this pose to `target` (the inverse of `moved`)."""
        offset = np.asarray(target.position) - np.asarray(self.position)
        heading = np.array([math.sin(self.yaw), 0.0, math.cos(self.yaw)])
        right = np.array([math.cos(self.yaw), 0.0, -math.sin(self.yaw)])
        return np.array([offset @ heading, offset @ right, -offset[1], _wrap(target.yaw - self.yaw),
                         target.pitch - self.pitch, target.roll - self.roll])


def check_pose_matrix(matrix: np.ndarray, name: str = "pose") -> np.ndarray:
    """A validated float64 copy of a 4×4 camera-to-world matrix (finite, rigid, right-handed)."""
    m = np.array(matrix, dtype=np.float64)
    if m.shape != (4, 4):
        raise ValueError(f"{name} must be a 4×4 camera-to-world matrix, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError(f"{name} contains NaN or inf")
    if not np.allclose(m[3], [0, 0, 0, 1], atol=1e-6):
        raise ValueError(f"{name}'s last row must be [0, 0, 0, 1], got {m[3].tolist()}")
    r = m[:3, :3]
    if not np.allclose(r @ r.T, np.eye(3), atol=1e-4) or np.linalg.det(r) < 0:
        raise ValueError(f"{name}'s upper-left 3×3 must be a rotation (orthonormal, determinant +1)")
    return m


def _check_delta(delta: np.ndarray) -> None:
    for name, value in zip(CONTINUOUS, delta):
        limit = DELTA_LIMITS[name]
        if abs(value) > limit + 1e-9:
            raise ValueError(f"{name} delta {value:.4g} is out of range: one step moves at most ±{limit:.4g} "
                             f"({'cells' if name in ('forward', 'strafe', 'up') else 'radians'})")


def parse_keys(text: str) -> tuple[str, ...]:
    """The held keys of a key string ("w", "A + w", "none"), in KEYS order; () for "none"."""
    names = [part.strip().lower() for part in text.split("+")]
    if names == [NONE]:
        return ()
    unknown = [n for n in names if n not in KEYS]
    if unknown:
        shown = ", ".join(repr(n) for n in unknown)
        raise ValueError(f"unknown key name(s) {shown} in action {text!r}: use {', '.join(KEYS)} joined by '+', "
                         f"or {NONE!r}")
    for a, b in _OPPOSITES:
        if a in names and b in names:
            raise ValueError(f"action {text!r} holds opposite keys {a!r} and {b!r} together")
    return tuple(k for k in KEYS if k in names)


def encode_action(action: str | np.ndarray | list | tuple, pose: np.ndarray | Pose | None = None) -> np.ndarray:
    """The model's action vector, float32 (ACTION_DIM,): key bits then (forward, strafe, up, yaw, pitch, roll).

    action: a key string; a 6-vector delta; a 4×4 camera-to-world target pose (needs `pose=`, the current
    camera-to-world pose or a Pose); or an already encoded ACTION_DIM vector (checked and returned).
    """
    out = np.zeros(ACTION_DIM, dtype=np.float64)
    if isinstance(action, str):
        for key in parse_keys(action):
            out[KEYS.index(key)] = 1.0
            component, amount = KEY_EFFECTS[key]
            out[len(KEYS) + CONTINUOUS.index(component)] += amount
        return out.astype(np.float32)
    try:
        values = np.array(action, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"an action is a key string, a 6-vector delta or a 4×4 pose, got {action!r}") from None
    if not np.isfinite(values).all():
        raise ValueError("action contains NaN or inf")
    if values.shape == (len(CONTINUOUS),):
        _check_delta(values)
        out[len(KEYS):] = values
    elif values.shape == (4, 4):
        if pose is None:
            raise ValueError("a 4×4 target pose is relative to the current one: pass pose= (the current 4×4 "
                             "camera-to-world matrix)")
        current = pose if isinstance(pose, Pose) else Pose.from_matrix(check_pose_matrix(pose, "pose="))
        delta = current.delta_to(Pose.from_matrix(check_pose_matrix(values, "target pose")))
        _check_delta(delta)
        out[len(KEYS):] = delta
    elif values.shape == (ACTION_DIM,):
        bits = values[: len(KEYS)]
        if not np.isin(bits, KEY_BOUNDS).all():
            raise ValueError(f"encoded action key bits must be {KEY_BOUNDS[0]:g} or {KEY_BOUNDS[1]:g}, got "
                             f"{bits.tolist()}")
        _check_delta(values[len(KEYS):])
        out[:] = values
    else:
        raise ValueError(f"action array has shape {values.shape}: expected ({len(CONTINUOUS)},) deltas "
                         f"{CONTINUOUS}, a (4, 4) pose, or an encoded ({ACTION_DIM},) vector")
    return out.astype(np.float32)


def delta_of(encoded: np.ndarray) -> np.ndarray:
    """The continuous part (forward, strafe, up, yaw, pitch, roll) of an encoded action, float64."""
    return np.asarray(encoded, dtype=np.float64)[len(KEYS):]
