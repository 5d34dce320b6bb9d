"""The original Wan2.1 VAE release (`Wan2.1_VAE.pth`, the Wan repo's module names) read into our `WanVAE`.

The original file is a plain state dict (no 'state_dict' wrapper). Its names differ from ours (= diffusers'):

- `conv1` / `conv2` (top level) are the quant convs: `quant_conv` / `post_quant_conv`;
- `encoder.conv1` / `decoder.conv1` are `conv_in`; `head.0` / `head.2` are `norm_out` / `conv_out`
  (head.1 is a parameterless SiLU);
- `middle.0` / `middle.1` / `middle.2` are `mid_block.resnets.0` / `attentions.0` / `resnets.1`;
- a residual block is one Sequential `residual.{0: norm1, 2: conv1, 3: norm2, 6: conv2}` (the gaps are SiLU
  and dropout) plus `shortcut` (our `conv_shortcut`);
- `encoder.downsamples.N` is one flat list, as ours `down_blocks.N`;
- `decoder.upsamples.N` is one flat list too, while ours groups it per stage: each stage has
  num_res_blocks + 1 residual blocks, then (except the last stage) one resampler. The flat index is mapped
  through that layout, so any Wan2.1-shaped config converts, not only the released one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from sana_stream.vae.loading import conv_layout
from sana_stream.vae.wan import WanVAE, WanVAEConfig
from sana_stream.weights import check_state_dict, load_state_dict_file

_QUANT = {"conv1.": "quant_conv.", "conv2.": "post_quant_conv."}
_RESIDUAL = (("residual.0.", "norm1."), ("residual.2.", "conv1."), ("residual.3.", "norm2."),
             ("residual.6.", "conv2."), ("shortcut.", "conv_shortcut."))
_MIDDLE = ("mid_block.resnets.0.", "mid_block.attentions.0.", "mid_block.resnets.1.")
_HEAD = {0: "norm_out.", 2: "conv_out."}
_INDEXED = re.compile(r"(middle|head|downsamples|upsamples)\.(\d+)\.(.+)")


def decoder_slots(num_res_blocks: int, num_stages: int) -> list[str]:
    """Our name prefix for each position of the original flat `decoder.upsamples` list."""
    slots = []
    for stage in range(num_stages):
        slots += [f"up_blocks.{stage}.resnets.{j}." for j in range(num_res_blocks + 1)]
        if stage < num_stages - 1:
            slots.append(f"up_blocks.{stage}.upsamplers.0.")
    return slots


def _rename(key: str, up_slots: list[str]) -> str:
    """One original key -> ours; a key of no known shape comes back unchanged (the load check names it)."""
    if key[:6] in _QUANT:
        return _QUANT[key[:6]] + key[6:]
    half, _, rest = key.partition(".")
    if half not in ("encoder", "decoder"):
        return key
    if rest.startswith("conv1."):
        return f"{half}.conv_in.{rest[6:]}"
    m = _INDEXED.fullmatch(rest)
    if m is None:
        return key
    group, index, leaf = m.group(1), int(m.group(2)), m.group(3)
    if group == "head":
        prefix = _HEAD.get(index)
    elif group == "middle":
        prefix = _MIDDLE[index] if index < len(_MIDDLE) else None
    elif group == "downsamples":
        prefix = f"down_blocks.{index}."
    else:
        prefix = up_slots[index] if index < len(up_slots) else None
    if prefix is None:
        return key
    for old, new in _RESIDUAL:
        if leaf.startswith(old):
            leaf = new + leaf[len(old):]
            break
    return f"{half}.{prefix}{leaf}"


def original_to_ours(state: dict[str, torch.Tensor], config: WanVAEConfig) -> dict[str, torch.Tensor]:
    """Rename an original Wan2.1 VAE state dict to our (diffusers) names; tensors are not copied."""
    up_slots = decoder_slots(config.num_res_blocks, len(config.dim_mult))
    return {_rename(key, up_slots): tensor for key, tensor in state.items()}


def resolve_wan_config(config: WanVAEConfig | dict[str, Any] | None) -> WanVAEConfig:
    """None: the Wan2.1 release's config; a dict: AutoencoderKLWan config.json fields."""
    if config is None or isinstance(config, dict):
        return WanVAEConfig.from_dict(config or {})
    if isinstance(config, WanVAEConfig):
        return config
    raise ValueError(
        f"config must be a WanVAEConfig, a dict of config.json fields or None, got {type(config).__name__}"
    )


def load_original_wan(
    source: str | Path | dict[str, torch.Tensor],
    config: WanVAEConfig | dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> WanVAE:
    """A WanVAE from the original release's weights: a file (`Wan2.1_VAE.pth`, read weights-only, or a
    .safetensors) or an already-loaded state dict. Returns the model in eval mode, frozen, channels-last."""
    cfg = resolve_wan_config(config)
    if isinstance(source, dict):
        state, what = source, "Wan VAE state dict"
    else:
        state, what = load_state_dict_file(source), f"Wan VAE weights in {source}"
    state = original_to_ours(state, cfg)
    with torch.device("meta"):  # no random init: every parameter comes from the checkpoint
        model = WanVAE(cfg)
    try:
        check_state_dict({k: v.shape for k, v in model.state_dict().items()}, state, what)
    except ValueError as err:
        raise ValueError(f"{err} (not an original Wan2.1 VAE of this config? pass its config as a dict of "
                         "AutoencoderKLWan fields)") from None
    device = torch.device(device or "cpu")
    if dtype is None:  # the release is fp32, as the reference runs it; fp16 convs are ~100x slower on CPU
        stored = next(t.dtype for t in state.values() if t.is_floating_point())
        dtype = torch.float32 if stored == torch.float16 and device.type == "cpu" else stored
    elif dtype == torch.float16 and device.type == "cpu":
        raise ValueError("float16 is ~100x slower than float32 on CPU: use torch.float32 or torch.bfloat16")
    model.load_state_dict({k: conv_layout(v.to(device=device, dtype=dtype)) for k, v in state.items()}, assign=True)
    return model.eval().requires_grad_(False)
