"""Rendering the procedural world: anti-aliased numpy frames, deterministic, frame-addressable, fast.

Everything is a function of absolute time t = frame / fps, so `render(scene, n, start_frame=k)` continues a
scene seamlessly and a stream can run for minutes. Linear movers wrap around the frame (the world is a torus:
an object leaving on the left re-enters on the right, drawn on both sides while it crosses), bouncers reflect off
the borders, growth is a sawtooth, so every motion can go on for ever.

Anti-aliasing is analytic: shapes are signed distance functions, and a pixel's coverage is the distance from its
centre to the edge clamped to one pixel, clip(0.5 - d, 0, 1). Objects are drawn only inside their bounding box,
which keeps a 256² frame at about a millisecond on one core.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import numpy as np

from .colour import PALETTE
from .world import (GROUND_SHADE, HORIZON, PANNABLE, SIZES, SKY_HORIZON, SKY_TOP, Background, Obj, Scene,
                    Split, caption, sample_scene)

# Motion constants, in frames (of the picture) per second or seconds per cycle, chosen so motion is obvious
# in a 2-4 s clip at 16 fps: a left/right/up/down mover crosses ~3/4 of the frame in 3 s.
LINEAR_SPEED = 0.25
BOUNCE_SPEED = 0.2  # per axis: bouncers travel diagonally
ORBIT_RADIUS = 0.16
ORBIT_PERIOD = 3.0
GROW_PERIOD = 3.0  # the scale ramps 0.5 -> 1.5 (growing) or 1.5 -> 0.5 (shrinking), then starts over
SPIN_PERIOD = 4.0
PAN_SPEED = 0.1
STRIPE_PERIOD = 0.25  # both patterns repeat every quarter frame, which the analyser relies on
CHECKER_CELL = 0.125
BOUND = 1.25  # every shape fits in a circle of BOUND × its radius


# --- shapes: signed distance in units of the object's radius, negative inside, (u, v) with v pointing up ------

def _star_sdf(u: np.ndarray, v: np.ndarray, points: int, outer: float, inner: float, offset: float) -> np.ndarray:
    """A star with `points` tips at radius `outer` and notches at `inner`; a regular polygon when
    inner = outer·cos(π/points). Folds the plane into one half-sector and measures to its single edge."""
    sector = 2 * math.pi / points
    phi = np.mod(np.arctan2(v, u) - offset, sector)
    phi = np.minimum(phi, sector - phi)
    rho = np.hypot(u, v)
    qx, qy = rho * np.cos(phi), rho * np.sin(phi)
    ex, ey = inner * math.cos(sector / 2) - outer, inner * math.sin(sector / 2)  # edge: tip -> notch
    wx, wy = qx - outer, qy
    h = np.clip((wx * ex + wy * ey) / (ex * ex + ey * ey), 0.0, 1.0)
    dist = np.hypot(wx - ex * h, wy - ey * h)
    return np.where(ex * wy - ey * wx > 0, -dist, dist)  # the origin's side of the edge is inside


def _polygon_sdf(u: np.ndarray, v: np.ndarray, sides: int, radius: float, offset: float) -> np.ndarray:
    return _star_sdf(u, v, sides, radius, radius * math.cos(math.pi / sides), offset)


def _box_sdf(u: np.ndarray, v: np.ndarray, half_w: float, half_h: float) -> np.ndarray:
    qx, qy = np.abs(u) - half_w, np.abs(v) - half_h
    return np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0)


UP = math.pi / 2
SHAPE_SDF = {
    "circle": lambda u, v: np.hypot(u, v) - 1.0,
    "ring": lambda u, v: np.abs(np.hypot(u, v) - 0.75) - 0.25,
    "square": lambda u, v: _polygon_sdf(u, v, 4, 1.15, math.pi / 4),
    "diamond": lambda u, v: _polygon_sdf(u, v, 4, 1.2, UP),
    "triangle": lambda u, v: _polygon_sdf(u, v, 3, 1.25, UP),
    "star": lambda u, v: _star_sdf(u, v, 5, 1.25, 0.5, UP),
    "cross": lambda u, v: np.minimum(_box_sdf(u, v, 1.0, 0.33), _box_sdf(u, v, 0.33, 1.0)),
}


# --- motion: where an object is, how big and how turned, at times t (seconds) ---------------------------------

def _bounce(start: float, travel: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Position after travelling `travel` from `start` inside [lo, hi], reflecting at the ends (triangle wave)."""
    span = max(hi - lo, 1e-6)
    u = np.mod((min(max(start, lo), hi) - lo) / span + travel / span, 2.0)
    return lo + span * (1.0 - np.abs(u - 1.0))


def trajectory(obj: Obj, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, scale, angle) of an object at times t: centre in frame fractions (y down), scale of its radius,
    angle in radians counter-clockwise on screen."""
    t = np.asarray(t, dtype=np.float64)
    ones = np.ones_like(t)
    reach = BOUND * SIZES[obj.size] * (1.5 if obj.motion in ("growing", "shrinking") else 1.0)
    # Objects that do not wrap stay whole inside the frame, whatever start position they were given.
    x = min(max(obj.x, reach), 1 - reach) * ones
    y = min(max(obj.y, reach), 1 - reach) * ones
    scale, angle = ones.copy(), np.zeros_like(t)
    cycles = obj.speed * t
    if obj.motion in ("left", "right"):
        x = np.mod(obj.x + (1 if obj.motion == "right" else -1) * LINEAR_SPEED * cycles, 1.0)
    elif obj.motion in ("up", "down"):
        y = np.mod(obj.y + (1 if obj.motion == "down" else -1) * LINEAR_SPEED * cycles, 1.0)
    elif obj.motion == "bouncing":  # the phase's quarter picks one of the four diagonal directions
        quarter = int(obj.phase * 4) % 4
        sx, sy = (1 if quarter in (0, 3) else -1), (1 if quarter < 2 else -1)
        x = _bounce(obj.x, sx * BOUNCE_SPEED * cycles, reach, 1 - reach)
        y = _bounce(obj.y, sy * BOUNCE_SPEED * cycles, reach, 1 - reach)
    elif obj.motion == "orbiting":  # counter-clockwise around the start position
        margin = ORBIT_RADIUS + reach
        cx, cy = min(max(obj.x, margin), 1 - margin), min(max(obj.y, margin), 1 - margin)
        a = 2 * math.pi * (obj.phase + cycles / ORBIT_PERIOD)
        x, y = cx + ORBIT_RADIUS * np.cos(a), cy - ORBIT_RADIUS * np.sin(a)
    elif obj.motion in ("growing", "shrinking"):
        ramp = np.mod(obj.phase + cycles / GROW_PERIOD, 1.0)
        scale = 0.5 + ramp if obj.motion == "growing" else 1.5 - ramp
    elif obj.motion == "spinning":
        angle = 2 * math.pi * (obj.phase + cycles / SPIN_PERIOD)
    return x, y, scale, angle


# --- drawing --------------------------------------------------------------------------------------------------

def _aa_square_wave(coord: np.ndarray, period: float, pixels_per_unit: float) -> np.ndarray:
    """Anti-aliased square wave: 1 on the first half of each period of `coord`, 0 on the second."""
    f = np.mod(coord / period, 1.0)
    to_edge = np.minimum(np.minimum(f, np.abs(f - 0.5)), 1.0 - f) * period * pixels_per_unit
    return np.clip(0.5 + np.where(f < 0.5, to_edge, -to_edge), 0.0, 1.0)


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], weight_a: np.ndarray) -> np.ndarray:
    """weight_a · a + (1 - weight_a) · b, broadcasting the weights over a trailing colour axis."""
    b_rgb = np.asarray(b, np.float32)
    return b_rgb + weight_a[..., None] * (np.asarray(a, np.float32) - b_rgb)


def _two_colour(a: tuple[int, int, int], b: tuple[int, int, int], weight_a: np.ndarray) -> np.ndarray:
    """Like _mix for a full (size, size) weight map, straight to uint8, one channel at a time (numpy is several
    times slower broadcasting over a trailing axis of 3, and pans redraw this every frame)."""
    out = np.empty(weight_a.shape + (3,), np.uint8)
    for c in range(3):
        out[..., c] = weight_a * np.float32(a[c] - b[c]) + np.float32(b[c] + 0.5)
    return out


def render_background(bg: Background, size: int, offset: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """The background, uint8 (size, size, 3); `offset` scrolls the patterned kinds (camera pan).

    Every kind is built from 1-D profiles (per row, per column, or per diagonal for the stripes), so a panning
    background costs about as little as a static one."""
    centres = (np.arange(size, dtype=np.float32) + 0.5) / size
    rows = centres[:, None]  # y of each row, a column vector
    colours = [PALETTE[name] for name in bg.colours]
    if bg.kind == "stripes":  # a function of x + y: one profile over the 2·size - 1 diagonals, then a gather
        diagonals = (np.arange(2 * size - 1, dtype=np.float32) + 1.0) / size + offset[0] + offset[1]
        wave = _aa_square_wave(diagonals, STRIPE_PERIOD, size / math.sqrt(2))
        return _two_colour(colours[0], colours[1], wave[np.add.outer(np.arange(size), np.arange(size))])
    if bg.kind == "checkerboard":  # an XNOR of a column wave and a row wave
        ax = _aa_square_wave(centres[None, :] + offset[0], 2 * CHECKER_CELL, size)
        ay = _aa_square_wave(rows + offset[1], 2 * CHECKER_CELL, size)
        return _two_colour(colours[0], colours[1], ax * ay + (1 - ax) * (1 - ay))
    if bg.kind == "plain":
        column = np.broadcast_to(np.asarray(colours[0], np.float32), (size, 1, 3))
    elif bg.kind == "gradient":
        column = _mix(colours[1], colours[0], rows)
    elif bg.kind == "sky":
        sky = _mix(SKY_HORIZON, SKY_TOP, np.clip(rows / HORIZON, 0, 1))
        shade = 1 - GROUND_SHADE * np.clip((rows - HORIZON) / (1 - HORIZON), 0, 1)
        below = np.clip((rows - HORIZON) * size + 0.5, 0.0, 1.0)  # the horizon row is blended by coverage
        column = _mix(colours[0], (0, 0, 0), shade * below) + sky * (1 - below)[..., None]
    else:
        raise ValueError(f"unknown background kind {bg.kind!r}")
    # These kinds are constant along each row: build one column, then broadcast it across.
    return np.broadcast_to((column + 0.5).astype(np.uint8), (size, size, 3)).copy()


def _draw(frame: np.ndarray, obj: Obj, x: float, y: float, scale: float, angle: float) -> None:
    """Composite one object into a uint8 frame in place, with copies across the borders where it wraps."""
    size = frame.shape[0]
    radius = SIZES[obj.size] * scale * size  # pixels
    half = BOUND * radius + 1.0
    cx, cy = x * size, y * size
    colour = np.asarray(PALETTE[obj.colour], np.float32)
    cos_a, sin_a = math.cos(angle), math.sin(angle)
    for dy in (-size, 0, size):
        for dx in (-size, 0, size):
            x0, x1 = max(int(cx + dx - half), 0), min(int(cx + dx + half) + 1, size)
            y0, y1 = max(int(cy + dy - half), 0), min(int(cy + dy + half) + 1, size)
            if x0 >= x1 or y0 >= y1:
                continue
            px = (np.arange(x0, x1, dtype=np.float32) + 0.5 - (cx + dx)) / radius
            py = (cy + dy - np.arange(y0, y1, dtype=np.float32)[:, None] - 0.5) / radius  # up is positive
            u, v = cos_a * px + sin_a * py, cos_a * py - sin_a * px  # rotate the sample points by -angle
            alpha = np.clip(0.5 - SHAPE_SDF[obj.shape](u, v) * radius, 0.0, 1.0)[..., None]
            patch = frame[y0:y1, x0:x1].astype(np.float32)
            frame[y0:y1, x0:x1] = (patch + alpha * (colour - patch) + 0.5).astype(np.uint8)


def render(scene: Scene, num_frames: int, size: int = 256, fps: float = 16, start_frame: int = 0) -> np.ndarray:
    """Frames start_frame .. start_frame + num_frames - 1 of the scene: uint8 (num_frames, size, size, 3).

    Deterministic, and render(s, n, start_frame=k) equals render(s, k + n)[k:] exactly."""
    t = (start_frame + np.arange(num_frames)) / fps
    tracks = [trajectory(o, t) for o in scene.objects]
    pans = scene.pan is not None and scene.background.kind in PANNABLE
    dx, dy = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1), None: (0, 0)}[scene.pan]
    static = None if pans else render_background(scene.background, size)
    out = np.empty((num_frames, size, size, 3), np.uint8)
    for i in range(num_frames):
        if pans:  # the camera moving right shows the pattern further right: it slides left on screen
            shift = PAN_SPEED * t[i]
            out[i] = render_background(scene.background, size, (dx * shift, dy * shift))
        else:
            out[i] = static
        for obj, (x, y, scale, angle) in zip(scene.objects, tracks):
            _draw(out[i], obj, float(x[i]), float(y[i]), float(scale[i]), float(angle[i]))
    return out


def stream_scene(scene: Scene, chunk_frames: int = 16, size: int = 256, fps: float = 16,
                 start_frame: int = 0) -> Iterator[np.ndarray]:
    """An endless continuation of a scene, chunk by chunk: uint8 (chunk_frames, size, size, 3) each."""
    frame = start_frame
    while True:
        yield render(scene, chunk_frames, size, fps, frame)
        frame += chunk_frames


def sample_clip(rng: np.random.Generator, num_frames: int = 32, *, size: int = 256, fps: float = 16,
                split: Split = "train", max_objects: int = 3) -> tuple[np.ndarray, str]:
    """One training example, made on the fly: (frames uint8 (F, size, size, 3), caption)."""
    scene = sample_scene(rng, split=split, max_objects=max_objects)
    return render(scene, num_frames, size, fps), caption(scene)


def benchmark_render(num_frames: int = 128, size: int = 256, max_objects: int = 1, scenes: int = 8,
                     seed: int = 0) -> dict[str, float]:
    """Render speed on this machine (one core, numpy): frames per second over `scenes` random scenes."""
    rng = np.random.default_rng(seed)
    picked = [sample_scene(rng, split="any", max_objects=max_objects) for _ in range(scenes)]
    start = time.perf_counter()
    for scene in picked:
        render(scene, num_frames, size)
    seconds = time.perf_counter() - start
    return {"fps": scenes * num_frames / seconds, "ms_per_frame": 1e3 * seconds / (scenes * num_frames),
            "size": size, "max_objects": max_objects}
