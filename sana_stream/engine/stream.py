"""An endless stream of frames: LongSANA-style chunked generation at constant memory.

Each chunk of K latent frames is denoised in a few steps against the history held in the transformer's
streaming state, added to that history by the t = 0 pass, and decoded at once by the causal VAE decoder, whose
feature cache is constant-size too. Nothing grows with the stream's length.

Edits (prompt, image, seed, pause) may be called from any thread while frames are consumed; they are queued
and take effect at the next chunk boundary, so frames already produced never change.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..model.state import StateBatch
from ..pipeline.pipeline import to_uint8, to_unit
from ..sampling import (
    LONGSANA_TIMESTEPS, classifier_free_guidance, frame_timesteps, hold_conditioning_frames, make_sampler,
)

DEFAULT_FPS = 16.0


class Frame(np.ndarray):
    """A uint8 (H, W, 3) frame that knows its place in the stream: `index` and presentation `time` (s)."""

    index: int
    time: float

    @classmethod
    def at(cls, pixels: np.ndarray, index: int, fps: float) -> "Frame":
        """`pixels` as the stream's frame number `index`, presented at index / fps seconds."""
        frame = pixels.view(cls)
        frame.index, frame.time = index, index / fps
        return frame


@dataclass
class StreamOptions:
    chunk_frames: int = 10  # latent frames per chunk (LongSANA: 10)
    timesteps: tuple[float, ...] = LONGSANA_TIMESTEPS
    window: int | None = None  # None: global history; N: the last N chunks
    guidance_scale: float = 1.0  # > 1 runs CFG with a second history row for the negative prompt
    negative_prompt: str | None = None
    motion_score: int | None = None
    transition_chunks: int = 0  # > 0: a prompt switch blends the text embeddings over this many chunks
    fps: float = DEFAULT_FPS
    # The opening chunk (no history, no image: a stream's start or reset) decides what the scene holds and every
    # later chunk carries it on, so it may get more care: CFG at this scale against the negative prompt (≤ 1:
    # none, as for guidance_scale) on its steps below t = 1000, and its own denoising schedule (None: `timesteps`).
    anchor_guidance: float = 1.0
    anchor_timesteps: tuple[float, ...] | None = None
    # Context noise (Self Forcing, CausVid): each finished chunk enters the history noised to this level (0: clean).
    # A model's own chunks are never quite its training data; read as slightly noisy they are trusted less, so a
    # faint object is redrawn rather than copied fainter chunk after chunk (README: the demo model's stability).
    context_noise: float = 0.0

    def validate(self) -> None:
        if not isinstance(self.chunk_frames, int) or self.chunk_frames < 1:
            raise ValueError(f"chunk_frames must be a positive int, got {self.chunk_frames!r}")
        if not isinstance(self.transition_chunks, int) or self.transition_chunks < 0:
            raise ValueError(f"transition_chunks must be an int ≥ 0, got {self.transition_chunks!r}")
        if not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps!r}")
        if not self.guidance_scale >= 0:
            raise ValueError(f"guidance_scale must be ≥ 0, got {self.guidance_scale!r}")
        if not self.anchor_guidance >= 0:
            raise ValueError(f"anchor_guidance must be ≥ 0, got {self.anchor_guidance!r}")
        if not 0 <= self.context_noise < 1000:
            raise ValueError(f"context_noise must be in [0, 1000), got {self.context_noise!r}")


@dataclass
class _Edits:
    """Requests waiting for the next chunk boundary."""

    prompt: str | None = None
    transition_chunks: int | None = None
    image: Any = None
    restart: bool = False
    seed: int | None = None


@dataclass
class _Conditioning:
    """Text conditioning for the chunks. A switch with a transition blends from the embeddings last used to the
    target over `total` chunks (padding masks are united while both prompts contribute)."""

    emb: torch.Tensor
    mask: torch.Tensor
    start: tuple[torch.Tensor, torch.Tensor] | None = None
    target: tuple[torch.Tensor, torch.Tensor] | None = None
    total: int = 0
    done: int = 0

    def switch(self, target: "_Conditioning", chunks: int) -> None:
        if chunks == 0:
            self.emb, self.mask, self.start, self.target = target.emb, target.mask, None, None
        else:
            self.start, self.target, self.total, self.done = (self.emb, self.mask), (target.emb, target.mask), chunks, 0

    def peek(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The embeddings the next chunk will use."""
        if self.target is None:
            return self.emb, self.mask
        alpha = (self.done + 1) / self.total
        (e0, m0), (e1, m1) = self.start, self.target
        if alpha >= 1:
            return e1, m1
        return torch.lerp(e0.float(), e1.float(), alpha).to(e1.dtype), torch.maximum(m0, m1)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The embeddings for the next chunk; advances a transition by one chunk."""
        self.emb, self.mask = self.peek()
        if self.target is not None:
            self.done += 1
            if self.done == self.total:
                self.start = self.target = None
        return self.emb, self.mask


class Stream:
    """Iterate for frames (uint8 (H, W, 3) `Frame`s); edit with set_prompt / set_image / reset / pause / resume."""

    def __init__(self, pipe: Any, prompt: str, *, seed: int | None = None, image: Any = None,
                 height: int | None = None, width: int | None = None, options: StreamOptions | None = None):
        if pipe.family != "video":
            raise ValueError(f"streaming needs a video model; this is a {pipe.family} pipeline")
        self.pipe, self.options = pipe, options or StreamOptions()
        self.options.validate()
        for timesteps in (self.options.timesteps, self.options.anchor_timesteps):  # validated now, not mid-stream
            if timesteps is not None:
                make_sampler("longsana", timesteps=timesteps)
        self.height, self.width = pipe._size(height, width)
        model, vae = pipe.transformer, pipe.vae
        self._latent_shape = (model.config.in_channels, self.height // vae.spatial_factor,
                              self.width // vae.spatial_factor)
        self._lock = threading.Lock()
        self._edits = _Edits()
        self._paused = False
        self._next_index = 0
        self._pending: list[Frame] = []
        self._last_frame: Frame | None = None
        self._created = time.perf_counter()
        self.stats: dict[str, Any] = {"frames": 0, "chunks": 0, "recaches": 0, "fps": 0.0, "state_bytes": 0,
                                      "first_frame_ms": None, "last_chunk_ms": {}, "batch": 1}
        self._text = self._encode(prompt)
        self.prompt = prompt
        self._start(seed, image)

    # ----- editing (thread-safe; applied at the next chunk boundary) ------------------------------------------

    def set_prompt(self, text: str, *, transition_chunks: int | None = None) -> None:
        """Switch to `text` from the next chunk on; the previous chunk is re-cached under it."""
        if not isinstance(text, str):
            raise ValueError(f"prompt must be a string, got {type(text).__name__}")
        if transition_chunks is not None and (not isinstance(transition_chunks, int) or transition_chunks < 0):
            raise ValueError(f"transition_chunks must be an int ≥ 0, got {transition_chunks!r}")
        with self._lock:
            self._edits.prompt, self._edits.transition_chunks = text, transition_chunks

    def set_image(self, image: Any) -> None:
        """Restart the video from `image` (it becomes the next chunk's first frame)."""
        from ..pipeline.images import load_image

        img = load_image(image)  # validate now: a bad image is rejected before it changes anything
        with self._lock:
            self._edits.image, self._edits.restart = img, True

    def reset(self, seed: int | None = None) -> None:
        """Start a new video (empty history) from the next chunk, with `seed` (None: a fresh random seed)."""
        if seed is not None and not isinstance(seed, int):
            raise ValueError(f"seed must be an int or None, got {type(seed).__name__}")
        with self._lock:
            self._edits.restart, self._edits.seed, self._edits.image = True, seed, None

    def pause(self) -> None:
        """Stop generating; iteration returns the last frame again until resume(). The state is kept as is."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    @property
    def paused(self) -> bool:
        return self._paused

    # ----- iteration ------------------------------------------------------------------------------------------

    def __iter__(self) -> "Stream":
        return self

    def __next__(self) -> Frame:
        if self._paused and self._last_frame is not None:
            return self._last_frame  # the same frame shown again (same index and time)
        if not self._pending:
            self._pending = list(self.next_chunk())
        frame = self._pending.pop(0)
        self._last_frame = frame
        return frame

    @torch.inference_mode()
    def next_chunk(self) -> list[Frame]:
        """Generate, append and decode one chunk; returns its frames (the iterator uses this too)."""
        return next_chunks([self])[0]

    # ----- internals ------------------------------------------------------------------------------------------

    def _encode(self, prompt: str) -> "_Conditioning":
        o = self.options
        emb, mask = self.pipe.encode_prompt(prompt, negative_prompt=o.negative_prompt, motion_score=o.motion_score,
                                            guidance_scale=o.guidance_scale)
        return _Conditioning(emb, mask)

    def _start(self, seed: int | None, image: Any) -> None:
        """A new video: fresh history, decoder cache and noise; `image` (if any) is its first frame."""
        self.seed = seed if seed is not None else int(torch.seed() % 2**63)
        self._generator = torch.Generator().manual_seed(self.seed)
        rows = self._text.emb.shape[0]
        self._state = self.pipe.transformer.new_state(rows, window=self.options.window)
        self._decode_state = self.pipe.vae.new_decode_state()
        self._condition = None
        if image is not None:
            self._condition = self.pipe._condition_frames(image, self.height, self.width)
        self._last_latents = None

    def _apply_edits(self, timings: dict[str, float]) -> None:
        with self._lock:
            edits, self._edits = self._edits, _Edits()
        if edits.prompt is not None:
            chunks = self.options.transition_chunks if edits.transition_chunks is None else edits.transition_chunks
            self._text.switch(self._encode(edits.prompt), 0 if edits.restart else chunks)
            self.prompt = edits.prompt
        if edits.restart:
            self._start(edits.seed, edits.image)
        elif edits.prompt is not None and self._last_latents is not None:
            # The reference re-cache: the previous chunk re-enters the history under the new prompt.
            start = time.perf_counter()
            emb, mask = self._text.peek()
            model = self.pipe.transformer
            rows = emb.shape[0]
            model.append_state(self._state, self._last_latents.to(model.dtype).expand(rows, -1, -1, -1, -1),
                               emb, mask, replace_last=True, timestep=self.options.context_noise)
            timings["recache"] = 1e3 * (time.perf_counter() - start)
            self.stats["recaches"] += 1

    def _initial_noise(self) -> torch.Tensor:
        o = self.options
        x = torch.randn((1, self._latent_shape[0], o.chunk_frames, *self._latent_shape[1:]),
                        generator=self._generator)
        return x.to(self.pipe.transformer.device)

    def _history_latents(self, x: torch.Tensor) -> torch.Tensor:
        """x as it enters the history: noised to options.context_noise on the flow-matching path."""
        sigma = self.options.context_noise / 1000
        if not sigma:
            return x
        noise = torch.randn(x.shape, generator=self._generator).to(x.device)
        return (1 - sigma) * x + sigma * noise

    def _anchor_text(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The text rows of an opening chunk made with the anchor options ((negative, positive) with CFG, as
        guidance_scale > 1 asks for it); None when this chunk is not one (it has a history or an image, or the
        options are off)."""
        o = self.options
        anchored = o.anchor_guidance > 1 or o.anchor_timesteps is not None
        if not anchored or self._state.chunks or self._condition is not None:
            return None
        return self.pipe.encode_prompt(self.prompt, negative_prompt=o.negative_prompt, motion_score=o.motion_score,
                                       guidance_scale=o.anchor_guidance)

    def _batch_key(self, emb: torch.Tensor, anchor: tuple[torch.Tensor, torch.Tensor] | None) -> tuple | None:
        """Streams with equal keys run their chunk in one batch (opening anchor chunks with their own kind);
        None: this chunk runs alone (an image being held as its first frame needs per-frame timesteps of its
        own)."""
        if self._condition is not None:
            return None
        o = self.options
        key = (id(self.pipe), self._latent_shape, o.chunk_frames, tuple(o.timesteps), o.context_noise,
               tuple(emb.shape))
        if anchor is None:
            return key
        return (*key, "anchor", tuple(o.anchor_timesteps or o.timesteps), tuple(anchor[0].shape))

    def _sample_step(self, sampler: Any, i: int, v: torch.Tensor, x: torch.Tensor, scale: float) -> torch.Tensor:
        """One sampler step on this stream's latents from its (rows, ...) velocities, CFG at `scale` applied."""
        if v.shape[0] == 2:
            v = classifier_free_guidance(v[:1], v[1:], scale)
        return sampler.step(v, i, x, generator=self._generator)

    def _record(self, frames: int, seconds: float, timings: dict[str, float]) -> None:
        s = self.stats
        if s["first_frame_ms"] is None:
            s["first_frame_ms"] = 1e3 * (time.perf_counter() - self._created)
        s["frames"] += frames
        s["chunks"] += 1
        s["fps"] = frames / seconds if seconds > 0 else float("inf")
        s["state_bytes"] = self._state.nbytes
        s["last_chunk_ms"] = {k: round(v, 2) for k, v in timings.items()}


def warm_up(pipe: Any, prompt: str, *, height: int | None = None, width: int | None = None) -> float:
    """Stream a throwaway video through every kind of pass a stream makes (the opening chunk, a steady chunk, a
    prompt switch's re-cache) so that a compiled pipeline (`Pipeline.compile`) builds its graphs before anything
    is timed or shown. Returns the seconds it took."""
    started = time.perf_counter()
    stream = pipe.stream(prompt, seed=0, height=height, width=width)  # the model's own stream options
    stream.next_chunk()
    stream.next_chunk()
    stream.set_prompt(prompt)  # the same text still re-caches the last chunk
    stream.next_chunk()
    return time.perf_counter() - started


@dataclass
class _Chunk:
    """One stream's chunk in flight through next_chunks."""

    stream: Stream
    started: float
    timings: dict[str, float]
    emb: torch.Tensor
    mask: torch.Tensor
    anchor: tuple[torch.Tensor, torch.Tensor] | None  # an opening anchor chunk's text rows (Stream._anchor_text)
    x: torch.Tensor | None = None


@torch.inference_mode()
def next_chunks(streams: list[Stream]) -> list[list[Frame]]:
    """One chunk for each stream, with the transformer passes of streams that fit together batched: what a
    server with several viewers runs. Each stream keeps its own prompt, noise, history, decoder cache and
    edits, and gets the frames it would get alone (up to the rounding of a batched matmul)."""
    if len({id(s) for s in streams}) != len(streams):
        raise ValueError("a stream can only make one chunk at a time")
    chunks = []
    for stream in streams:
        started, timings = time.perf_counter(), {"recache": 0.0}
        stream._apply_edits(timings)
        chunks.append(_Chunk(stream, started, timings, *stream._text.next(), stream._anchor_text()))
    groups: dict[Any, list[_Chunk]] = {}
    for c in chunks:
        key = c.stream._batch_key(c.emb, c.anchor)
        groups.setdefault(key if key is not None else id(c), []).append(c)
    for group in groups.values():
        _generate_together(group)
    return [_decode(c) for c in chunks]


def _generate_together(group: list[_Chunk]) -> None:
    """Denoise and append the group's chunks in shared transformer passes."""
    t0 = time.perf_counter()
    first, anchor = group[0].stream, group[0].anchor is not None
    model, o = first.pipe.transformer, first.options
    sampler = make_sampler("longsana", timesteps=(o.anchor_timesteps or o.timesteps) if anchor else o.timesteps)
    rows = group[0].emb.shape[0]  # 2 with CFG: (negative, positive) per stream
    emb, mask = torch.cat([c.emb for c in group]), torch.cat([c.mask for c in group])
    state = first._state if len(group) == 1 else StateBatch([c.stream._state for c in group])
    text, history, scales = (emb, mask), state, [c.stream.options.guidance_scale for c in group]
    if anchor:  # opening chunks: their own rows (and schedule, above); their histories are empty anyway
        text = torch.cat([c.anchor[0] for c in group]), torch.cat([c.anchor[1] for c in group])
        history, scales = None, [c.stream.options.anchor_guidance for c in group]
    denoise_rows = len(text[0]) // len(group)
    x = torch.cat([c.stream._initial_noise() for c in group])
    condition, cond_mask = first._condition, None
    if condition is not None:  # image-to-video (always a group of one): the first frame is the image
        cond_mask = torch.zeros(1, o.chunk_frames, device=x.device)
        cond_mask[:, 0] = 1
        x = hold_conditioning_frames(x, condition, cond_mask)
    for i in range(sampler.num_steps):
        t = sampler.timesteps[i].to(x.device)
        step_text, step_rows = text, denoise_rows
        if anchor and denoise_rows == 2 and t >= 1000:
            # An anchor chunk's pure-noise step runs unguided, on the prompt's row alone: guided there, different
            # seeds open on almost the same layout (the demo's first frames: 3–9 grey levels apart, not 18–32).
            step_text, step_rows = (text[0][1::2], text[1][1::2]), 1
        timestep = (t.expand(len(step_text[0])) if cond_mask is None
                    else frame_timesteps(t, cond_mask).expand(step_rows, -1))
        v = model(x.to(model.dtype).repeat_interleave(step_rows, dim=0), timestep, *step_text, state=history)
        v = v.unflatten(0, (len(group), step_rows))
        x = torch.cat([
            c.stream._sample_step(sampler, i, v[j], x[j:j + 1], scales[j]) for j, c in enumerate(group)])
        if cond_mask is not None:
            x = hold_conditioning_frames(x, condition, cond_mask)
    first._condition = None
    t1 = time.perf_counter()
    context = torch.cat([c.stream._history_latents(x[j:j + 1]) for j, c in enumerate(group)])
    model.append_state(state, context.to(model.dtype).repeat_interleave(rows, dim=0), emb, mask,
                       timestep=o.context_noise)
    t2 = time.perf_counter()
    for j, c in enumerate(group):
        c.x = x[j:j + 1]
        c.stream._last_latents = context[j:j + 1]
        c.timings.update(generate=1e3 * (t1 - t0), append=1e3 * (t2 - t1))
        c.stream.stats["batch"] = len(group)


def _decode(c: _Chunk) -> list[Frame]:
    stream, vae = c.stream, c.stream.pipe.vae
    t0 = time.perf_counter()
    pixels = vae.decode_chunk(vae.denormalize_latents(c.x), stream._decode_state)
    frames = to_uint8(to_unit(pixels[0]).permute(1, 2, 3, 0))
    t1 = time.perf_counter()
    out = [Frame.at(f, stream._next_index + i, stream.options.fps) for i, f in enumerate(frames)]
    stream._next_index += len(out)
    c.timings["decode"] = 1e3 * (t1 - t0)
    stream._record(len(out), t1 - c.started, c.timings)
    return out
