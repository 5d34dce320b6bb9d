"""WorldEnv: a world model as a gymnasium Env, for RL code and robot loops written against gymnasium.

    env = WorldEnv(WorldModel.from_pretrained())            # or a RemoteWorldModel
    obs, info = env.reset(seed=0, options={"image": start_frame})
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())

Observations are the newest frame, Box(0, 255, (H, W, 3), uint8). Actions are either key combos,
Discrete(n) over `env.action_names` ("none", single keys, then pairs of keys on different axes such as "w+a"),
or continuous 6-DoF camera deltas, Box(6,) (actions="deltas"). A world model has no reward or goal: reward is
always 0 and terminated always False; truncated comes from max_episode_steps. info holds frame_index, step
and the world's seed (not timings, so that equal seeds give equal infos).
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .actions import CONTINUOUS, DELTA_LIMITS

ACTION_KINDS = ("keys", "deltas")
RESET_OPTIONS = ("image", "prompt", "pose")


def key_combos(keys: tuple[str, ...]) -> list[str]:
    """"none", each key, and each pair of keys on different axes. Keys come in opposing pairs (w/s, a/d, …):
    pressing both keys of one axis cancels out, so such pairs are left out."""
    axes = [keys[i:i + 2] for i in range(0, len(keys), 2)]
    pairs = [f"{a}+{b}" for axis_a, axis_b in combinations(axes, 2) for a in axis_a for b in axis_b]
    return ["none", *keys, *pairs]


class WorldEnv(gym.Env[np.ndarray, Any]):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 16}

    def __init__(self, world: Any = None, *, actions: str = "keys", max_episode_steps: int | None = None,
                 render_mode: str | None = "rgb_array"):
        """world: a WorldModel or RemoteWorldModel of one world (None: the shipped world model).
        actions: "keys" (Discrete over key combos) or "deltas" (Box of 6-DoF camera deltas)."""
        if actions not in ACTION_KINDS:
            raise ValueError(f"actions must be one of {ACTION_KINDS}, got {actions!r}")
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, "
                             f"got {render_mode!r}")
        if max_episode_steps is not None and (not isinstance(max_episode_steps, int) or max_episode_steps < 1):
            raise ValueError(f"max_episode_steps must be None or a positive int, got {max_episode_steps!r}")
        if world is None:
            from .model import WorldModel

            world = WorldModel.from_pretrained()
        if world.batch_size != 1:
            raise ValueError(f"WorldEnv steps one world; this world model steps {world.batch_size}")
        self.world, self.render_mode, self.max_episode_steps = world, render_mode, max_episode_steps
        self.metadata = {**self.metadata, "render_fps": world.fps}
        height, width = world.frame_size
        self.observation_space = spaces.Box(0, 255, (height, width, 3), np.uint8)
        if actions == "keys":
            self.action_names = key_combos(tuple(world.keys))
            self.action_space = spaces.Discrete(len(self.action_names))
        else:
            self.action_names = None
            limits = np.array([DELTA_LIMITS[name] for name in CONTINUOUS])
            high = limits.astype(np.float32)
            # float32 may round a limit up, past what encode_action accepts: step such bounds one ulp down.
            high = np.where(high > limits, np.nextafter(high, np.float32(0)), high)
            self.action_space = spaces.Box(-high, high, dtype=np.float32)
        self._frame: np.ndarray | None = None
        self._steps = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """options: "image" (the start frame), "prompt" and "pose", as WorldModel.reset takes them. Without a
        seed the world's seed is drawn from the env's generator, so a seeded env replays the same episodes."""
        options = dict(options or {})
        unknown = sorted(set(options) - set(RESET_OPTIONS))
        if unknown:
            raise ValueError(f"unknown reset option(s): {', '.join(unknown)}; options: {', '.join(RESET_OPTIONS)}")
        super().reset(seed=seed)
        world_seed = int(self.np_random.integers(0, 2**63 - 1))
        obs = self.world.reset(seed=world_seed, **options)
        self._steps = 0
        return self._result(obs)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._frame is None:
            raise ValueError("call reset() before step()")
        frame, info = self._result(self.world.step(self._command(action)))
        self._steps += 1
        truncated = self.max_episode_steps is not None and self._steps >= self.max_episode_steps
        return frame, 0.0, False, truncated, info

    def render(self) -> np.ndarray | None:
        """The newest frame (render_mode "rgb_array"); None before reset or without a render mode."""
        if self.render_mode is None or self._frame is None:
            return None
        return self._frame.copy()

    def close(self) -> None:
        close = getattr(self.world, "close", None)  # a remote world holds a connection
        if close is not None:
            close()

    def _command(self, action: Any) -> str | np.ndarray:
        """What the world model is told: the key combo an index names, or the deltas themselves."""
        if self.action_names is not None:
            if not self.action_space.contains(action):
                raise ValueError(f"action {action!r} is not in the action space {self.action_space}")
            return self.action_names[int(action)]
        try:
            deltas = np.asarray(action, dtype=np.float32)
        except (TypeError, ValueError):
            deltas = None
        if deltas is None or not self.action_space.contains(deltas):
            raise ValueError(f"action {action!r} is not in the action space {self.action_space}")
        return deltas

    def _result(self, obs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        self._frame = np.array(obs.frame)  # our own copy: what we return is the caller's to keep or modify
        info = {"frame_index": obs.info["frame_index"] + len(obs.frames) - 1, "step": obs.info["step"]}
        if "seed" in obs.info:
            info["seed"] = obs.info["seed"]
        return self._frame.copy(), info
