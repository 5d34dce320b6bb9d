"""DC-AE, the deep-compression autoencoder of the Sana image models (diffusers: AutoencoderDC).

f32c32 (Sana's VAE) maps a (B, 3, H, W) image in [-1, 1] to a (B, 32, H/32, W/32) latent. The encoder
runs stages of blocks from fine to coarse, halving the resolution between stages; the decoder mirrors it.
In the Sana configs the fine stages are ResBlocks (convolutions only) and the coarse ones EfficientViT
blocks (linear attention over the whole feature map).

Scaling: like diffusers, encode() and decode() work on raw latents. Pipelines multiply a fresh latent by
`scaling_factor` before diffusion and divide by it before decode():
    image = vae.decode(latents / vae.scaling_factor)

Tiled decoding (large images). The decoder splits at its finest attention stage into
  global part: latent → that stage's output, at 1/8 of the image size for f32c32 — small, run whole, so
               every attention layer sees the whole image as in an untiled decode;
  local part:  the remaining ResBlock/upsampling stages and the output head — convolutions only, where
               all the memory goes (4K: 128 channels × 4096² per activation), run tile by tile with exact
               context margins (dc_ae_tiling).
Tiled and untiled decodes therefore agree to floating-point rounding: no blending, no seams.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .dc_ae_blocks import (
    ACTIVATIONS,
    ChannelRMSNorm,
    DownBlock,
    ResBlock,
    UpBlock,
    average_channel_groups,
    make_block,
    repeat_channels,
)
from .dc_ae_config import DCAEConfig
from .dc_ae_tiling import run_tiled
from .loading import load_component

# Modules that act on each pixel independently: they need no context from neighbouring pixels.
_PER_PIXEL = (ChannelRMSNorm, nn.BatchNorm2d, *ACTIVATIONS.values())


class Encoder(nn.Module):
    def __init__(self, config: DCAEConfig) -> None:
        super().__init__()
        widths, layers = config.encoder_block_out_channels, config.encoder_layers_per_block
        pixel_unshuffle = config.downsample_block_type == "pixel_unshuffle"
        if layers[0] > 0:
            self.conv_in = nn.Conv2d(config.in_channels, widths[0], 3, padding=1)
        else:  # no blocks at full resolution: the stem downsamples straight to the second stage
            self.conv_in = DownBlock(config.in_channels, widths[1], pixel_unshuffle, shortcut=False)
        stages = []
        for i, (width, count) in enumerate(zip(widths, layers)):
            blocks = [
                make_block(config.encoder_block_types[i], width, config.attention_head_dim,
                           config.encoder_qkv_multiscales[i], norm_type="rms_norm", act_fn="silu")
                for _ in range(count)
            ]
            if i < len(widths) - 1 and count > 0:
                blocks.append(DownBlock(width, widths[i + 1], pixel_unshuffle, shortcut=True))
            stages.append(nn.Sequential(*blocks))
        self.down_blocks = nn.ModuleList(stages)
        self.conv_out = nn.Conv2d(widths[-1], config.latent_channels, 3, padding=1)
        self.out_shortcut = config.encoder_out_shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for stage in self.down_blocks:
            x = stage(x)
        latent = self.conv_out(x)
        if self.out_shortcut:  # the latent learns a residual over channel-averaged features
            latent = latent + average_channel_groups(x, latent.shape[1])
        return latent


class Decoder(nn.Module):
    def __init__(self, config: DCAEConfig) -> None:
        super().__init__()
        widths, layers = config.decoder_block_out_channels, config.decoder_layers_per_block
        interpolate = config.upsample_block_type == "interpolate"
        self.conv_in = nn.Conv2d(config.latent_channels, widths[-1], 3, padding=1)
        self.in_shortcut = config.decoder_in_shortcut
        # up_blocks[i] works at 1/2^i of the image size and runs after up_blocks[i + 1], coarse to fine.
        stages = []
        for i, (width, count) in enumerate(zip(widths, layers)):
            blocks = []
            if i < len(widths) - 1 and count > 0:
                blocks.append(UpBlock(widths[i + 1], width, interpolate, shortcut=True))
            blocks += [
                make_block(config.decoder_block_types[i], width, config.attention_head_dim,
                           config.decoder_qkv_multiscales[i], config.decoder_norm_types[i], config.decoder_act_fns[i])
                for _ in range(count)
            ]
            stages.append(nn.Sequential(*blocks))
        self.up_blocks = nn.ModuleList(stages)
        head_width = widths[0] if layers[0] > 0 else widths[1]
        self.norm_out = ChannelRMSNorm(head_width)
        self.conv_act = ACTIVATIONS[config.decoder_conv_act_fn]()
        if layers[0] > 0:
            self.conv_out = nn.Conv2d(head_width, config.in_channels, 3, padding=1)
        else:  # no blocks at full resolution: the head upsamples the last time
            self.conv_out = UpBlock(head_width, config.in_channels, interpolate, shortcut=False)

        # Split for tiling: stages split.. (the finest with attention, or at least the coarsest) are global.
        attention = [i for i, t in enumerate(config.decoder_block_types) if t == "EfficientViTBlock" and layers[i]]
        self.split = min(attention + [len(widths) - 1])
        self.global_scale = 2 ** (len(widths) - 1 - self.split)  # global-part output pixels per latent pixel
        self.local_scale = 2**self.split  # image pixels per global-part output pixel
        self.context_margin = context_margin(self._local_modules())

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.local_part(self.global_part(latent))

    def global_part(self, latent: torch.Tensor) -> torch.Tensor:
        """Latent → features at 1/local_scale of the image size, through every attention stage."""
        x = self.conv_in(latent)
        if self.in_shortcut:  # the stem learns a residual over the latent's channels repeated
            x = x + repeat_channels(latent, x.shape[1] // latent.shape[1])
        for stage in reversed(self.up_blocks[self.split:]):
            x = stage(x)
        return x

    def local_part(self, x: torch.Tensor) -> torch.Tensor:
        """global_part features → image; convolutions only, so it may run on tiles."""
        for module in self._local_modules():
            x = module(x)
        return x

    def _local_modules(self) -> list[nn.Module]:
        blocks = [block for stage in reversed(self.up_blocks[: self.split]) for block in stage]
        return [*blocks, self.norm_out, self.conv_act, self.conv_out]


def context_margin(modules: list[nn.Module]) -> int:
    """Input pixels per side that one output pixel of this chain reads, walking back from the output."""
    margin = 0
    for module in reversed(modules):
        if isinstance(module, (ResBlock, UpBlock)):
            margin = module.input_margin(margin)
        elif isinstance(module, nn.Conv2d):
            margin += module.kernel_size[0] // 2
        elif not isinstance(module, _PER_PIXEL):
            raise TypeError(f"{type(module).__name__} has no known receptive field: it cannot run on tiles")
    return margin


class DCAE(nn.Module):
    """DC-AE autoencoder with diffusers AutoencoderDC parameter names.

    tile_size: latent pixels per tile side in tiled decoding (32 → 1024-pixel tiles at f32); decode()
    tiles on its own when the latent is larger than one tile.
    """

    def __init__(self, config: DCAEConfig, tile_size: int = 32) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.tile_size = tile_size

    @classmethod
    def from_pretrained(
        cls, folder: str | Path, dtype: torch.dtype | None = None, device: torch.device | str | None = None
    ) -> DCAE:
        """Load a diffusers AutoencoderDC folder (config.json + weights), or the vae/ of a pipeline folder.

        dtype None keeps the stored dtype (float16 becomes float32 on CPU, where float16 is ~100× slower).
        Returns the model in eval mode, frozen, with conv weights channels-last (faster on CPU).
        """
        return load_component(folder, lambda raw: cls(DCAEConfig.from_dict(raw)), "DC-AE", dtype, device)

    @property
    def scaling_factor(self) -> float:
        return self.config.scaling_factor

    @property
    def spatial_compression(self) -> int:
        return self.config.spatial_compression

    @property
    def latent_channels(self) -> int:
        return self.config.latent_channels

    @property
    def dtype(self) -> torch.dtype:
        return self.decoder.conv_in.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.decoder.conv_in.weight.device

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images in [-1, 1], H and W multiples of spatial_compression → raw latent."""
        x = self._prepare(images, self.config.in_channels, "images")
        if x.shape[-2] % self.spatial_compression or x.shape[-1] % self.spatial_compression:
            raise ValueError(
                f"image size {tuple(x.shape[-2:])} is not a multiple of the compression {self.spatial_compression}"
            )
        return self.encoder(x)

    @torch.no_grad()
    def decode(self, latent: torch.Tensor, *, tiled: bool | None = None) -> torch.Tensor:
        """Raw latent (B, C, h, w) → images (B, 3, h·f, w·f), roughly in [-1, 1], channels-last.

        tiled: None tiles when the latent is larger than tile_size on a side; True or False forces it.
        """
        z = self._prepare(latent, self.latent_channels, "latent")
        if tiled is None:
            tiled = max(z.shape[-2:]) > self.tile_size
        if not tiled:
            return self.decoder(z)
        decoder = self.decoder
        return run_tiled(
            decoder.local_part, decoder.global_part(z),
            tile=self.tile_size * decoder.global_scale, margin=decoder.context_margin, scale=decoder.local_scale,
        )

    def _prepare(self, x: torch.Tensor, channels: int, what: str) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != channels:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{what} must be a (B, {channels}, H, W) tensor, got {shape}")
        if not x.is_floating_point():
            raise ValueError(f"{what} must be floating point, got {x.dtype}")
        return x.to(device=self.device, dtype=self.dtype, memory_format=torch.channels_last)
