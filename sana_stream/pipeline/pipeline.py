"""Text-to-image, text-to-video and text+image-to-video generation with one denoising loop.

    pipe = ss.load_pipeline("path/to/diffusers/pipeline")
    img = pipe.generate_image("a cat", seed=0)            # uint8 (H, W, 3)
    vid = pipe.generate_video("a cat", num_frames=33)     # uint8 (F, H, W, 3)

None for any option means the model family's default (DESIGN §4, `family.FAMILIES`).
"""

from __future__ import annotations

import math
import shutil
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..model import SanaTransformer
from ..sampling import classifier_free_guidance, frame_timesteps, hold_conditioning_frames, make_sampler
from ..text import TextEncoder
from .family import FAMILIES, FamilyDefaults
from .images import to_model_image

MAX_STEPS = 1000

if TYPE_CHECKING:
    from ..engine import Stream


CXX_COMPILERS = ("g++", "c++", "clang++")
NO_COMPILER = f"torch.compile needs a C++ compiler ({', '.join(CXX_COMPILERS)} on PATH)"


def can_compile() -> bool:
    """Whether Pipeline.compile can run here: torch.compile's CPU backend builds its kernels with a C++ compiler."""
    return any(shutil.which(c) for c in CXX_COMPILERS)


class Pipeline:
    def __init__(
        self,
        transformer: SanaTransformer,
        vae: Any,
        text_encoder: TextEncoder,
        family: str,
        sampler: str | None = None,
        shift: float | None = None,
        *,
        defaults: dict[str, Any] | None = None,
        stream_defaults: dict[str, Any] | None = None,
        causal: bool = False,
    ):
        """defaults: FamilyDefaults fields this model overrides; stream_defaults: StreamOptions defaults;
        causal: the model was trained chunk-causally, so videos come from the streaming engine."""
        if family not in FAMILIES:
            raise ValueError(f"unknown pipeline family {family!r}; expected one of {', '.join(FAMILIES)}")
        if (family == "video") != transformer.config.is_video:
            raise ValueError(f"a {family} pipeline needs a {'video' if family == 'video' else 'image'} transformer")
        self.transformer, self.vae, self.text_encoder, self.family = transformer, vae, text_encoder, family
        base = FAMILIES[family]
        merged = {**base.__dict__, "sampler": sampler or base.sampler, "shift": base.shift if shift is None else shift}
        unknown = sorted(set(defaults or {}) - set(merged))
        if unknown:
            raise ValueError(f"unknown pipeline default(s): {', '.join(unknown)}")
        self.defaults = FamilyDefaults(**{**merged, **(defaults or {})})
        self.stream_defaults = dict(stream_defaults or {})
        self.causal = causal
        self.progress_bar = False  # the CLI turns it on

    # ----- geometry -------------------------------------------------------------------------------------------

    @property
    def spatial_factor(self) -> int:
        """Pixels per latent cell times the transformer's patch: sizes must be multiples of it."""
        vae_factor = self.vae.spatial_factor if self.family == "video" else self.vae.spatial_compression
        return vae_factor * self.transformer.config.patch_size[1]

    def _size(self, height: int | None, width: int | None) -> tuple[int, int]:
        d = self.defaults
        vae_factor = self.vae.spatial_factor if self.family == "video" else self.vae.spatial_compression
        native = self.transformer.config.sample_size * vae_factor
        height = height if height is not None else (d.height or native)
        width = width if width is not None else (d.width or native)
        for name, value in (("height", height), ("width", width)):
            if not isinstance(value, int) or value < 1 or value % self.spatial_factor:
                raise ValueError(f"{name} must be a positive multiple of {self.spatial_factor}, got {value!r}")
        return height, width

    # ----- public API -----------------------------------------------------------------------------------------

    @torch.inference_mode()
    def generate_image(
        self,
        prompt: str,
        *,
        negative_prompt: str | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        seed: int | None = None,
        latents: torch.Tensor | None = None,
    ) -> np.ndarray:
        """One image as uint8 (H, W, 3). A video model makes a one-frame video."""
        if self.family == "video":
            return self.generate_video(prompt, num_frames=1, negative_prompt=negative_prompt, height=height,
                                       width=width, num_inference_steps=num_inference_steps,
                                       guidance_scale=guidance_scale, seed=seed, latents=latents)[0]
        pixels = self.generate_pixels(prompt, negative_prompt=negative_prompt, height=height, width=width,
                                      num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                                      seed=seed, latents=latents)
        return to_uint8(pixels[0])

    @torch.inference_mode()
    def generate_video(
        self,
        prompt: str,
        *,
        num_frames: int | None = None,
        image: Any = None,
        negative_prompt: str | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        seed: int | None = None,
        latents: torch.Tensor | None = None,
        motion_score: int | None = None,
    ) -> np.ndarray:
        """A video as uint8 (F, H, W, 3); `image` (uint8 array, PIL image or path) becomes its first frame."""
        if self.family != "video":
            raise ValueError(f"generate_video needs a video model; this is a {self.family} pipeline")
        if self.causal:
            return self._video_from_stream(prompt, num_frames=num_frames, image=image, height=height, width=width,
                                           seed=seed, latents=latents, negative_prompt=negative_prompt,
                                           motion_score=motion_score, num_inference_steps=num_inference_steps,
                                           guidance_scale=guidance_scale)
        pixels = self.generate_pixels(prompt, num_frames=num_frames, image=image, negative_prompt=negative_prompt,
                                      height=height, width=width, num_inference_steps=num_inference_steps,
                                      guidance_scale=guidance_scale, seed=seed, latents=latents,
                                      motion_score=motion_score)
        return to_uint8(pixels[0])

    @torch.inference_mode()
    def generate_pixels(
        self,
        prompt: str,
        *,
        num_frames: int | None = None,
        image: Any = None,
        negative_prompt: str | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        seed: int | None = None,
        latents: torch.Tensor | None = None,
        motion_score: int | None = None,
    ) -> torch.Tensor:
        """The float path behind generate_*: pixels in [0, 1], (1, H, W, 3) or (1, F, H, W, 3)."""
        d = self.defaults
        steps = d.num_inference_steps if num_inference_steps is None else num_inference_steps
        if not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
            raise ValueError(f"num_inference_steps must be an int in [1, {MAX_STEPS}], got {steps!r}")
        guidance = d.guidance_scale if guidance_scale is None else guidance_scale
        if not isinstance(guidance, (int, float)) or not math.isfinite(guidance) or guidance < 0:
            raise ValueError(f"guidance_scale must be a finite number ≥ 0, got {guidance!r}")
        height, width = self._size(height, width)
        shape = self._latent_shape(height, width, num_frames)
        generator = torch.Generator().manual_seed(seed if seed is not None else torch.seed() % 2**63)
        if latents is None:
            latents = torch.randn(shape, generator=generator)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        text = self.encode_prompt(prompt, negative_prompt=negative_prompt, motion_score=motion_score,
                                  guidance_scale=guidance)
        condition = self._condition_frames(image, height, width) if image is not None else None
        latents = self._denoise(latents.float().to(self.transformer.device), text, steps, guidance, generator,
                                condition)
        return self.decode(latents)

    def stream(self, prompt: str, *, seed: int | None = None, image: Any = None, height: int | None = None,
               width: int | None = None, **options: Any) -> "Stream":
        """An endless iterator of uint8 (H, W, 3) frames; the same seed gives the same frames.

        options: StreamOptions fields (chunk_frames, timesteps, window, guidance_scale, negative_prompt,
        motion_score, transition_chunks, fps, anchor_guidance, anchor_timesteps, context_noise); the model's own
        stream defaults fill the rest."""
        from ..engine import Stream, StreamOptions

        unknown = sorted(set(options) - set(StreamOptions.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown stream option(s): {', '.join(unknown)}")
        merged = {**self.stream_defaults, **options}
        if "timesteps" in merged:
            merged["timesteps"] = tuple(merged["timesteps"])
        return Stream(self, prompt, seed=seed, image=image, height=height, width=width,
                      options=StreamOptions(**merged))

    def _video_from_stream(self, prompt: str, *, num_frames: int | None, latents: torch.Tensor | None,
                           num_inference_steps: int | None, guidance_scale: float | None, **kwargs: Any) -> np.ndarray:
        """A chunk-causally trained model's video: the first num_frames frames of its stream."""
        if latents is not None or num_inference_steps is not None:
            raise ValueError("this model streams with its fixed few-step schedule: latents= and "
                             "num_inference_steps= do not apply (use stream options instead)")
        frames = self.defaults.num_frames if num_frames is None else num_frames
        if not isinstance(frames, int) or frames < 1:
            raise ValueError(f"num_frames must be a positive int, got {frames!r}")
        options = {k: kwargs.pop(k) for k in ("negative_prompt", "motion_score") if kwargs[k] is not None}
        if guidance_scale is not None:
            options["guidance_scale"] = guidance_scale
        stream = self.stream(prompt, **kwargs, **options)
        return np.stack([next(stream) for _ in range(frames)])

    # ----- the loop -------------------------------------------------------------------------------------------

    def _latent_shape(self, height: int, width: int, num_frames: int | None) -> tuple[int, ...]:
        channels = self.transformer.config.in_channels
        if self.family != "video":
            if num_frames not in (None, 1):
                raise ValueError("image models make one frame")
            f = self.vae.spatial_compression
            return (1, channels, height // f, width // f)
        frames = self.defaults.num_frames if num_frames is None else num_frames
        tf, sf = self.vae.temporal_factor, self.vae.spatial_factor
        if not isinstance(frames, int) or frames < 1 or (frames - 1) % tf:
            raise ValueError(f"num_frames must be 1 + {tf}·k (e.g. 1, {1 + tf}, 81), got {frames!r}")
        return (1, channels, (frames - 1) // tf + 1, height // sf, width // sf)

    def encode_prompt(self, prompt: str, *, negative_prompt: str | None = None, motion_score: int | None = None,
                      guidance_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Text conditioning (embeddings in the transformer's dtype, mask) with this model's instruction and
        length; two rows (negative, positive) when guidance_scale asks for CFG. None: the family's default."""
        d = self.defaults
        score = d.motion_score if motion_score is None else motion_score
        negative = d.negative_prompt if negative_prompt is None else negative_prompt
        emb, mask, neg, neg_mask = self.text_encoder.encode_with_negative(
            prompt, negative, instruction=d.instruction, motion_score=score, max_sequence_length=d.text_length
        )
        dtype = self.transformer.dtype
        if self._uses_cfg(guidance_scale):
            return torch.cat([neg, emb]).to(dtype), torch.cat([neg_mask, mask])
        return emb.to(dtype), mask

    def _uses_cfg(self, guidance: float) -> bool:
        return self.family != "sprint" and guidance > 1.0

    def _denoise(self, x, text, steps, guidance, generator, condition):
        d, model = self.defaults, self.transformer
        options = {"num_steps": steps} if d.sampler == "scm" else {"num_steps": steps, "shift": d.shift}
        sampler = make_sampler(d.sampler, **options)
        emb, mask = text
        cfg = self._uses_cfg(guidance)
        extra = {}
        if self.family == "sprint":
            extra["guidance"] = torch.full((x.shape[0],), guidance * model.config.guidance_embeds_scale)
        cond_mask = None
        if condition is not None:
            cond_mask = torch.zeros(x.shape[0], x.shape[2], device=x.device)
            cond_mask[:, 0] = 1
            x = hold_conditioning_frames(x, condition, cond_mask)
        scale = model.config.timestep_scale if self.family == "image" else 1.0
        for i in tqdm(range(sampler.num_steps), disable=not self.progress_bar, desc="denoising", leave=False):
            t = sampler.timesteps[i].to(x.device) * scale
            inp = sampler.model_input(x, i).to(model.dtype)
            timestep = t.expand(x.shape[0]) if cond_mask is None else frame_timesteps(t, cond_mask)
            if cfg:
                v = model(torch.cat([inp, inp]), torch.cat([timestep, timestep]), emb, mask, **extra)
                v = classifier_free_guidance(*v.chunk(2), guidance)
            else:
                v = model(inp, timestep, emb, mask, **extra)
            x = sampler.step(v, i, x, generator=generator)
            if cond_mask is not None:
                x = hold_conditioning_frames(x, condition, cond_mask)
        return x

    # ----- pixels <-> latents ---------------------------------------------------------------------------------

    def _condition_frames(self, image: Any, height: int, width: int) -> torch.Tensor:
        pixels = to_model_image(image, height, width).to(self.vae.device, self.vae.dtype)  # (1, 3, H, W) in [-1, 1]
        return self.vae.normalize_latents(self.vae.encode(pixels[:, :, None])).float()

    def compile(self) -> "Pipeline":
        """torch.compile the hot path in place: every transformer block and, for a per-frame (DC-AE) VAE, the
        decoder (a Wan-VAE decoder keeps a causal cache in Python and stays eager). Worth it for small models, whose
        passes are mostly elementwise work that compiling fuses: the world model steps 1.5-1.7x faster on a 2-core CPU
        (benchmarks/world_model.py --compile). Costs a C++ compiler and a one-off compile of tens of seconds on
        first use. Returns self."""
        from ..vae.frames import PerFrameVAE

        if not can_compile():
            raise RuntimeError(NO_COMPILER)
        for block in self.transformer.transformer_blocks:
            block.compile(dynamic=False)
        if isinstance(self.vae, PerFrameVAE):
            self.vae.autoencoder.decoder.compile(dynamic=False)
        return self

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> pixels in [0, 1], channel-last: (B, H, W, 3) for images, (B, F, H, W, 3) for video."""
        if self.family == "video":
            pixels = self.vae.decode(self.vae.denormalize_latents(latents))
            return to_unit(pixels).permute(0, 2, 3, 4, 1)
        pixels = self.vae.decode(latents.to(self.vae.dtype) / self.vae.scaling_factor)
        return to_unit(pixels).permute(0, 2, 3, 1)


def to_unit(pixels: torch.Tensor) -> torch.Tensor:
    """A VAE's output in [-1, 1] -> float32 in [0, 1]."""
    return (pixels.float() / 2 + 0.5).clamp(0, 1)


def to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """[0, 1] floats -> uint8 with rounding (as diffusers' PIL conversion)."""
    return (pixels * 255).round().to(torch.uint8).cpu().numpy()
