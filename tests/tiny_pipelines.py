"""Tiny random diffusers pipelines (SanaPipeline, SanaSprintPipeline, SanaVideoPipeline) saved as folders."""

from __future__ import annotations

from pathlib import Path

import torch

from tests.tiny_text import HIDDEN_SIZE, tiny_gemma2, tiny_tokenizer
from tests.tiny_transformers import TINY_IMAGE, TINY_SPRINT, TINY_VIDEO, diffusers_image, diffusers_video

# DC-AE with the f32c32 block layout at tiny widths: 4 stages -> 8× spatial compression, 8 latent channels.
TINY_DCAE = dict(
    in_channels=3, latent_channels=8, attention_head_dim=8,
    encoder_block_types=["ResBlock", "ResBlock", "EfficientViTBlock", "EfficientViTBlock"],
    decoder_block_types=["ResBlock", "ResBlock", "EfficientViTBlock", "EfficientViTBlock"],
    encoder_block_out_channels=[8, 16, 16, 32], decoder_block_out_channels=[8, 16, 16, 32],
    encoder_layers_per_block=[1, 1, 1, 1], decoder_layers_per_block=[1, 1, 1, 1],
    encoder_qkv_multiscales=[[], [], [5], [5]], decoder_qkv_multiscales=[[], [], [5], [5]],
    downsample_block_type="Conv", upsample_block_type="interpolate",
    decoder_norm_types="rms_norm", decoder_act_fns="silu", scaling_factor=0.41407,
)
# Wan2.1 VAE at tiny widths: 8× spatial, 4× temporal compression, 4 latent channels.
TINY_WAN = dict(
    base_dim=8, z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1, temperal_downsample=[False, True, True],
    latents_mean=[0.1, -0.2, 0.3, 0.0], latents_std=[1.5, 0.5, 2.0, 1.0],
)


def _text():
    tokenizer = tiny_tokenizer()
    return tokenizer, tiny_gemma2(len(tokenizer))


def image_pipeline(kind: str = "image"):
    """A diffusers SanaPipeline ("image") or SanaSprintPipeline ("sprint") of tiny random components."""
    from diffusers import AutoencoderDC, DPMSolverMultistepScheduler, SanaPipeline, SanaSprintPipeline, SCMScheduler

    tokenizer, text_encoder = _text()
    config = dict(TINY_SPRINT if kind == "sprint" else TINY_IMAGE, in_channels=8, out_channels=8,
                  caption_channels=HIDDEN_SIZE, sample_size=4)
    transformer = diffusers_image(config, seed=4)
    torch.manual_seed(5)
    vae = AutoencoderDC(**TINY_DCAE).eval()
    if kind == "sprint":
        scheduler = SCMScheduler(prediction_type="trigflow", sigma_data=0.5)
        return SanaSprintPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae,
                                  transformer=transformer, scheduler=scheduler)
    scheduler = DPMSolverMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=3.0)
    return SanaPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                        scheduler=scheduler)


def video_pipeline():
    """A diffusers SanaVideoPipeline of tiny random components (Wan VAE, DPM flow solver, shift 8)."""
    from diffusers import AutoencoderKLWan, DPMSolverMultistepScheduler, SanaVideoPipeline

    tokenizer, text_encoder = _text()
    transformer = diffusers_video(seed=6, caption_channels=HIDDEN_SIZE)
    torch.manual_seed(7)
    vae = AutoencoderKLWan(**TINY_WAN).eval()
    scheduler = DPMSolverMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=8.0)
    return SanaVideoPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                             scheduler=scheduler)


def save(pipe, folder: Path) -> Path:
    pipe.save_pretrained(folder)
    return folder


__all__ = ["TINY_VIDEO", "image_pipeline", "save", "video_pipeline"]
