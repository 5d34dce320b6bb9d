"""Transformer forward: ours vs diffusers (the baseline) on identical weights and inputs, in one run.

Cases (2-block slices of the released configs, random weights):
  video-2B-480p  SanaVideo 2B, 480×832 → 2 latent frames × 30×52 tokens (3120 tokens), 300 text tokens
  image-1.6B-1K  Sana 1.6B, 1024² → 32×32 latent (1024 tokens), 300 text tokens
Prints seconds per forward, the ratio ours/diffusers (< 1 is faster) and the achieved fraction of the machine's
measured matmul peak.

    python benchmarks/transformer.py [--repeats 3] [--dtypes fp32,bf16] [--cases video-2B-480p,image-1.6B-1K]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import matmul_peak, time_calls  # noqa: E402
from sana_stream.model import TransformerConfig, VARIANTS, build_transformer  # noqa: E402
from sana_stream.model.checkpoint import from_diffusers  # noqa: E402

CASES = {
    "video-2B-480p": ("SanaVideo_2B_480p", (1, 16, 2, 60, 104)),
    "image-1.6B-1K": ("Sana_1600M_1024px", (1, 32, 32, 32)),
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def build_pair(variant: str, layers: int, dtype: torch.dtype):
    from diffusers import SanaTransformer2DModel, SanaVideoTransformer3DModel

    raw = {k: v for k, v in VARIANTS[variant].items() if not k.startswith("_")}
    raw["num_layers"] = layers
    video = VARIANTS[variant]["_class_name"] == "SanaVideoTransformer3DModel"
    torch.manual_seed(0)
    ref = (SanaVideoTransformer3DModel if video else SanaTransformer2DModel)(**raw).to(dtype).eval()
    cfg = TransformerConfig.from_dict({**VARIANTS[variant], "num_layers": layers})
    ours = build_transformer(cfg, from_diffusers(dict(ref.state_dict())), dtype=dtype)
    return ref, ours, video


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--dtypes", default="fp32,bf16")
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args()

    torch.set_grad_enabled(False)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    peaks = {name: matmul_peak(DTYPES[name]) for name in args.dtypes.split(",")}
    print("measured matmul peak: " + ", ".join(f"{n} {p / 1e9:.0f} GFLOP/s" for n, p in peaks.items()))
    print(f"{'case':16} {'dtype':5} {'diffusers s':>12} {'ours s':>9} {'ours/diffusers':>15} {'ours %peak':>11}")
    for case in args.cases.split(","):
        variant, shape = CASES[case]
        for dname in args.dtypes.split(","):
            dtype = DTYPES[dname]
            ref, ours, video = build_pair(variant, args.layers, dtype)
            gen = torch.Generator().manual_seed(1)
            x = torch.randn(shape, generator=gen).to(dtype)
            text = torch.randn(1, 300, ours.config.caption_channels, generator=gen).to(dtype)
            mask = torch.ones(1, 300)
            mask[:, 120:] = 0
            t = torch.tensor([500.0])

            def run_ref():
                return ref(x, encoder_hidden_states=text, timestep=t, encoder_attention_mask=mask, return_dict=False)

            def run_ours():
                return ours(x, t, text, mask)

            times = time_calls({"diffusers": run_ref, "ours": run_ours}, repeats=args.repeats)
            tokens = x[0, 0].numel() // (4 if video else 1)
            flops = 2 * tokens * sum(p.numel() for p in ours.transformer_blocks.parameters())
            print(f"{case:16} {dname:5} {times['diffusers']:12.3f} {times['ours']:9.3f} "
                  f"{times['ours'] / times['diffusers']:15.2f} {100 * flops / times['ours'] / peaks[dname]:10.0f}%")
            del ref, ours


if __name__ == "__main__":
    main()
