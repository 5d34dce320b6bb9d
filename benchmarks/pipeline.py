"""Whole generation calls: ours vs diffusers (the baseline) on identical components, in one run.

    python benchmarks/pipeline.py [--repeats 3] [--dtypes fp32,bf16] [--cases image-256,video-17f] [--threads N]

Each case builds a diffusers pipeline of random components, saves it, and loads that folder with
`sana_stream.load_pipeline`, so both sides run the very same weights from the same initial noise:
  image-256  SanaPipeline: DiT 6 blocks × 256 wide (8 heads × 32), DC-AE f8c32 (widths 32-128),
             256×256 (32×32 latent tokens), 4 steps, CFG 4.5
  video-17f  SanaVideoPipeline: DiT 6 blocks × 256 wide (4 heads × 64), Wan VAE (base width 32, 16 latent
             channels), 17 frames 128×128 (5 × 8×8 latent tokens), 3 steps, CFG 6
Both use the tiny Gemma-2 text encoder of the tests. dtype applies to the transformer and the text encoder;
the VAEs run in fp32 on both sides (as the references do). Our prompt cache is cleared before every call so
that both sides encode the prompts each time. Prints median seconds per call over interleaved repeats and the
ratio ours/diffusers (< 1 is faster).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from diffusers.utils import logging as diffusers_logging
from transformers.utils import logging as transformers_logging

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import time_calls  # noqa: E402
from sana_stream import load_pipeline  # noqa: E402
from sana_stream.text import VIDEO_INSTRUCTION  # noqa: E402
from tests.tiny_pipelines import TINY_DCAE, TINY_WAN  # noqa: E402
from tests.tiny_text import HIDDEN_SIZE, tiny_gemma2, tiny_tokenizer  # noqa: E402
from tests.tiny_transformers import TINY_IMAGE, diffusers_image, diffusers_video  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
PROMPT, MOTION_SCORE = "a red fox running through fresh snow", 10
DIT = dict(num_layers=6, num_attention_heads=8, attention_head_dim=32, num_cross_attention_heads=8,
           cross_attention_head_dim=32, cross_attention_dim=256, caption_channels=HIDDEN_SIZE)
DCAE_WIDTHS = [32, 64, 128, 128]
WAN_LATENT = 16


def image_case():
    """(diffusers SanaPipeline, its call options, our generate_image options)."""
    from diffusers import AutoencoderDC, DPMSolverMultistepScheduler, SanaPipeline

    transformer = diffusers_image(dict(TINY_IMAGE, **DIT, in_channels=32, out_channels=32, sample_size=32), seed=1)
    torch.manual_seed(2)
    vae = AutoencoderDC(**dict(TINY_DCAE, latent_channels=32, encoder_block_out_channels=DCAE_WIDTHS,
                               decoder_block_out_channels=DCAE_WIDTHS)).eval()
    tokenizer = tiny_tokenizer()
    ref = SanaPipeline(tokenizer=tokenizer, text_encoder=tiny_gemma2(len(tokenizer)), vae=vae,
                       transformer=transformer, scheduler=DPMSolverMultistepScheduler(
                           use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=3.0))
    common = dict(height=256, width=256, num_inference_steps=4, guidance_scale=4.5, negative_prompt="")
    return ref, dict(common, prompt=PROMPT), dict(common, prompt=PROMPT), (1, 32, 32, 32)


def video_case():
    """(diffusers SanaVideoPipeline, its call options, our generate_video options)."""
    from diffusers import AutoencoderKLWan, DPMSolverMultistepScheduler, SanaVideoPipeline

    transformer = diffusers_video(seed=3, **dict(DIT, num_attention_heads=4, attention_head_dim=64,
                                                 num_cross_attention_heads=4, cross_attention_head_dim=64,
                                                 in_channels=WAN_LATENT, out_channels=WAN_LATENT, sample_size=16))
    torch.manual_seed(4)
    vae = AutoencoderKLWan(**dict(TINY_WAN, base_dim=32, z_dim=WAN_LATENT, latents_mean=[0.0] * WAN_LATENT,
                                  latents_std=[1.0] * WAN_LATENT)).eval()
    tokenizer = tiny_tokenizer()
    ref = SanaVideoPipeline(tokenizer=tokenizer, text_encoder=tiny_gemma2(len(tokenizer)), vae=vae,
                            transformer=transformer, scheduler=DPMSolverMultistepScheduler(
                                use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=8.0))
    common = dict(height=128, width=128, num_inference_steps=3, guidance_scale=6.0, negative_prompt="")
    # The reference leaves the motion sentence and the video instruction to the caller; ours adds both.
    theirs = dict(common, prompt=f"{PROMPT} motion score: {MOTION_SCORE}.", frames=17,
                  complex_human_instruction=VIDEO_INSTRUCTION.split("\n"))
    ours = dict(common, prompt=PROMPT, num_frames=17, motion_score=MOTION_SCORE)
    return ref, theirs, ours, (1, WAN_LATENT, 5, 16, 16)


CASES = {"image-256": image_case, "video-17f": video_case}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtypes", default="fp32,bf16")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch CPU threads; 1 is steadier on a machine shared with other jobs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    torch.set_grad_enabled(False)
    # Loading chatter (weight-loading bars, dtype-cast notices) would break up the table.
    diffusers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats} interleaved")
    print(f"{'case':10} {'dtype':5} {'diffusers s':>12} {'ours s':>9} {'ours/diffusers':>15}")
    for case in args.cases.split(","):
        ref, theirs, ours_options, latent_shape = CASES[case]()
        latents = torch.randn(latent_shape, generator=torch.Generator().manual_seed(0))
        with tempfile.TemporaryDirectory() as folder:
            ref.save_pretrained(folder)
            for dname in args.dtypes.split(","):
                dtype = DTYPES[dname]
                ref.transformer.to(dtype)
                ref.text_encoder.to(dtype)
                ref.set_progress_bar_config(disable=True)
                ours = load_pipeline(folder, dtype=dtype)
                generate = ours.generate_video if ours.family == "video" else ours.generate_image

                def run_ref():
                    return ref(**theirs, latents=latents, output_type="np", use_resolution_binning=False)

                def run_ours():
                    ours.text_encoder.cache.clear()
                    return generate(**ours_options, latents=latents)

                times = time_calls({"diffusers": run_ref, "ours": run_ours}, repeats=args.repeats)
                print(f"{case:10} {dname:5} {times['diffusers']:12.3f} {times['ours']:9.3f} "
                      f"{times['ours'] / times['diffusers']:15.2f}", flush=True)


if __name__ == "__main__":
    main()
