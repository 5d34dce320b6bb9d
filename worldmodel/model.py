"""WorldModel: an action-conditioned video model stepped like a simulator.

    wm = WorldModel.from_pretrained()            # the shipped world model (worldmodel/assets/world)
    obs = wm.reset(seed=0, image=start_frame)    # obs.frames: uint8 (1, H, W, 3), the start frame
    obs = wm.step("w+a")                         # the frames that action produced
    snap = wm.snapshot(); ...; wm.restore(snap)  # fork / rewind

One step is one chunk of `frames_per_step` latent frames, denoised in a few LongSANA steps against the history
held in the transformer's streaming state, and decoded at once. The chunk joins that history at the next step,
whose first pass runs the t = 0 append of the previous chunk and the first denoising pass of the new one together
(one pass over two chunks costs about 1.3 passes over one, not two). The state never grows, so a step costs the
same at frame 10 and at frame 10 000, and a snapshot is a copy of a constant-size state.

Batched worlds: `from_pretrained(..., batch_size=B)` steps B independent worlds in one forward pass;
`step([a1, ..., aB])` then takes one action per world and frames come back as (B, n, H, W, 3).
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sana_stream.model import StateBatch
from sana_stream.pipeline.pipeline import to_uint8, to_unit
from sana_stream.sampling import classifier_free_guidance, make_sampler

from .actions import ACTION_DIM, KEYS, Pose, check_pose_matrix, delta_of, encode_action

DEFAULT_WORLD = Path(__file__).resolve().parent / "assets" / "world"
WORLD_FILE = "world.json"
MAX_BATCH_SIZE = 256
MAX_PROMPT_CHARS = 2000


# ----- the world folder's own settings -------------------------------------------------------------------------


@dataclass(frozen=True)
class WorldConfig:
    """world.json beside the pipeline folder's model_index.json: how the model was trained to be stepped."""

    action_dim: int
    keys: tuple[str, ...]
    frame_size: tuple[int, int]  # (H, W) pixels
    fps: float
    frames_per_step: int  # latent frames one action produces
    timesteps: tuple[float, ...]  # the few-step schedule per chunk (diffusers scale, decreasing)
    window: int | None  # chunks of history kept; None: all
    prompt: str  # the default text conditioning
    context_frames: int  # latent frames of history the start frame fills at reset
    # Optional in world.json. Each denoising pass's velocity is v_none + g·(v_action − v_none), v_none being the
    # prediction for the same frame under "none": 1 is the plain prediction, more reads the action more boldly.
    action_guidance: float = 1.0

    @classmethod
    def from_file(cls, path: str | Path) -> "WorldConfig":
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"cannot read {path}: {err}") from None
        if not isinstance(raw, dict):
            raise ValueError(f"{path} must hold a JSON object")
        missing = sorted({f.name for f in fields(cls) if f.default is MISSING} - set(raw))
        if missing:
            raise ValueError(f"{path} lacks field(s): {', '.join(missing)}")
        try:
            return cls.from_dict(raw)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "WorldConfig":
        def positive_int(name: str) -> int:
            value = raw[name]
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
            return value

        size = raw["frame_size"]
        if not (isinstance(size, (list, tuple)) and len(size) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
            raise ValueError(f"frame_size must be [H, W] positive ints, got {size!r}")
        keys = raw["keys"]
        if not (isinstance(keys, (list, tuple)) and all(isinstance(k, str) for k in keys)):
            raise ValueError(f"keys must be a list of key names, got {keys!r}")
        fps = raw["fps"]
        if not isinstance(fps, (int, float)) or isinstance(fps, bool) or not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a positive number, got {fps!r}")
        window = raw["window"]
        if window is not None:
            window = positive_int("window")
        if not isinstance(raw["prompt"], str):
            raise ValueError(f"prompt must be a string, got {raw['prompt']!r}")
        guidance = raw.get("action_guidance", cls.action_guidance)
        return cls(action_dim=positive_int("action_dim"), keys=tuple(keys), frame_size=(size[0], size[1]),
                   fps=float(fps), frames_per_step=positive_int("frames_per_step"),
                   timesteps=_timesteps(raw["timesteps"]), window=window, prompt=raw["prompt"],
                   context_frames=positive_int("context_frames"), action_guidance=_guidance(guidance))


def _timesteps(value: Any) -> tuple[float, ...]:
    if not (isinstance(value, (list, tuple)) and value
            and all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in value)):
        raise ValueError(f"timesteps must be a non-empty list of numbers, got {value!r}")
    make_sampler("longsana", timesteps=value)  # in (0, 1000], strictly decreasing: checked before any loading
    return tuple(float(t) for t in value)


def _guidance(value: Any) -> float:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (number and math.isfinite(value) and 0 <= value <= 10):
        raise ValueError(f"action_guidance must be a number in [0, 10] (1: off), got {value!r}")
    return float(value)


def action_guided_velocity(model: Any, x: torch.Tensor, t: torch.Tensor, emb: torch.Tensor, mask: torch.Tensor,
                           state: Any, actions: torch.Tensor, guidance: float, append: torch.Tensor | None = None,
                           append_action: torch.Tensor | None = None,
                           previous: torch.Tensor | None = None) -> torch.Tensor:
    """v_none + g·(v_action − v_none) for x after `state`'s history (g = 1: the plain prediction), both predictions
    in one batched pass; `append` (with its actions) joins the history first and `previous` feeds a copy gate, as
    in SanaTransformer.forward."""
    if guidance == 1:
        return model(x, t, emb, mask, state=state, action=actions, append=append, append_action=append_action,
                     previous=previous)

    def pair(a: torch.Tensor | None) -> torch.Tensor | None:
        return None if a is None else torch.cat([a, a])

    # The "none" rows read the same history: the state listed twice (it appends the pending chunk once).
    v = model(pair(x), pair(t), pair(emb), pair(mask), state=StateBatch([state, state]),
              action=torch.cat([actions, torch.zeros_like(actions)]), append=pair(append),
              append_action=pair(append_action), previous=pair(previous))
    acted, none = v.chunk(2)
    return classifier_free_guidance(none, acted, guidance)


# ----- what step() returns and what snapshot() holds ------------------------------------------------------------


@dataclass
class Observation:
    """frames: uint8 (n, H, W, 3) for one world, (B, n, H, W, 3) for a batch of worlds.
    info: frame_index (index of frames[..., 0, :, :, :]; the start frame is 0), step, seed, timings_ms."""

    frames: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def frame(self) -> np.ndarray:
        """The newest frame: (H, W, 3), or (B, H, W, 3) for a batch."""
        return self.frames[..., -1, :, :, :]


@dataclass
class _Run:
    """Everything one rollout of B worlds has that the next step depends on."""

    state: Any  # the transformer's StreamState
    decode_state: Any  # the VAE decoder's cache
    generator: torch.Generator
    frame: np.ndarray  # uint8 (B, H, W, 3): the newest frame of each world
    poses: list[Pose]  # each world's camera as the actions so far moved it (4×4 targets are relative to it)
    frame_index: int  # index of the newest frame
    steps: int
    seed: int
    prompts: list[str]
    text: tuple[torch.Tensor, torch.Tensor]  # (B, L, D) embeddings and (B, L) mask; never written to
    # The newest chunk's latents and actions, not yet in `state`: the next step's first pass appends them. Never
    # written to in place, so clones share them.
    pending: torch.Tensor | None = None
    pending_action: torch.Tensor | None = None
    # The newest clean latent frame (B, C, 1, h, w), what a copy gate copies; kept only for models with one (and
    # also replaced, never written in place).
    newest: torch.Tensor | None = None

    def clone(self) -> "_Run":
        generator = torch.Generator(device=self.generator.device)
        generator.set_state(self.generator.get_state())
        # The decoder cache is a small object of tensors (the per-frame VAE's holds none): deepcopy covers any.
        return _Run(self.state.clone(), copy.deepcopy(self.decode_state), generator, self.frame.copy(),
                    list(self.poses), self.frame_index, self.steps, self.seed, self.prompts, self.text, self.pending,
                    self.pending_action, self.newest)


class Snapshot:
    """A frozen copy of a batch of worlds: restore() it on the model that took it, any number of times."""

    def __init__(self, owner: object, batch_size: int, run: _Run):
        self._owner, self.batch_size, self._run = owner, batch_size, run

    @property
    def frame_index(self) -> int:
        return self._run.frame_index

    @property
    def steps(self) -> int:
        return self._run.steps

    @property
    def nbytes(self) -> int:
        """Bytes held: constant in the number of steps taken."""
        run = self._run
        # newest is often the pending latent itself: each tensor counted once
        held = {id(t): t for t in (run.pending, run.pending_action, run.newest) if t is not None}
        pending = sum(t.numel() * t.element_size() for t in held.values())
        return run.state.nbytes + getattr(run.decode_state, "nbytes", 0) + run.frame.nbytes + pending

    def __repr__(self) -> str:
        return f"Snapshot(batch_size={self.batch_size}, frame_index={self.frame_index}, nbytes={self.nbytes})"


# ----- the world model ------------------------------------------------------------------------------------------


class WorldModel:
    """B worlds (default 1) of one loaded world model; reset() starts them, step() advances them together."""

    def __init__(self, pipeline: Any, config: WorldConfig, *, batch_size: int = 1, _owner: object | None = None):
        """pipeline: a loaded video Pipeline whose transformer takes actions; config: its world.json.
        Prefer from_pretrained(); sibling() makes more worlds on the same weights."""
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be an int in [1, {MAX_BATCH_SIZE}], got {batch_size!r}")
        model = pipeline.transformer
        if pipeline.family != "video":
            raise ValueError(f"a world model needs a video pipeline, this one is {pipeline.family!r}")
        if model.config.action_dim != config.action_dim:
            raise ValueError(f"world.json says action_dim {config.action_dim}, the transformer takes "
                             f"{model.config.action_dim}")
        if config.action_dim != ACTION_DIM or config.keys != KEYS:
            raise ValueError(f"this model was trained on actions of {config.action_dim} values over keys "
                             f"{config.keys}; this SDK encodes {ACTION_DIM} over {KEYS}")
        if model.config.copy_gate and config.frames_per_step != 1:
            raise ValueError(f"a copy gate copies the frame before each new one, known only for one latent frame a "
                             f"step; world.json asks for frames_per_step {config.frames_per_step}")
        height, width = config.frame_size
        factor = pipeline.vae.spatial_factor
        patch = model.config.patch_size
        if height % (factor * patch[1]) or width % (factor * patch[2]):
            raise ValueError(f"frame_size {config.frame_size} is not a multiple of the model's "
                             f"{factor * patch[1]}-pixel grid")
        self.pipeline, self.config, self.batch_size = pipeline, config, batch_size
        self._owner = _owner if _owner is not None else object()  # snapshots restore only onto these weights
        self._sampler = make_sampler("longsana", timesteps=config.timesteps)  # also validates the schedule
        device = model.device
        # Preallocated per step: the timestep of each denoising step for every world.
        self._timesteps = [t.to(device).expand(batch_size).contiguous() for t in self._sampler.timesteps]
        self._latent_hw = (height // factor, width // factor)
        self._none = encode_action("none")
        self._bf16_decode = model.dtype == torch.bfloat16
        self._key_cache: dict[str, np.ndarray] = {}
        self._run: _Run | None = None

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, *, batch_size: int = 1,
                        dtype: torch.dtype | None = torch.bfloat16,
                        device: torch.device | str | None = None, compile: bool = False,
                        action_guidance: float | None = None,
                        timesteps: list[float] | tuple[float, ...] | None = None) -> "WorldModel":
        """Load a world folder: a pipeline folder (load_pipeline's format) with a world.json beside it.
        path=None: the world model shipped in worldmodel/assets/world. dtype: transformer and text encoder
        (bf16 is the fast one on CPU; never fp16 there). compile: torch.compile the transformer blocks and the
        decoder (Pipeline.compile): faster steps after a one-off compile on the first steps; needs a C++ compiler.
        action_guidance: overrides world.json's (1: off; see WorldConfig). timesteps: overrides world.json's
        denoising schedule per step, e.g. [1000] for one pass (about 1.4x the steps per second of the shipped
        [1000, 500], for blurrier long rollouts: README, "The world model")."""
        from sana_stream import load_pipeline  # here, not at the top: RemoteWorldModel users never load models

        folder = DEFAULT_WORLD if path is None else Path(path)
        if not (folder / WORLD_FILE).is_file():
            if path is None:
                raise FileNotFoundError(f"the shipped world model is not in this install ({folder}); pass the path "
                                        "of a world folder (a pipeline folder with a world.json)")
            raise FileNotFoundError(f"{folder} is not a world folder: no {WORLD_FILE} in it")
        config = WorldConfig.from_file(folder / WORLD_FILE)
        if action_guidance is not None:
            config = replace(config, action_guidance=_guidance(action_guidance))
        if timesteps is not None:
            config = replace(config, timesteps=_timesteps(timesteps))
        pipeline = load_pipeline(folder, dtype=dtype, device=device)
        return cls(pipeline.compile() if compile else pipeline, config, batch_size=batch_size)

    def sibling(self, batch_size: int | None = None) -> "WorldModel":
        """New, independent worlds on the same loaded weights (a server makes one per session this way).
        Snapshots move between siblings of the same batch size."""
        size = self.batch_size if batch_size is None else batch_size
        return WorldModel(self.pipeline, self.config, batch_size=size, _owner=self._owner)

    # ----- properties ----------------------------------------------------------------------------------------

    @property
    def frame_size(self) -> tuple[int, int]:
        return self.config.frame_size

    @property
    def fps(self) -> float:
        return self.config.fps

    @property
    def keys(self) -> tuple[str, ...]:
        return self.config.keys

    @property
    def frame(self) -> np.ndarray:
        """A copy of the newest frame: (H, W, 3), or (B, H, W, 3) for a batch."""
        run = self._require_run()
        return run.frame[0].copy() if self.batch_size == 1 else run.frame.copy()

    @property
    def pose(self) -> np.ndarray:
        """The camera-to-world pose the actions so far have commanded: 4×4, or (B, 4, 4) for a batch. It starts
        at reset's `pose`; the model is told the motion, so this is where the camera was sent, not a measurement."""
        poses = np.stack([p.matrix() for p in self._require_run().poses])
        return poses[0] if self.batch_size == 1 else poses

    # ----- the API -------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def reset(self, seed: int | None = None, image: Any = None, prompt: str | list[str] | None = None,
              pose: np.ndarray | None = None) -> Observation:
        """Start the worlds; returns the start frame.

        image: the start frame (uint8 (H, W, 3) array, PIL image or path), encoded into the history as if the
          camera had stood still; None: the model imagines a start from the prompt.
        seed: the noise (None: a fresh random one).
        prompt: the text conditioning; None: world.json's.
        pose: the start frame's 4×4 camera-to-world matrix, the frame that 4×4 target-pose actions are given
          in; None: the origin, level.
        For a batch, image, prompt and pose are one for every world or B of them."""
        started = time.perf_counter()
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63):
            raise ValueError(f"seed must be None or an int in [0, 2**63), got {seed!r}")
        prompts = self._prompts(self.config.prompt if prompt is None else prompt)
        latents = self._encode_images(image) if image is not None else None
        poses = self._start_poses(pose)
        seed = seed if seed is not None else int(torch.seed() % 2**63)

        pipe, model, b = self.pipeline, self.pipeline.transformer, self.batch_size
        encoded = {p: pipe.encode_prompt(p) for p in set(prompts)}  # once per distinct text
        text = (torch.cat([encoded[p][0] for p in prompts]), torch.cat([encoded[p][1] for p in prompts]))
        generator = torch.Generator().manual_seed(seed)
        run = _Run(model.new_state(b, window=self.config.window), pipe.vae.new_decode_state(), generator,
                   np.zeros((b, *self.config.frame_size, 3), np.uint8), poses, 0, 0, seed, prompts, text)
        still = self._actions([self._none] * b, self.config.context_frames)
        if latents is None:  # no start frame given: imagine one from the prompt
            latents = self._denoise(run, still, self.config.context_frames)
        else:
            latents = latents.repeat(1, 1, self.config.context_frames, 1, 1)
        model.append_state(run.state, latents.to(model.dtype), *run.text, action=still)
        if model.config.copy_gate:
            run.newest = latents[:, :, -1:].to(model.dtype)
        frames = self._decode(run, latents)
        run.frame = frames[:, -1].copy()
        self._run = run  # only now: a rejected reset leaves the previous worlds as they were
        info = {"frame_index": 0, "step": 0, "seed": seed, "prompt": prompts[0] if b == 1 else prompts,
                "timings_ms": {"total": round(1e3 * (time.perf_counter() - started), 3)}}
        return self._observation(run.frame[:, None].copy(), info)

    @torch.inference_mode()
    def step(self, action: Any) -> Observation:
        """Advance every world by one action: a key string ("w", "a+w", "none"), a 6-DoF delta, a 4×4 target
        pose or an encoded action vector; for a batch, a sequence of B of them (one world also takes a sequence
        of one). Returns the frames the action produced."""
        run = self._require_run()
        vectors = self._encode_batch(action, run.poses)  # every action validated before anything changes
        actions = self._actions(vectors, self.config.frames_per_step)
        t0 = time.perf_counter()
        x = self._denoise(run, actions, self.config.frames_per_step)
        run.pending, run.pending_action = x.to(self.pipeline.transformer.dtype), actions
        if run.newest is not None:
            run.newest = run.pending  # one frame a step with a copy gate
        t1 = time.perf_counter()
        frames = self._decode(run, x)
        t2 = time.perf_counter()
        first = run.frame_index + 1
        run.frame = frames[:, -1].copy()
        run.poses = [p.moved(delta_of(v)) for p, v in zip(run.poses, vectors)]
        run.frame_index += frames.shape[1]
        run.steps += 1
        info = {"frame_index": first, "step": run.steps,
                "timings_ms": {"generate": round(1e3 * (t1 - t0), 3), "decode": round(1e3 * (t2 - t1), 3),
                               "total": round(1e3 * (t2 - t0), 3)}}
        return self._observation(frames, info)

    @torch.inference_mode()
    def snapshot(self) -> Snapshot:
        """Freeze the worlds as they are now (history, noise generator, frame counter, decoder cache)."""
        return Snapshot(self._owner, self.batch_size, self._require_run().clone())

    @torch.inference_mode()
    def restore(self, snapshot: Snapshot) -> None:
        """Put the worlds back as they were at `snapshot`: the same actions then give the same frames."""
        if not isinstance(snapshot, Snapshot):
            raise ValueError(f"restore() takes a Snapshot from snapshot(), got {type(snapshot).__name__}")
        if snapshot._owner is not self._owner:
            raise ValueError("this snapshot was taken from another world model (other weights); it cannot be "
                             "restored here")
        if snapshot.batch_size != self.batch_size:
            raise ValueError(f"this snapshot holds {snapshot.batch_size} world(s); this model steps "
                             f"{self.batch_size}")
        self._run = snapshot._run.clone()  # the snapshot itself stays untouched, to be restored again

    # ----- internals -----------------------------------------------------------------------------------------

    def _require_run(self) -> _Run:
        if self._run is None:
            raise ValueError("call reset() before step(), snapshot() or frame")
        return self._run

    def _encode_batch(self, action: Any, poses: list[Pose]) -> list[np.ndarray]:
        """One encoded action per world, all validated before anything runs."""
        b = self.batch_size
        if b == 1:
            # Code written for batches passes one world's action in a sequence of one: unwrap it. (No single
            # action has a leading axis of 1: a 6-vector, a 4×4 pose, a key string.)
            if isinstance(action, (list, tuple)) and len(action) == 1 or (
                    isinstance(action, np.ndarray) and action.ndim >= 2 and action.shape[0] == 1):
                action = action[0]
            return [self._encode_one(action, poses[0], None)]
        scalar_array = isinstance(action, np.ndarray) and action.ndim == 0
        if not isinstance(action, (list, tuple, np.ndarray)) or scalar_array:
            raise ValueError(f"this model steps {b} worlds: pass a sequence of {b} actions, got "
                             f"{type(action).__name__}")
        if len(action) != b:
            raise ValueError(f"this model steps {b} worlds: got {len(action)} actions")
        return [self._encode_one(a, p, i) for i, (a, p) in enumerate(zip(action, poses))]

    def _encode_one(self, action: Any, pose: Pose, index: int | None) -> np.ndarray:
        if isinstance(action, str):
            cached = self._key_cache.get(action)
            if cached is not None:
                return cached
        try:
            vector = encode_action(action, pose=pose)
        except ValueError as err:
            raise ValueError(f"action {index}: {err}" if index is not None else str(err)) from None
        if isinstance(action, str) and len(self._key_cache) < 1024:  # key combos are few; strings never change
            self._key_cache[action] = vector
        return vector

    def _actions(self, vectors: list[np.ndarray], frames: int) -> torch.Tensor:
        """(B, frames, action_dim): each world's action held over the latent frames it applies to."""
        actions = torch.from_numpy(np.stack(vectors)).to(self.pipeline.transformer.device)
        return actions[:, None].expand(-1, frames, -1)

    def _denoise(self, run: _Run, actions: torch.Tensor, frames: int) -> torch.Tensor:
        """A clean chunk of `frames` latent frames for every world, against the history in run.state; the first
        pass also appends run's pending chunk to that history."""
        model, sampler = self.pipeline.transformer, self._sampler
        channels = model.config.in_channels
        x = torch.randn((self.batch_size, channels, frames, *self._latent_hw), generator=run.generator)
        x = x.to(model.device)
        for i, t in enumerate(self._timesteps):
            v = self._velocity(run, x.to(model.dtype), t, actions)
            run.pending = run.pending_action = None
            x = sampler.step(v, i, x, generator=run.generator)
        return x

    def _velocity(self, run: _Run, x: torch.Tensor, t: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The model's velocity for x under `actions` (action-guided as the config asks); appends run's pending
        chunk first."""
        return action_guided_velocity(self.pipeline.transformer, x, t, *run.text, run.state, actions,
                                      self.config.action_guidance, run.pending, run.pending_action, run.newest)

    def _decode(self, run: _Run, latents: torch.Tensor) -> np.ndarray:
        """Latents (B, C, T, h, w) -> uint8 frames (B, n, H, W, 3), through the decoder's stream cache."""
        vae = self.pipeline.vae
        # The VAE keeps its stored fp32 weights; when the model runs in bf16, decoding under bf16 autocast halves
        # a batch's decode time on CPU for about one grey level of difference.
        with torch.autocast(vae.device.type, torch.bfloat16, enabled=self._bf16_decode):
            pixels = vae.decode_chunk(vae.denormalize_latents(latents), run.decode_state)
        return np.ascontiguousarray(to_uint8(to_unit(pixels).permute(0, 2, 3, 4, 1)))

    def _encode_images(self, image: Any) -> torch.Tensor:
        """Start frames -> normalised latents (B, C, 1, h, w); one image is used for every world."""
        from sana_stream.pipeline.images import to_model_image

        b = self.batch_size
        batched = isinstance(image, (list, tuple)) or (isinstance(image, np.ndarray) and image.ndim == 4)
        images = list(image) if batched else [image] * b
        if len(images) != b:
            raise ValueError(f"reset() got {len(images)} start images for {b} world(s)")
        height, width = self.config.frame_size
        try:
            pixels = torch.cat([to_model_image(img, height, width) for img in images])
        except ValueError as err:
            raise ValueError(f"start image: {err}") from None
        vae = self.pipeline.vae
        return vae.normalize_latents(vae.encode(pixels[:, :, None].to(vae.device, vae.dtype))).float()

    def _prompts(self, prompt: Any) -> list[str]:
        b = self.batch_size
        prompts = list(prompt) if isinstance(prompt, (list, tuple)) else [prompt] * b
        if len(prompts) != b:
            raise ValueError(f"reset() got {len(prompts)} prompts for {b} world(s)")
        for p in prompts:
            if not isinstance(p, str) or len(p) > MAX_PROMPT_CHARS:
                raise ValueError(f"prompt must be a string of at most {MAX_PROMPT_CHARS} characters, got "
                                 f"{type(p).__name__}" + (f" of {len(p)}" if isinstance(p, str) else ""))
        return prompts

    def _start_poses(self, pose: Any) -> list[Pose]:
        b = self.batch_size
        if pose is None:
            return [Pose((0.0, 0.0, 0.0))] * b
        try:
            matrices = np.asarray(pose, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"pose must be a 4×4 camera-to-world matrix, got {type(pose).__name__}") from None
        if matrices.shape == (4, 4):
            matrices = np.broadcast_to(matrices, (b, 4, 4))
        if matrices.shape != (b, 4, 4):
            raise ValueError(f"pose must be a 4×4 camera-to-world matrix or ({b}, 4, 4), got shape {matrices.shape}")
        return [Pose.from_matrix(check_pose_matrix(m, "reset pose")) for m in matrices]

    def _observation(self, frames: np.ndarray, info: dict[str, Any]) -> Observation:
        info["batch_size"] = self.batch_size
        return Observation(frames[0] if self.batch_size == 1 else frames, info)
