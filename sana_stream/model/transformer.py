"""The Sana / SANA-Video diffusion transformer: one class for the image and the video families.

Tokens are kept as (B, T, S, D) — T latent frames of S = H·W patches — so per-frame timesteps modulate their
own frame by broadcasting, and an image is simply T = 1.

Attention modes (all in one code path, chosen by which chunks exist and what history they see):
- bidirectional: one chunk holding every frame;
- chunk-causal (`chunk_frames=K`): bidirectional inside a chunk, causal across chunks; the first chunk takes
  the remainder T mod K;
- streaming (`state=`): the input is one chunk that also sees the history held in a StreamState (or, for
  several streams in one pass, a StateBatch of theirs).

World models (config.action_dim > 0) also take `action=` (B, T, action_dim), one vector per latent frame, added to
the time embedding (model/actions.py); `action=None` there means the zero vector ("no action"). With
config.action_plucker_fov, each frame's camera motion is also drawn per token (model/plucker.py) and added to every
block after self-attention. With config.copy_gate, `previous=` (each frame's previous clean latent) lets the model
keep a latent pixel as it was: the velocity mixes toward the one that lands on `previous`, by a learnt gate.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..sampling.schedule import NUM_TRAIN_TIMESTEPS
from ..weights import write_component_folder
from .actions import ActionEmbedder
from .attention import AttentionSums, CrossAttention, LinearSelfAttention
from .config import TransformerConfig
from .embeddings import CaptionProjection, RMSNorm, Rope3D, TimeConditioning, sincos_2d
from .ffn import MixFFN
from .plucker import PluckerEmbedder
from .state import BlockRecord, StateBatch, StreamState


def chunk_bounds(frames: int, chunk_frames: int | None) -> list[tuple[int, int]]:
    """Frame ranges of the chunks; the first chunk takes the remainder (21 frames, K=10 -> [0,11), [11,21))."""
    if chunk_frames is None or chunk_frames >= frames:
        return [(0, frames)]
    first = chunk_frames + frames % chunk_frames if frames % chunk_frames else chunk_frames
    bounds = [(0, first)]
    while bounds[-1][1] < frames:
        bounds.append((bounds[-1][1], bounds[-1][1] + chunk_frames))
    return bounds


class SanaBlock(nn.Module):
    """x += gate·SelfAttn(mod(LN x)); x += CrossAttn(x, text); x += gate·MixFFN(mod(LN x))."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        d = cfg.inner_dim
        self.norm_eps = cfg.norm_eps
        self.scale_shift_table = nn.Parameter(torch.randn(6, d) / d**0.5)
        self.attn1 = LinearSelfAttention(
            d, cfg.num_attention_heads, cfg.attention_head_dim, cfg.qk_norm is not None, cfg.attention_bias,
            cfg.linear_attention_eps,
        )
        self.attn2 = CrossAttention(d, cfg.num_cross_attention_heads, cfg.cross_attention_head_dim,
                                    cfg.qk_norm is not None)
        self.ff = MixFFN(d, cfg.ffn_hidden, temporal=cfg.is_video)
        self.plucker_proj = nn.Linear(d, d, bias=False) if cfg.action_plucker_fov else None
        if self.plucker_proj is not None:  # zero: the branch starts out adding nothing
            nn.init.zeros_(self.plucker_proj.weight)

    def forward(
        self,
        x: torch.Tensor,
        t0: torch.Tensor,
        text: torch.Tensor,
        text_bias: torch.Tensor | None,
        grid: tuple[int, int],
        frame_chunks: list[tuple[int, int]],
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        history: AttentionSums | None,
        previous_features: torch.Tensor | None,
        evicted: AttentionSums | None = None,
        record_chunk: int = -1,
        camera: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, BlockRecord]:
        """x: (B, T, S, D); t0: (B, T or 1, 6·D); camera: (B, T, S, D) Plücker features or None. Returns the new x
        and what its chunks up to `record_chunk` add to a stream's state (evicted: see relu_linear_attention)."""
        b, t, s, d = x.shape
        mod = (self.scale_shift_table + t0.unflatten(-1, (6, d))).unsqueeze(2)  # (B, T, 1, 6, D)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod.unbind(dim=3)

        h = F.layer_norm(x, (d,), eps=self.norm_eps) * (1 + scale_msa) + shift_msa
        token_chunks = [(start * s, end * s) for start, end in frame_chunks]
        attn, sums = self.attn1(h.view(b, t * s, d), token_chunks, rope, history, evicted, record_chunk)
        x = x + gate_msa * attn.view(b, t, s, d)
        if camera is not None:
            x = x + self.plucker_proj(camera)

        x = x + self.attn2(x.view(b, t * s, d), text, text_bias).view(b, t, s, d)

        h = F.layer_norm(x, (d,), eps=self.norm_eps) * (1 + scale_mlp) + shift_mlp
        chunk_ends = [end - 1 for _, end in frame_chunks]
        ff, last = self.ff(h.view(b, t, *grid, d), chunk_ends, previous_features, chunk_ends[record_chunk])
        x = x + gate_mlp * ff
        return x, BlockRecord(sums, last if self.ff.conv_temp is not None else None)


class SanaTransformer(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = cfg = config
        d = cfg.inner_dim
        pt, ph, pw = cfg.patch_size
        # A Conv3d with kernel = stride = patch, run as one matmul on unfolded patches.
        self.patch_embedding = nn.Conv3d(cfg.in_channels, d, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.time_embed = TimeConditioning(d, guidance=cfg.guidance_embeds)
        self.action_embedder = ActionEmbedder(cfg.action_dim, d) if cfg.action_dim else None
        self.plucker_embedder = (PluckerEmbedder((ph, pw), d, cfg.action_plucker_fov) if cfg.action_plucker_fov
                                 else None)
        self.caption_projection = CaptionProjection(cfg.caption_channels, d)
        self.caption_norm = RMSNorm(d, eps=1e-5)
        self.transformer_blocks = nn.ModuleList([SanaBlock(cfg) for _ in range(cfg.num_layers)])
        self.scale_shift_table = nn.Parameter(torch.randn(2, d) / d**0.5)
        self.proj_out = nn.Linear(d, pt * ph * pw * cfg.out_channels)
        self.copy_gate = nn.Linear(d, ph * pw) if cfg.copy_gate else None
        if self.copy_gate is not None:  # zero: the gate starts closed, the model as it was
            nn.init.zeros_(self.copy_gate.weight)
            nn.init.zeros_(self.copy_gate.bias)
        self.rope = Rope3D(cfg.attention_head_dim) if cfg.is_video else None

    # ----- properties ------------------------------------------------------------------------------------------

    @property
    def dtype(self) -> torch.dtype:
        return self.proj_out.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.proj_out.weight.device

    # ----- inputs ---------------------------------------------------------------------------------------------

    def _check_inputs(self, x, timestep, text, text_mask, guidance, action):
        cfg = self.config
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"x must be a tensor, got {type(x).__name__}")
        if x.ndim not in (4, 5):
            raise ValueError(f"x must be (B, C, T, H, W) or (B, C, H, W), got shape {tuple(x.shape)}")
        b, c = x.shape[:2]
        frames, height, width = (x.shape[2:] if x.ndim == 5 else (1, *x.shape[2:]))
        pt, ph, pw = cfg.patch_size
        if c != cfg.in_channels:
            raise ValueError(f"x has {c} channels, the model takes {cfg.in_channels}")
        if height % ph or width % pw or frames % pt:
            raise ValueError(f"x frames/height/width {frames}/{height}/{width} not divisible by patch {cfg.patch_size}")
        if not cfg.is_video and frames != 1:
            raise ValueError(f"image models take one frame, got {frames}")
        if not torch.isfinite(x).all():
            raise ValueError("x contains NaN or inf")
        timestep = torch.as_tensor(timestep, device=x.device)
        if timestep.ndim == 0:
            timestep = timestep.expand(b)
        if timestep.shape not in ((b,), (b, frames)):
            raise ValueError(f"timestep must be (B,)=({b},) or (B, T)=({b}, {frames}), got {tuple(timestep.shape)}")
        if timestep.ndim == 2 and pt != 1:
            raise ValueError("per-frame timesteps need a temporal patch size of 1")
        if not torch.isfinite(timestep.float()).all():
            raise ValueError("timestep contains NaN or inf")
        if not isinstance(text, torch.Tensor) or text.ndim != 3 or text.shape[0] != b or (
            text.shape[2] != cfg.caption_channels
        ):
            shape = tuple(text.shape) if isinstance(text, torch.Tensor) else type(text).__name__
            raise ValueError(f"encoder_hidden_states must be (B={b}, L, {cfg.caption_channels}), got {shape}")
        if not torch.isfinite(text).all():
            raise ValueError("encoder_hidden_states contains NaN or inf")
        if text_mask is not None and tuple(text_mask.shape) != tuple(text.shape[:2]):
            raise ValueError(f"encoder_attention_mask must be (B, L)={tuple(text.shape[:2])}, got {tuple(text_mask.shape)}")
        if cfg.guidance_embeds:
            if guidance is None:
                raise ValueError("this model embeds the guidance scale: pass guidance=(B,)")
            guidance = torch.as_tensor(guidance, device=x.device)
            guidance = guidance.expand(b) if guidance.ndim == 0 else guidance
            if guidance.shape != (b,) or not torch.isfinite(guidance.float()).all():
                raise ValueError(f"guidance must be finite with shape (B,)=({b},)")
        elif guidance is not None:
            raise ValueError("this model has no guidance embedding (guidance_embeds is false): drop guidance=")
        if cfg.action_dim:
            if action is None:  # no action given: the zero vector, which a world model reads as "none"
                action = torch.zeros(b, frames, cfg.action_dim, device=x.device)
            if not isinstance(action, torch.Tensor) or not action.is_floating_point():
                raise ValueError(f"action must be a float tensor (B, T, action_dim), got {type(action).__name__}"
                                 + (f" of {action.dtype}" if isinstance(action, torch.Tensor) else ""))
            if tuple(action.shape) != (b, frames, cfg.action_dim):
                raise ValueError(f"action must be (B, T, action_dim)=({b}, {frames}, {cfg.action_dim}), one vector "
                                 f"per latent frame, got {tuple(action.shape)}")
            if not torch.isfinite(action).all():
                raise ValueError("action contains NaN or inf")
        elif action is not None:
            raise ValueError("this model takes no actions (action_dim is 0): drop action=")
        return timestep, guidance, action

    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """(B, C, T, H, W) latents -> (B, T', H'·W', D) tokens."""
        cfg = self.config
        pt, ph, pw = cfg.patch_size
        b, c, t, h, w = x.shape
        grid = (t // pt, h // ph, w // pw)
        patches = x.reshape(b, c, grid[0], pt, grid[1], ph, grid[2], pw).permute(0, 2, 4, 6, 1, 3, 5, 7)
        weight = self.patch_embedding.weight.flatten(1)
        tokens = F.linear(patches.reshape(b, grid[0], grid[1] * grid[2], -1).to(weight.dtype), weight,
                          self.patch_embedding.bias)
        if cfg.interpolation_scale is not None:
            base = cfg.sample_size // ph
            pe = sincos_2d(cfg.inner_dim, grid[1], grid[2], base, cfg.interpolation_scale).to(x.device)
            tokens = (tokens + pe).to(tokens.dtype)
        return tokens, grid

    def _condition(self, timestep, guidance, text, text_mask, batch, action):
        t_flat = timestep.reshape(-1)
        g_flat = None if guidance is None else guidance.repeat_interleave(t_flat.numel() // batch)
        t0, t_emb = self.time_embed(t_flat, g_flat)
        t0, t_emb = t0.view(batch, -1, t0.shape[-1]), t_emb.view(batch, -1, t_emb.shape[-1])
        if self.action_embedder is not None:
            # The action joins each frame's time embedding, so adaLN's t0 is recomputed from the sum; the
            # final layer reads t_emb and sees it too.
            t_emb = t_emb + self.action_embedder(action)
            t0 = self.time_embed.linear(F.silu(t_emb))
        text = self.caption_norm(self.caption_projection(text.to(self.dtype)))
        bias = None
        if text_mask is not None:
            bias = ((1 - text_mask.to(self.dtype)) * -10000.0)[:, None, None, :]
        return t0, t_emb, text, bias

    # ----- forward --------------------------------------------------------------------------------------------

    def forward(
        self,
        x: torch.Tensor,
        timestep: torch.Tensor | float,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None = None,
        *,
        chunk_frames: int | None = None,
        guidance: torch.Tensor | None = None,
        state: StreamState | StateBatch | None = None,
        action: torch.Tensor | None = None,
        append: torch.Tensor | None = None,
        append_action: torch.Tensor | None = None,
        previous: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Velocity prediction with x's shape. timestep: (B,) or per latent frame (B, T), diffusers scale.
        action: world models only, (B, T, action_dim) per latent frame.
        previous: models with config.copy_gate only, shaped like x: each frame's previous clean latent (in a
        stream, the newest appended frame). None: the gate is not applied, the network's own velocity.

        append (with state=): a finished clean chunk (B, C, T', H, W) added to the state in this same pass, ahead
        of x; the result and the state are those of append_state(state, append) then forward(x, state=state), for
        one pass over T' + T frames instead of two (append_action: its actions, world models only)."""
        out, _ = self._run(x, timestep, encoder_hidden_states, encoder_attention_mask, chunk_frames, guidance,
                           state, need_output=True, action=action, append=append, append_action=append_action,
                           copy_source=previous)
        return out

    def new_state(self, batch_size: int, window: int | None = None) -> StreamState:
        """An empty streaming state; window=N keeps only the last N appended chunks."""
        if not self.config.is_video:
            raise ValueError("streaming state needs a video model (image models have no time axis)")
        cfg = self.config
        return StreamState(cfg.num_layers, batch_size, cfg.num_attention_heads, cfg.attention_head_dim, window,
                           self.device)

    @torch.no_grad()
    def append_state(
        self,
        state: StreamState | StateBatch,
        x_clean: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None = None,
        *,
        guidance: torch.Tensor | None = None,
        replace_last: bool = False,
        action: torch.Tensor | None = None,
        timestep: float = 0.0,
    ) -> None:
        """The pass that adds a finished chunk to the history held in `state`, at t = 0 (clean) by default.

        replace_last=True re-runs the newest chunk instead (same frames, e.g. under a new prompt after a prompt
        switch), against the history it saw, and puts the result in its place. action: world models only, the
        actions the chunk's frames were made with, (B, T, action_dim). timestep: the noise level x_clean was
        noised to by the caller (context noise, StreamOptions.context_noise).
        """
        t = torch.full((x_clean.shape[0],), float(timestep), device=x_clean.device)
        _, records = self._run(x_clean, t, encoder_hidden_states, encoder_attention_mask, None, guidance, state,
                               need_output=False, replace_last=replace_last, action=action)
        frames = x_clean.shape[2] // self.config.patch_size[0]
        grid = (x_clean.shape[-2] // self.config.patch_size[1], x_clean.shape[-1] // self.config.patch_size[2])
        state.append(records, frames, grid, replace_newest=replace_last)

    def _run(self, x, timestep, text, text_mask, chunk_frames, guidance, state, need_output, replace_last=False,
             action=None, append=None, append_action=None, copy_source=None):
        timestep, guidance, action = self._check_inputs(x, timestep, text, text_mask, guidance, action)
        self._check_previous(x, copy_source)
        image_input = x.ndim == 4
        if image_input:
            x = x.unsqueeze(2)
            copy_source = None if copy_source is None else copy_source.unsqueeze(2)
        x_in, t_in = x, timestep  # the frames the output is for (the append, if any, joins x below)
        b = x.shape[0]
        if append is not None:
            x, timestep, action = self._with_append(x, timestep, action, append, append_action, text, text_mask,
                                                    guidance, state, chunk_frames)
        tokens, (t, h, w) = self._embed(x)

        if chunk_frames is not None and (not isinstance(chunk_frames, int) or chunk_frames < 1):
            raise ValueError(f"chunk_frames must be a positive int or None, got {chunk_frames!r}")
        if state is not None:
            if not isinstance(state, (StreamState, StateBatch)) or state.num_layers != self.config.num_layers:
                raise ValueError("state was not made by this model's new_state()")
            if chunk_frames is not None:
                raise ValueError("pass either state= (one chunk after the history) or chunk_frames=, not both")
            state.check_fits(b, (h, w))
        appended = 0 if append is None else append.shape[2]  # frames: _with_append requires a temporal patch of 1
        frame_chunks = chunk_bounds(t, chunk_frames) if not appended else [(0, appended), (appended, t)]
        frame_start = 0 if state is None else state.frame_start(replace_last)
        rope = self.rope(frame_start, t, h, w, x.device) if self.rope is not None else None

        t0, t_emb, text, text_bias = self._condition(timestep, guidance, text, text_mask, b, action)
        camera = self.plucker_embedder(action, (h, w)) if self.plucker_embedder is not None else None
        records = []
        for i, block in enumerate(self.transformer_blocks):
            history, previous = state.history(i, replace_last) if state is not None else (None, None)
            evicted = state.evicted(i) if appended else None
            tokens, record = block(tokens, t0, text, text_bias, (h, w), frame_chunks, rope, history, previous,
                                   evicted, record_chunk=0 if appended else -1, camera=camera)
            records.append(record)
        if appended:
            state.append(records, appended, (h, w))
            tokens, t_emb, t = tokens[:, appended:], t_emb[:, appended:], t - appended
        if not need_output:
            return None, records

        shift, scale = (self.scale_shift_table + t_emb.unsqueeze(2)).unsqueeze(2).unbind(dim=3)
        final = F.layer_norm(tokens, (tokens.shape[-1],), eps=1e-6) * (1 + scale) + shift
        out = self._unpatchify(self.proj_out(final), t, h, w)
        if copy_source is not None:
            out = self._copy_mix(out, self._unpatchify(self.copy_gate(final), t, h, w), x_in, t_in, copy_source)
        return (out[:, :, 0] if image_input else out), records

    def _unpatchify(self, out: torch.Tensor, t: int, h: int, w: int) -> torch.Tensor:
        """(B, T, H'·W', pt·ph·pw·C) per-token outputs -> (B, C, T·pt, H'·ph, W'·pw)."""
        pt, ph, pw = self.config.patch_size
        b = out.shape[0]
        out = out.view(b, t, h, w, pt, ph, pw, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
        return out.reshape(b, -1, t * pt, h * ph, w * pw)

    @staticmethod
    def _copy_mix(v: torch.Tensor, gate: torch.Tensor, x: torch.Tensor, timestep: torch.Tensor,
                  previous: torch.Tensor) -> torch.Tensor:
        """(1 - g) v + g (x - previous) / sigma, g in [0, 1]: with x = (1 - sigma) x0 + sigma noise, the second
        velocity is the one whose clean estimate x - sigma v is `previous`. A convex mix, so the gate can only pull
        toward the copy, never past it (a gate outside [0, 1] amplifies every change, step after step)."""
        b, _, frames = x.shape[:3]
        # Clean frames (t = 0) are never supervised; the floor keeps their copy velocity finite.
        sigma = timestep.float().reshape(b, -1).expand(b, frames) / NUM_TRAIN_TIMESTEPS
        sigma = sigma.clamp_min(0.02).view(b, 1, frames, 1, 1)
        g = gate.float().clamp(0, 1)
        copy = (x.float() - previous.float()) / sigma
        return ((1 - g) * v.float() + g * copy).to(v.dtype)

    def _check_previous(self, x: torch.Tensor, previous: torch.Tensor | None) -> None:
        if previous is None:
            return
        if self.copy_gate is None:
            raise ValueError("this model has no copy gate (config.copy_gate is false): drop previous=")
        if not isinstance(previous, torch.Tensor) or tuple(previous.shape) != tuple(x.shape):
            shape = tuple(previous.shape) if isinstance(previous, torch.Tensor) else type(previous).__name__
            raise ValueError(f"previous must be shaped like x {tuple(x.shape)}, each frame's previous clean latent, "
                             f"got {shape}")
        if not torch.isfinite(previous).all():
            raise ValueError("previous contains NaN or inf")

    def _with_append(self, x, timestep, action, append, append_action, text, text_mask, guidance, state,
                     chunk_frames):
        """x with the clean chunk to append put in front, and per-frame timesteps (0 for it) and actions."""
        if state is None or chunk_frames is not None:
            raise ValueError("append= adds a chunk to a stream's state: pass state= (and no chunk_frames=)")
        if not isinstance(append, torch.Tensor) or append.ndim != 5 or (
                append.shape[:2] != x.shape[:2] or append.shape[3:] != x.shape[3:]):
            shape = tuple(append.shape) if isinstance(append, torch.Tensor) else type(append).__name__
            raise ValueError(f"append must be a clean chunk shaped like x (B, C, T', H, W) = "
                             f"{tuple(x.shape[:2])} + (T',) + {tuple(x.shape[3:])}, got {shape}")
        if self.config.patch_size[0] != 1:
            raise ValueError("append= needs a temporal patch size of 1 (per-frame timesteps)")
        b, frames = x.shape[0], x.shape[2]
        zero = torch.zeros(b, append.shape[2], device=x.device)
        _, _, append_action = self._check_inputs(append, zero, text, text_mask, guidance, append_action)
        timestep = torch.cat([zero, (timestep if timestep.ndim == 2 else timestep[:, None].expand(b, frames))
                              .to(zero.dtype)], dim=1)
        if action is not None:
            action = torch.cat([append_action.to(action.dtype), action], dim=1)
        return torch.cat([append.to(x.dtype), x], dim=2), timestep, action

    # ----- saving ---------------------------------------------------------------------------------------------

    def save_pretrained(self, folder: str | Path) -> None:
        """Write a diffusers component folder (config.json + safetensors) that diffusers and we both load."""
        from .checkpoint import to_diffusers_state_dict

        write_component_folder(folder, self.config.to_diffusers_dict(), to_diffusers_state_dict(self))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

