"""Tiny random diffusers Sana transformers (the reference), saved in the real formats for our loader."""

from __future__ import annotations

import torch

TINY_VIDEO = dict(
    in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=12, num_layers=2,
    num_cross_attention_heads=2, cross_attention_head_dim=12, cross_attention_dim=24, caption_channels=16,
    mlp_ratio=2.5, attention_bias=False, sample_size=8, patch_size=(1, 2, 2), qk_norm="rms_norm_across_heads",
    rope_max_seq_len=64,
)
TINY_IMAGE = dict(
    in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=8, num_layers=2,
    num_cross_attention_heads=2, cross_attention_head_dim=8, cross_attention_dim=16, caption_channels=12,
    mlp_ratio=2.5, attention_bias=False, sample_size=8, patch_size=1, qk_norm=None,
)
TINY_SPRINT = dict(TINY_IMAGE, qk_norm="rms_norm_across_heads", guidance_embeds=True)
TINY_IMAGE_PE = dict(TINY_IMAGE, patch_size=2, interpolation_scale=1.0)


def _perturb(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    # Stock init leaves some tensors at 0 or 1 (norm weights, biases); perturb all so every weight matters.
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    return model.eval()


def diffusers_video(seed: int = 0, **overrides):
    from diffusers import SanaVideoTransformer3DModel

    torch.manual_seed(seed)
    return _perturb(SanaVideoTransformer3DModel(**{**TINY_VIDEO, **overrides}), seed)


def diffusers_image(config: dict, seed: int = 0):
    from diffusers import SanaTransformer2DModel

    torch.manual_seed(seed)
    return _perturb(SanaTransformer2DModel(**config), seed)


def text_inputs(batch: int, length: int, channels: int, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    text = torch.randn(batch, length, channels, generator=gen)
    mask = torch.ones(batch, length)
    for i in range(batch):
        mask[i, length - 2 - i:] = 0  # right padding, a different amount per sample
    return text, mask


def to_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A diffusers Sana state dict written by hand into the original release's names (fused qkv, kv)."""
    out = {}
    blocks = sorted({int(k.split(".")[1]) for k in state if k.startswith("transformer_blocks.")})
    renames = {
        "patch_embedding.": "x_embedder.proj.", "patch_embed.proj.": "x_embedder.proj.",
        "time_embed.emb.timestep_embedder.linear_1.": "t_embedder.mlp.0.",
        "time_embed.emb.timestep_embedder.linear_2.": "t_embedder.mlp.2.",
        "time_embed.timestep_embedder.linear_1.": "t_embedder.mlp.0.",
        "time_embed.timestep_embedder.linear_2.": "t_embedder.mlp.2.",
        "time_embed.guidance_embedder.linear_1.": "cfg_embedder.mlp.0.",
        "time_embed.guidance_embedder.linear_2.": "cfg_embedder.mlp.2.",
        "time_embed.linear.": "t_block.1.", "caption_projection.linear_1.": "y_embedder.y_proj.fc1.",
        "caption_projection.linear_2.": "y_embedder.y_proj.fc2.", "caption_norm.": "attention_y_norm.",
        "proj_out.": "final_layer.linear.", "scale_shift_table": "final_layer.scale_shift_table",
    }
    for key, value in state.items():
        if key.startswith("transformer_blocks."):
            continue
        for old, new in renames.items():
            if key.startswith(old):
                out[new + key[len(old):]] = value
                break
        else:
            raise KeyError(key)
    for i in blocks:
        src, dst = f"transformer_blocks.{i}.", f"blocks.{i}."
        out[dst + "scale_shift_table"] = state[src + "scale_shift_table"]
        out[dst + "attn.qkv.weight"] = torch.cat([state[src + f"attn1.to_{n}.weight"] for n in "qkv"])
        out[dst + "attn.proj.weight"] = state[src + "attn1.to_out.0.weight"]
        out[dst + "attn.proj.bias"] = state[src + "attn1.to_out.0.bias"]
        out[dst + "cross_attn.q_linear.weight"] = state[src + "attn2.to_q.weight"]
        out[dst + "cross_attn.q_linear.bias"] = state[src + "attn2.to_q.bias"]
        out[dst + "cross_attn.kv_linear.weight"] = torch.cat([state[src + f"attn2.to_{n}.weight"] for n in "kv"])
        out[dst + "cross_attn.kv_linear.bias"] = torch.cat([state[src + f"attn2.to_{n}.bias"] for n in "kv"])
        out[dst + "cross_attn.proj.weight"] = state[src + "attn2.to_out.0.weight"]
        out[dst + "cross_attn.proj.bias"] = state[src + "attn2.to_out.0.bias"]
        for ours, theirs in (("attn1.norm_q", "attn.q_norm"), ("attn1.norm_k", "attn.k_norm"),
                             ("attn2.norm_q", "cross_attn.q_norm"), ("attn2.norm_k", "cross_attn.k_norm")):
            if src + ours + ".weight" in state:
                out[dst + theirs + ".weight"] = state[src + ours + ".weight"]
        for ours, theirs in (("conv_inverted", "inverted_conv.conv"), ("conv_depth", "depth_conv.conv"),
                             ("conv_point", "point_conv.conv"), ("conv_temp", "t_conv")):
            for kind in ("weight", "bias"):
                if f"{src}ff.{ours}.{kind}" in state:
                    out[f"{dst}mlp.{theirs}.{kind}"] = state[f"{src}ff.{ours}.{kind}"]
    # Training-only tensors that the original files carry and loading must drop.
    out["y_embedder.y_embedding"] = torch.zeros(3, 2)
    out["pos_embed"] = torch.zeros(1, 4, 2)
    return out
