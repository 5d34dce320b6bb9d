"""Building an autoencoder from a diffusers component folder: shared by the VAEs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from sana_stream.weights import check_state_dict, read_component_folder

M = TypeVar("M", bound=nn.Module)


def conv_layout(t: torch.Tensor) -> torch.Tensor:
    """Channels-last for conv weights (5-D: Conv3d, 4-D: Conv2d), other tensors unchanged.

    oneDNN convolutions run 1.2-2.3x faster channels-last on CPU, most in bf16.
    """
    if t.dim() == 5:
        return t.contiguous(memory_format=torch.channels_last_3d)
    if t.dim() == 4:
        return t.contiguous(memory_format=torch.channels_last)
    return t


def load_component(folder: str | Path, build: Callable[[dict[str, Any]], M], what: str,
                   dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> M:
    """`build(config.json dict)` filled with the folder's weights (or those of a pipeline folder's vae/).

    dtype None keeps the stored dtype (float16 becomes float32 on CPU, where float16 is ~100× slower).
    Returns the model in eval mode, frozen, with conv weights channels-last.
    """
    folder = Path(folder)
    if (folder / "model_index.json").is_file():
        folder = folder / "vae"
    raw_config, state = read_component_folder(folder)
    with torch.device("meta"):  # no random init: every parameter comes from the checkpoint
        model = build(raw_config)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    check_state_dict(expected, state, f"{what} weights in {folder}")
    device = torch.device(device or "cpu")
    stored = next(t.dtype for t in state.values() if t.is_floating_point())
    if dtype is None:
        dtype = torch.float32 if stored == torch.float16 and device.type == "cpu" else stored
    if dtype == torch.float16 and device.type == "cpu":
        raise ValueError("float16 is ~100x slower than float32 on CPU: use torch.float32 or torch.bfloat16")
    state = {
        k: conv_layout(v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype))
        for k, v in state.items()
    }
    model.load_state_dict(state, assign=True)
    return model.eval().requires_grad_(False)
