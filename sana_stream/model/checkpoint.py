"""load_transformer: diffusers folders (component or pipeline, sharded or not) and original checkpoints.

Our module names are diffusers' video names, except two that differ between the diffusers families:
`patch_embedding` (image models: `patch_embed.proj`, a 2-D conv we store as a 3-D one with a time kernel of 1)
and `time_embed.timestep_embedder` (diffusers' adaLN-single nests it under `time_embed.emb`).
Original releases (`blocks.i.attn.qkv`, …) are renamed and split by the tables below.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from ..weights import check_state_dict, load_state_dict_file, read_component_folder
from .config import TransformerConfig, resolve_config
from .transformer import SanaTransformer

# Original release name -> ours (regex, applied to the start of the key).
_ORIGINAL_RENAMES = [
    (r"x_embedder\.proj\.", "patch_embedding."),
    (r"t_embedder\.mlp\.0\.", "time_embed.timestep_embedder.linear_1."),
    (r"t_embedder\.mlp\.2\.", "time_embed.timestep_embedder.linear_2."),
    (r"cfg_embedder\.mlp\.0\.", "time_embed.guidance_embedder.linear_1."),
    (r"cfg_embedder\.mlp\.2\.", "time_embed.guidance_embedder.linear_2."),
    (r"t_block\.1\.", "time_embed.linear."),
    (r"y_embedder\.y_proj\.fc1\.", "caption_projection.linear_1."),
    (r"y_embedder\.y_proj\.fc2\.", "caption_projection.linear_2."),
    (r"attention_y_norm\.", "caption_norm."),
    (r"final_layer\.linear\.", "proj_out."),
    (r"final_layer\.scale_shift_table", "scale_shift_table"),
    (r"blocks\.(\d+)\.scale_shift_table", r"transformer_blocks.\1.scale_shift_table"),
    (r"blocks\.(\d+)\.attn\.q_norm\.", r"transformer_blocks.\1.attn1.norm_q."),
    (r"blocks\.(\d+)\.attn\.k_norm\.", r"transformer_blocks.\1.attn1.norm_k."),
    (r"blocks\.(\d+)\.attn\.proj\.", r"transformer_blocks.\1.attn1.to_out.0."),
    (r"blocks\.(\d+)\.cross_attn\.q_linear\.", r"transformer_blocks.\1.attn2.to_q."),
    (r"blocks\.(\d+)\.cross_attn\.q_norm\.", r"transformer_blocks.\1.attn2.norm_q."),
    (r"blocks\.(\d+)\.cross_attn\.k_norm\.", r"transformer_blocks.\1.attn2.norm_k."),
    (r"blocks\.(\d+)\.cross_attn\.proj\.", r"transformer_blocks.\1.attn2.to_out.0."),
    (r"blocks\.(\d+)\.mlp\.inverted_conv\.conv\.", r"transformer_blocks.\1.ff.conv_inverted."),
    (r"blocks\.(\d+)\.mlp\.depth_conv\.conv\.", r"transformer_blocks.\1.ff.conv_depth."),
    (r"blocks\.(\d+)\.mlp\.point_conv\.conv\.", r"transformer_blocks.\1.ff.conv_point."),
    (r"blocks\.(\d+)\.mlp\.t_conv\.", r"transformer_blocks.\1.ff.conv_temp."),
]
# Fused original tensors, split along dim 0 into our separate projections.
_ORIGINAL_SPLITS = [
    (r"blocks\.(\d+)\.attn\.qkv\.(weight|bias)$", ("attn1.to_q", "attn1.to_k", "attn1.to_v")),
    (r"blocks\.(\d+)\.cross_attn\.kv_linear\.(weight|bias)$", ("attn2.to_k", "attn2.to_v")),
]
# Training-only or derived tensors of the original releases.
_ORIGINAL_DROPPED = (r"y_embedder\.y_embedding$", r"pos_embed$", r"logvar_linear\.")
_WRAPPER_PREFIXES = ("model.diffusion_model.", "module.", "model.")


def _detect_format(state: dict[str, torch.Tensor]) -> str:
    if any(k.startswith("transformer_blocks.") for k in state):
        return "diffusers"
    if any(k.startswith("blocks.") for k in state):
        return "original"
    raise ValueError(
        "weights are neither diffusers Sana (transformer_blocks.*) nor an original Sana release (blocks.*); "
        f"first keys: {', '.join(list(state)[:5])}"
    )


def _strip_wrappers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in _WRAPPER_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            return {k[len(prefix):]: v for k, v in state.items()}
    return state


def from_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original-release keys -> ours; unknown keys pass through so the load check can name them."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if any(re.match(p, key) for p in _ORIGINAL_DROPPED):
            continue
        for pattern, parts in _ORIGINAL_SPLITS:
            m = re.match(pattern, key)
            if m:
                for part, piece in zip(parts, tensor.chunk(len(parts), dim=0)):
                    out[f"transformer_blocks.{m.group(1)}.{part}.{m.group(2)}"] = piece
                break
        else:
            for pattern, repl in _ORIGINAL_RENAMES:
                new, n = re.subn("^" + pattern, repl, key)
                if n:
                    out[new] = tensor
                    break
            else:
                out[key] = tensor
    return _fit_patch_weight(out)


def from_diffusers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers image/video keys -> ours."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if key == "patch_embed.pos_embed":  # derived sincos table; recomputed for the actual size
            continue
        key = key.replace("time_embed.emb.timestep_embedder.", "time_embed.timestep_embedder.")
        key = key.replace("patch_embed.proj.", "patch_embedding.")
        out[key] = tensor
    return _fit_patch_weight(out)


def to_diffusers_state_dict(model: SanaTransformer) -> dict[str, torch.Tensor]:
    """Ours -> the diffusers layout of the model's family (what diffusers' save_pretrained writes)."""
    cfg = model.config
    out = {}
    for key, tensor in model.state_dict().items():
        if not cfg.guidance_embeds:
            key = key.replace("time_embed.timestep_embedder.", "time_embed.emb.timestep_embedder.")
        if not cfg.is_video and key.startswith("patch_embedding."):
            key = key.replace("patch_embedding.", "patch_embed.proj.")
            tensor = tensor.squeeze(2) if tensor.ndim == 5 else tensor
        out[key] = tensor
    return out


def _fit_patch_weight(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # 2-D patch convs (image checkpoints) become our 3-D conv with a time kernel of 1.
    w = state.get("patch_embedding.weight")
    if w is not None and w.ndim == 4:
        state["patch_embedding.weight"] = w.unsqueeze(2)
    return state


def _stored_dtype(state: dict[str, torch.Tensor]) -> torch.dtype:
    counts = Counter(t.dtype for t in state.values() if t.is_floating_point())
    return counts.most_common(1)[0][0] if len(counts) == 1 else torch.float32


def build_transformer(
    config: TransformerConfig,
    state: dict[str, torch.Tensor],
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    what: str = "checkpoint",
) -> SanaTransformer:
    """A model of `config` holding `state` (our key names), without a random-init pass or a second copy."""
    with torch.device("meta"):
        model = SanaTransformer(config)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    check_state_dict(expected, state, f"{what} does not match the {config.family} config")
    dtype = dtype or _stored_dtype(state)
    state = {k: v.to(device=device or "cpu", dtype=dtype if v.is_floating_point() else v.dtype) for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    model.eval().requires_grad_(False)
    return model


def load_transformer(
    path: str | Path,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    *,
    config: "str | Path | dict[str, Any] | TransformerConfig | None" = None,
) -> SanaTransformer:
    """Load a Sana image or video transformer.

    path: a diffusers component folder (config.json + safetensors, sharded or not), a diffusers pipeline folder
    (its transformer/ is used), or an original checkpoint file (.pth holding 'state_dict', or .safetensors).
    config: for a bare checkpoint file, a variant name (see sana_stream.VARIANTS), a config.json path or a dict;
    when omitted, a config.json beside the file is used. Given with a folder, it replaces the folder's config.
    dtype: None keeps the stored dtype. The model comes back in eval mode with frozen parameters.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such model path: {path}")
    if path.is_dir():
        if (path / "model_index.json").is_file():
            if not (path / "transformer").is_dir():
                raise FileNotFoundError(f"pipeline folder {path} has no transformer/ component")
            path = path / "transformer"
        raw_config, state = read_component_folder(path)
        cfg = resolve_config(config if config is not None else raw_config)
    else:
        state = load_state_dict_file(path)
        if config is None:
            beside = path.parent / "config.json"
            if not beside.is_file():
                raise ValueError(
                    f"{path.name} is a bare checkpoint: pass config= (a variant name such as 'SanaVideo_2B_480p', "
                    "a config.json path or a dict)"
                )
            config = beside
        cfg = resolve_config(config)
    state = _strip_wrappers(state)
    state = from_diffusers(state) if _detect_format(state) == "diffusers" else from_original(state)
    return build_transformer(cfg, state, dtype, device, what=str(path))
