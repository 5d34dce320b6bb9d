"""A per-frame image autoencoder (DC-AE) used as a video VAE: one latent frame per pixel frame.

It offers the video-VAE surface the pipelines and the streaming engine use (encode/decode of (B, C, F, H, W),
chunk decode with a state, latent normalisation, spatial/temporal factors), so a DC-AE video model streams
through the same engine as the Wan2.1-VAE models. No temporal compression means no decoder cache: the decode
state only counts chunks.
"""

from __future__ import annotations

import torch

from .dc_ae import DCAE


class FrameDecodeState:
    """Per-frame decoding keeps nothing between chunks; the state exists for the common interface."""

    kind = "decode"
    nbytes = 0

    def __init__(self) -> None:
        self.chunks = 0


class PerFrameVAE:
    temporal_factor = 1

    def __init__(self, autoencoder: DCAE):
        self.autoencoder = autoencoder

    @property
    def spatial_factor(self) -> int:
        return self.autoencoder.spatial_compression

    @property
    def dtype(self) -> torch.dtype:
        return self.autoencoder.dtype

    @property
    def device(self) -> torch.device:
        return self.autoencoder.device

    @staticmethod
    def _frames(video: torch.Tensor) -> tuple[torch.Tensor, int]:
        if video.ndim != 5:
            raise ValueError(f"expected (B, C, F, H, W), got shape {tuple(video.shape)}")
        b, c, f, h, w = video.shape
        return video.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w), b

    @staticmethod
    def _video(frames: torch.Tensor, batch: int) -> torch.Tensor:
        bf, c, h, w = frames.shape
        return frames.reshape(batch, bf // batch, c, h, w).permute(0, 2, 1, 3, 4)

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, F, H, W) in [-1, 1] -> (B, c, F, h, w) raw latents."""
        frames, b = self._frames(video)
        return self._video(self.autoencoder.encode(frames), b)

    @torch.no_grad()
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """(B, c, F, h, w) raw latents -> (B, 3, F, H, W) in [-1, 1]."""
        frames, b = self._frames(latent)
        return self._video(self.autoencoder.decode(frames).clamp(-1, 1), b)

    def new_decode_state(self) -> FrameDecodeState:
        return FrameDecodeState()

    def decode_chunk(self, latent: torch.Tensor, state: FrameDecodeState) -> torch.Tensor:
        state.chunks += 1
        return self.decode(latent)

    def normalize_latents(self, latent: torch.Tensor) -> torch.Tensor:
        """Raw latents -> the DiT's latent space (× scaling_factor, as Sana scales DC-AE latents)."""
        return latent * self.autoencoder.scaling_factor

    def denormalize_latents(self, latent: torch.Tensor) -> torch.Tensor:
        return latent.to(self.dtype) / self.autoencoder.scaling_factor
