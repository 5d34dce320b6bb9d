"""Reading and writing weight files in the formats real checkpoints use.

- a diffusers component folder: config.json + diffusion_pytorch_model.safetensors, or shards listed in
  diffusion_pytorch_model.safetensors.index.json (or the .bin equivalents);
- a single .safetensors file;
- a .pth/.pt/.bin pickle, read with torch.load(weights_only=True) only: never arbitrary code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

WEIGHT_NAMES = ("diffusion_pytorch_model", "model")
_PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of one weight file. A pickle holding {'state_dict': ...} (the original releases) is unwrapped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weight file not found: {path}")
    if path.suffix == ".safetensors":
        return load_file(str(path))
    if path.suffix in _PICKLE_SUFFIXES:
        try:
            obj = _torch_load(path)
        except Exception as err:  # torch raises several types for non-tensor pickles
            raise ValueError(f"{path} is not a weights-only torch checkpoint: {err}") from None
        for key in ("state_dict", "model", "module"):
            if isinstance(obj, dict) and isinstance(obj.get(key), dict):
                obj = obj[key]
                break
        if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise ValueError(f"{path} does not hold a dict of tensors")
        return obj
    raise ValueError(f"unsupported weight file type {path.suffix!r}: expected .safetensors, .pth, .pt or .bin")


def _torch_load(path: Path):
    """torch.load, weights only; memory-mapped when the file is in torch's zip format (legacy pickles, which
    some original releases still use, cannot be mapped and are read whole)."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as err:
        if "mmap" not in str(err):
            raise
        return torch.load(str(path), map_location="cpu", weights_only=True)


def find_weight_files(folder: Path) -> list[Path]:
    """The weight files of a component folder: one file, or the shards its index lists."""
    for stem in WEIGHT_NAMES:
        for suffix in (".safetensors", ".bin"):
            single = folder / f"{stem}{suffix}"
            index = folder / f"{stem}{suffix}.index.json"
            if single.is_file():
                return [single]
            if index.is_file():
                with open(index) as fh:
                    weight_map = json.load(fh).get("weight_map")
                if not isinstance(weight_map, dict) or not weight_map:
                    raise ValueError(f"{index} has no weight_map")
                shards = [folder / name for name in dict.fromkeys(weight_map.values())]
                missing = [s.name for s in shards if not s.is_file()]
                if missing:
                    raise FileNotFoundError(f"{index} lists shard(s) that are missing: {', '.join(missing)}")
                return shards
    raise FileNotFoundError(
        f"no weights in {folder}: expected diffusion_pytorch_model.safetensors (or a sharded index)"
    )


def read_component_folder(folder: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(config dict, state dict) of a diffusers component folder."""
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{folder} has no config.json")
    with open(config_path) as fh:
        config = json.load(fh)
    state: dict[str, torch.Tensor] = {}
    for file in find_weight_files(folder):
        state.update(load_state_dict_file(file))
    return config, state


def write_component_folder(folder: str | Path, config: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
    """Write config.json + diffusion_pytorch_model.safetensors (what diffusers' save_pretrained writes)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "config.json", "w") as fh:
        json.dump(config, fh, indent=2, sort_keys=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()},
              str(folder / "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})


def check_state_dict(expected: dict[str, torch.Size], given: dict[str, torch.Tensor], what: str) -> None:
    """Raise a ValueError naming missing keys, unexpected keys and shape mismatches (first few of each)."""

    def names(keys: list[str]) -> str:
        shown = ", ".join(keys[:8])
        return shown + (f" … ({len(keys)} in all)" if len(keys) > 8 else "")

    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    mismatched = sorted(
        f"{k} (checkpoint {tuple(given[k].shape)}, model {tuple(expected[k])})"
        for k in set(expected) & set(given)
        if tuple(given[k].shape) != tuple(expected[k])
    )
    problems = []
    if missing:
        problems.append(f"missing keys: {names(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {names(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatch: {names(mismatched)}")
    if problems:
        raise ValueError(f"{what}: " + "; ".join(problems))
