"""The Wan2.1 video VAE (AutoencoderKLWan in diffusers): 3 RGB channels <-> 16 latent channels, ×8 in space,
×4 in time, with convolutions that only look back in time.

Frame grouping: the first latent frame holds 1 video frame and every later latent frame holds 4, so a video of
F = 1 + 4k frames has 1 + k latent frames (a still image is the F = 1 case).

Because every layer is causal in time (or works frame by frame), the VAE can run on a stream: feed consecutive
chunks and each causal conv remembers the last input frames its next window needs (`CausalState`). Running a
video in one piece or chunk by chunk gives the same frames, and the state stays a fixed number of frames per
layer however long the stream gets. The streaming engine decodes each finished latent chunk this way.

Parameter names equal diffusers' state-dict keys, so a diffusers `vae/` folder loads directly. Activations and
conv weights are kept channels-last: on CPU the convolutions run ~1.3x faster in that layout, and the frame
folds below (time into batch) become views instead of copies.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from sana_stream.vae.loading import load_component

CLASS_NAME = "AutoencoderKLWan"

# Per-channel statistics of Wan2.1 latents: diffusers' defaults, used when a config.json leaves them out.
WAN21_LATENTS_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)  # fmt: skip
WAN21_LATENTS_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)  # fmt: skip

# Latent frames per pass in `decode`/`encode`: bounds activation memory on long videos (one pass over all 21
# latent frames of an 81-frame 480p clip would hold ~12 GB per fp32 activation at full resolution).
DEFAULT_CHUNK_FRAMES = 4


@dataclass
class WanVAEConfig:
    """The config.json fields of diffusers' AutoencoderKLWan. Defaults are the Wan2.1 release's."""

    base_dim: int = 96
    decoder_base_dim: int | None = None  # None: same as base_dim
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attn_scales: tuple[float, ...] = ()  # must be empty (Wan2.1); diffusers cannot run other values either
    temperal_downsample: tuple[bool, ...] = (False, True, True)  # (sic) the diffusers spelling
    dropout: float = 0.0  # training only: inference has no dropout
    latents_mean: tuple[float, ...] = WAN21_LATENTS_MEAN
    latents_std: tuple[float, ...] = WAN21_LATENTS_STD
    is_residual: bool = False  # Wan2.2
    in_channels: int = 3
    out_channels: int = 3
    patch_size: int | None = None  # Wan2.2
    # Read by diffusers pipelines; here the factors come from the layer structure (`WanVAE.spatial_factor`).
    scale_factor_temporal: int | None = 4
    scale_factor_spatial: int | None = 8

    def __post_init__(self) -> None:
        for name in ("dim_mult", "attn_scales", "temperal_downsample", "latents_mean", "latents_std"):
            setattr(self, name, tuple(getattr(self, name)))
        if self.decoder_base_dim is None:
            self.decoder_base_dim = self.base_dim
        problems = []
        if self.is_residual or self.patch_size not in (None, 1):
            problems.append(
                "this is a Wan2.2 VAE (is_residual / patch_size); only the Wan2.1 VAE is implemented"
            )
        if self.attn_scales:
            problems.append(f"attn_scales must be empty as in Wan2.1, got {list(self.attn_scales)}")
        if len(self.temperal_downsample) != len(self.dim_mult) - 1:
            problems.append(
                f"temperal_downsample needs one entry per downsampling stage ({len(self.dim_mult) - 1}), "
                f"got {len(self.temperal_downsample)}"
            )
        if not len(self.latents_mean) == len(self.latents_std) == self.z_dim:
            problems.append(
                f"latents_mean ({len(self.latents_mean)}) and latents_std ({len(self.latents_std)}) "
                f"need z_dim = {self.z_dim} entries"
            )
        if problems:
            raise ValueError("invalid Wan VAE config: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> WanVAEConfig:
        class_name = raw.get("_class_name", CLASS_NAME)
        if class_name != CLASS_NAME:
            raise ValueError(f"not a Wan VAE config: _class_name is {class_name!r}, expected {CLASS_NAME!r}")
        # Keys starting with "_" are diffusers bookkeeping (_class_name, _diffusers_version, _name_or_path).
        raw = {k: v for k, v in raw.items() if not k.startswith("_")}
        unknown = sorted(set(raw) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown Wan VAE config field(s): {', '.join(unknown)}")
        return cls(**raw)


@dataclass
class CausalState:
    """What a VAE half remembers between chunks of one stream.

    tails: for each causal conv (by module name), the input frames its next window still needs: a fixed
    count per layer (2 for the 3-frame convs), so the state never grows with the number of chunks.
    """

    kind: str  # "encode" or "decode": which half of the VAE it belongs to
    tails: dict[str, torch.Tensor] = field(default_factory=dict)
    chunks: int = 0  # chunks processed so far

    @property
    def first(self) -> bool:
        """True before the first chunk: the video's first frame is special in the temporal resamplers."""
        return self.chunks == 0

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tails.values())


# ----- layers -------------------------------------------------------------------------------------------------


class CausalConv3d(nn.Conv3d):
    """A Conv3d that only looks back in time, run on a stream of chunks.

    Space is zero-padded to keep H and W. In time, the input is preceded by `front_pad` zero frames at the
    start of the stream and afterwards by the frames the previous chunk left unconsumed (kept in the
    CausalState). A chunk too short to complete a window gives no output frames, only a longer tail.
    """

    def __init__(self, in_dim: int, out_dim: int, kernel: tuple[int, int, int], front_pad: int,
                 stride: int = 1) -> None:
        _, kh, kw = kernel
        super().__init__(in_dim, out_dim, kernel, stride=(stride, 1, 1), padding=(0, kh // 2, kw // 2))
        self.front_pad = front_pad
        self.cache_key = ""  # set by WanVAE to this module's name

    def forward(self, x: torch.Tensor, state: CausalState) -> torch.Tensor:
        tail = state.tails.get(self.cache_key)
        x = F.pad(x, (0, 0, 0, 0, self.front_pad, 0)) if tail is None else torch.cat([tail, x], dim=2)
        kernel, stride = self.kernel_size[0], self.stride[0]
        windows = max(0, (x.shape[2] - kernel) // stride + 1)
        # clone: a view would keep the whole padded chunk alive
        state.tails[self.cache_key] = x[:, :, windows * stride:].clone()
        if windows == 0:
            b, _, _, h, w = x.shape
            return x.new_empty(b, self.out_channels, 0, h, w)
        return super().forward(x)


class RMSNorm(nn.Module):
    """Normalise over channels to unit RMS, then scale per channel. `gamma` broadcasts over (t,) h, w."""

    def __init__(self, dim: int, spatial_dims: int = 3) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim, *(1,) * spatial_dims))
        self.scale = dim**0.5  # x / ||x|| has unit L2 norm; × √dim makes that unit RMS

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Sum the squares in fp32 (bf16 sums lose too much) without making an fp32 copy of x.
        norm = torch.linalg.vector_norm(x, dim=1, keepdim=True, dtype=torch.float32).clamp_min_(1e-12)
        return (x * (self.scale / norm).to(x.dtype)).mul_(self.gamma)


def per_frame(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a 2-D module to every frame of (B, C, T, H, W): time folds into the batch (a view when channels-last)."""
    b, c, t, h, w = x.shape
    y = module(x.transpose(1, 2).reshape(b * t, c, h, w))
    return y.unflatten(0, (b, t)).transpose(1, 2)


class ResidualBlock(nn.Module):
    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.norm1 = RMSNorm(in_dim)
        self.conv1 = CausalConv3d(in_dim, out_dim, (3, 3, 3), front_pad=2)
        self.norm2 = RMSNorm(out_dim)
        self.conv2 = CausalConv3d(out_dim, out_dim, (3, 3, 3), front_pad=2)
        self.conv_shortcut = nn.Conv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x: torch.Tensor, state: CausalState) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x), inplace=True), state)
        h = self.conv2(F.silu(self.norm2(h), inplace=True), state)
        return h.add_(self.conv_shortcut(x))


class AttentionBlock(nn.Module):
    """Single-head self-attention over the pixels of each frame (no attention across time: needs no state)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = RMSNorm(dim, spatial_dims=2)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def attend(self, frames: torch.Tensor) -> torch.Tensor:
        n, c, h, w = frames.shape
        qkv = self.to_qkv(self.norm(frames)).flatten(2).transpose(1, 2)  # (n, h*w, 3c)
        q, k, v = qkv.unsqueeze(1).chunk(3, dim=-1)  # one head of width c
        out = F.scaled_dot_product_attention(q, k, v).squeeze(1)
        return self.proj(out.transpose(1, 2).reshape(n, c, h, w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + per_frame(self.attend, x)


class Downsample(nn.Module):
    """Halve H and W (pad right/bottom by 1, 3×3 conv with stride 2); optionally halve time too.

    In time, a 3-frame conv with stride 2 runs over frames (0, 1, 2), (2, 3, 4), ... while frame 0 also passes
    through on its own: 1 + 2n frames become 1 + n.
    """

    def __init__(self, dim: int, temporal: bool) -> None:
        super().__init__()
        self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=2))
        self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), front_pad=0, stride=2) if temporal else None

    def forward(self, x: torch.Tensor, state: CausalState) -> torch.Tensor:
        x = per_frame(self.resample, x)
        if self.time_conv is None:
            return x
        if state.first:
            return torch.cat([x[:, :, :1], self.time_conv(x, state)], dim=2)
        return self.time_conv(x, state)


class Upsample(nn.Module):
    """Double H and W (nearest, then a 3×3 conv that halves the channels); optionally double time first.

    In time, a causal conv makes 2·C channels per frame, read as two frames of C. The video's first frame is
    not doubled (and is not part of the conv's history), so n latent frames become 1 + 2(n - 1).
    """

    def __init__(self, dim: int, temporal: bool) -> None:
        super().__init__()
        # nearest-exact only copies values, so it runs in bf16 as is (no fp32 round trip needed)
        self.resample = nn.Sequential(
            nn.Upsample(scale_factor=(2.0, 2.0), mode="nearest-exact"), nn.Conv2d(dim, dim // 2, 3, padding=1)
        )
        self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), front_pad=2) if temporal else None

    def double_frames(self, x: torch.Tensor, state: CausalState) -> torch.Tensor:
        first, x = (x[:, :, :1], x[:, :, 1:]) if state.first else (None, x)
        b, c, t, h, w = x.shape
        pairs = self.time_conv(x, state)  # (b, 2c, t, h, w): channels [frame 2i | frame 2i+1]
        out = torch.empty(b, c, 2 * t, h, w, dtype=x.dtype, device=x.device, memory_format=torch.channels_last_3d)
        out[:, :, 0::2], out[:, :, 1::2] = pairs[:, :c], pairs[:, c:]
        return out if first is None else torch.cat([first, out], dim=2)

    def forward(self, x: torch.Tensor, state: CausalState) -> torch.Tensor:
        if self.time_conv is not None:
            x = self.double_frames(x, state)
        return per_frame(self.resample, x)


class MidBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.resnets = nn.ModuleList([ResidualBlock(dim, dim), ResidualBlock(dim, dim)])
        self.attentions = nn.ModuleList([AttentionBlock(dim)])

    def forward(self, x: torch.Tensor, state: CausalState) -> torch.Tensor:
        x = self.resnets[0](x, state)
        x = self.attentions[0](x)
        return self.resnets[1](x, state)


class UpBlock(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, num_res_blocks: int, upsample: bool, temporal: bool) -> None:
        super().__init__()
        dims = [in_dim] + [out_dim] * (num_res_blocks + 1)
        self.resnets = nn.ModuleList(ResidualBlock(i, o) for i, o in zip(dims, dims[1:]))
        self.upsamplers = nn.ModuleList([Upsample(out_dim, temporal)]) if upsample else None

    def forward(self, x: torch.Tensor, state: CausalState) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x, state)
        return x if self.upsamplers is None else self.upsamplers[0](x, state)


# ----- encoder and decoder ------------------------------------------------------------------------------------


class Encoder(nn.Module):
    """Video -> (mean, logvar) moments: 2·z_dim channels."""

    def __init__(self, cfg: WanVAEConfig) -> None:
        super().__init__()
        dims = [cfg.base_dim * m for m in (1, *cfg.dim_mult)]
        self.conv_in = CausalConv3d(cfg.in_channels, dims[0], (3, 3, 3), front_pad=2)
        blocks: list[nn.Module] = []
        for stage, (in_dim, out_dim) in enumerate(zip(dims, dims[1:])):
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResidualBlock(in_dim, out_dim))
                in_dim = out_dim
            if stage < len(cfg.temperal_downsample):
                blocks.append(Downsample(out_dim, temporal=cfg.temperal_downsample[stage]))
        self.down_blocks = nn.ModuleList(blocks)
        self.mid_block = MidBlock(dims[-1])
        self.norm_out = RMSNorm(dims[-1])
        self.conv_out = CausalConv3d(dims[-1], 2 * cfg.z_dim, (3, 3, 3), front_pad=2)

    def forward(self, x: torch.Tensor, state: CausalState) -> torch.Tensor:
        x = self.conv_in(x, state)
        for block in self.down_blocks:
            x = block(x, state)
        x = self.mid_block(x, state)
        return self.conv_out(F.silu(self.norm_out(x), inplace=True), state)


class Decoder(nn.Module):
    """Latents (z_dim channels) -> video."""

    def __init__(self, cfg: WanVAEConfig) -> None:
        super().__init__()
        dims = [cfg.decoder_base_dim * m for m in (cfg.dim_mult[-1], *reversed(cfg.dim_mult))]
        temporal = tuple(reversed(cfg.temperal_downsample))
        self.conv_in = CausalConv3d(cfg.z_dim, dims[0], (3, 3, 3), front_pad=2)
        self.mid_block = MidBlock(dims[0])
        stages = len(cfg.dim_mult)
        self.up_blocks = nn.ModuleList(
            UpBlock(
                # every Upsample halves the channels, so stages after the first get half their nominal width
                dims[i] if i == 0 else dims[i] // 2,
                dims[i + 1],
                cfg.num_res_blocks,
                upsample=i < stages - 1,
                temporal=i < stages - 1 and temporal[i],
            )
            for i in range(stages)
        )
        self.norm_out = RMSNorm(dims[-1])
        self.conv_out = CausalConv3d(dims[-1], cfg.out_channels, (3, 3, 3), front_pad=2)

    def forward(self, x: torch.Tensor, state: CausalState) -> torch.Tensor:
        x = self.conv_in(x, state)
        x = self.mid_block(x, state)
        for block in self.up_blocks:
            x = block(x, state)
        return self.conv_out(F.silu(self.norm_out(x), inplace=True), state)


# ----- the VAE ------------------------------------------------------------------------------------------------


class WanVAE(nn.Module):
    """Wan2.1 video VAE. Videos are (B, 3, F, H, W) in [-1, 1]; latents are (B, z_dim, T, H/8, W/8)."""

    def __init__(self, config: WanVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.quant_conv = nn.Conv3d(2 * config.z_dim, 2 * config.z_dim, 1)
        self.post_quant_conv = nn.Conv3d(config.z_dim, config.z_dim, 1)
        self.decoder = Decoder(config)
        for name, module in self.named_modules():
            if isinstance(module, CausalConv3d):
                module.cache_key = name

    @classmethod
    def from_pretrained(cls, folder: str | Path, dtype: torch.dtype | None = None,
                        device: torch.device | str | None = None) -> WanVAE:
        """Load a diffusers AutoencoderKLWan folder (config.json + weights), or the vae/ of a pipeline folder.

        dtype None keeps the stored dtype (float16 becomes float32 on CPU). Returns the model in eval mode.
        """
        return load_component(folder, lambda raw: cls(WanVAEConfig.from_dict(raw)), "Wan VAE", dtype, device)

    @classmethod
    def from_original(cls, source: str | Path | dict[str, torch.Tensor],
                      config: WanVAEConfig | dict[str, Any] | None = None, dtype: torch.dtype | None = None,
                      device: torch.device | str | None = None) -> WanVAE:
        """Load the original Wan release's weights (`Wan2.1_VAE.pth`, or its state dict), renamed to ours.

        config: None for the Wan2.1 release's config, or AutoencoderKLWan config.json fields (a dict).
        """
        from sana_stream.vae.wan_original import load_original_wan  # it builds on this module

        return load_original_wan(source, config, dtype, device)

    # ----- shapes ----------------------------------------------------------------------------------------------

    @property
    def spatial_factor(self) -> int:
        return 2 ** (len(self.config.dim_mult) - 1)

    @property
    def temporal_factor(self) -> int:
        return 2 ** sum(self.config.temperal_downsample)

    @property
    def dtype(self) -> torch.dtype:
        return self.post_quant_conv.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.post_quant_conv.weight.device

    def num_latent_frames(self, num_frames: int) -> int:
        return 1 + (num_frames - 1) // self.temporal_factor

    def num_video_frames(self, num_latent_frames: int) -> int:
        return 1 + (num_latent_frames - 1) * self.temporal_factor

    def _prepare(self, x: torch.Tensor, what: str, channels: int) -> torch.Tensor:
        """Check the layout and move to the model's device, dtype and channels-last."""
        if x.dim() != 5 or x.shape[1] != channels:
            raise ValueError(f"{what} must be (B, {channels}, frames, H, W), got shape {tuple(x.shape)}")
        if x.shape[2] == 0:
            raise ValueError(f"{what} has no frames")
        return x.to(self.device, self.dtype, memory_format=torch.channels_last_3d)

    # ----- encode ----------------------------------------------------------------------------------------------

    def new_encode_state(self) -> CausalState:
        return CausalState("encode")

    def _moments_chunk(self, video: torch.Tensor, state: CausalState) -> torch.Tensor:
        if state.kind != "encode":
            raise ValueError(f"encode_chunk needs a state from new_encode_state(), got a {state.kind!r} state")
        video = self._prepare(video, "video", self.config.in_channels)
        frames, (h, w), f, s = video.shape[2], video.shape[3:], self.temporal_factor, self.spatial_factor
        if h % s or w % s:
            raise ValueError(f"video height and width must be multiples of {s}, got {h}x{w}")
        if state.first and (frames - 1) % f:
            raise ValueError(f"the first chunk of a video needs 1 + {f}·k frames, got {frames}")
        if not state.first and frames % f:
            raise ValueError(f"chunks after the first need a positive multiple of {f} frames, got {frames}")
        moments = self.quant_conv(self.encoder(video, state))
        state.chunks += 1
        return moments

    @torch.no_grad()
    def encode_chunk(self, video: torch.Tensor, state: CausalState) -> torch.Tensor:
        """Latent mean of the next chunk of a stream: 1 + 4k frames first, then multiples of 4 frames."""
        return self._moments_chunk(video, state)[:, : self.config.z_dim]

    @torch.no_grad()
    def encode(self, video: torch.Tensor, *, sample: bool = False, generator: torch.Generator | None = None,
               chunk_frames: int = DEFAULT_CHUNK_FRAMES) -> torch.Tensor:
        """(B, 3, 1 + 4k, H, W) video in [-1, 1] -> (B, z_dim, 1 + k, H/8, W/8) latents (not normalised).

        Returns the posterior mean, or a sample (mean + std·noise) with sample=True. The video is encoded in
        passes of `chunk_frames` latent frames to bound memory; the result does not depend on it.
        """
        video, f, n = self._prepare(video, "video", self.config.in_channels), self.temporal_factor, chunk_frames
        if (video.shape[2] - 1) % f:
            raise ValueError(f"a video needs 1 + {f}·k frames, got {video.shape[2]}")
        state = self.new_encode_state()
        # latent chunk j covers latent frames [j·n, (j+1)·n): 1 + f(n-1) video frames first, then f·n each
        bounds = list(range(1 + f * (n - 1), video.shape[2], f * n))
        moments = torch.cat([self._moments_chunk(c, state) for c in video.tensor_split(bounds, dim=2)], dim=2)
        mean, logvar = moments.chunk(2, dim=1)
        if not sample:
            return mean
        std = torch.exp(0.5 * logvar.clamp(-30.0, 20.0))
        return mean + std * torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)

    # ----- decode ----------------------------------------------------------------------------------------------

    def new_decode_state(self) -> CausalState:
        return CausalState("decode")

    @torch.no_grad()
    def decode_chunk(self, latent: torch.Tensor, state: CausalState) -> torch.Tensor:
        """Decode the next ≥ 1 latent frames of a stream: the first call gives 1 + 4(T - 1) frames, later ones 4T."""
        if state.kind != "decode":
            raise ValueError(f"decode_chunk needs a state from new_decode_state(), got a {state.kind!r} state")
        latent = self._prepare(latent, "latent", self.config.z_dim)
        video = self.decoder(self.post_quant_conv(latent), state)
        state.chunks += 1
        return video.clamp_(-1.0, 1.0)

    @torch.no_grad()
    def decode(self, latent: torch.Tensor, *, chunk_frames: int = DEFAULT_CHUNK_FRAMES) -> torch.Tensor:
        """(B, z_dim, T, h, w) latents (not normalised) -> (B, 3, 1 + 4(T - 1), 8h, 8w) video in [-1, 1].

        Decodes in passes of `chunk_frames` latent frames to bound memory; the result does not depend on it.
        """
        latent, state = self._prepare(latent, "latent", self.config.z_dim), self.new_decode_state()
        return torch.cat([self.decode_chunk(c, state) for c in latent.split(chunk_frames, dim=2)], dim=2)

    # ----- latent normalisation (what the DiT sees) ------------------------------------------------------------

    def _latent_stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Same order of operations as diffusers' Sana-Video pipelines (cast, then reciprocal of std) so that
        # latents match theirs bit for bit.
        mean = torch.tensor(self.config.latents_mean).view(1, -1, 1, 1, 1).to(like.device, like.dtype)
        inv_std = 1.0 / torch.tensor(self.config.latents_std).view(1, -1, 1, 1, 1).to(like.device, like.dtype)
        return mean, inv_std

    def normalize_latents(self, latent: torch.Tensor) -> torch.Tensor:
        """VAE latents -> the DiT's latent space: (z - mean) / std per channel."""
        mean, inv_std = self._latent_stats(latent)
        return (latent - mean) * inv_std

    def denormalize_latents(self, latent: torch.Tensor) -> torch.Tensor:
        """DiT latents -> VAE latents, in the VAE's dtype (as the pipeline does right before decode)."""
        latent = latent.to(self.dtype)
        mean, inv_std = self._latent_stats(latent)
        return latent / inv_std + mean
