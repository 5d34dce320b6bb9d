"""load_pipeline: a diffusers pipeline folder (model_index.json + component folders), read without diffusers."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..model import load_transformer
from ..text import TextEncoder
from ..vae import DCAE, WanVAE
from .family import PIPELINE_CLASSES, SCHEDULERS
from .pipeline import Pipeline

VAE_CLASSES = {"AutoencoderDC": DCAE, "AutoencoderKLWan": WanVAE}
COMPONENTS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")


def _read_json(path: Path) -> dict:
    try:
        with open(path) as fh:
            data = json.load(fh)
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read {path}: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return data


def _sampler_of(folder: Path) -> tuple[str, float | None]:
    config_path = folder / "scheduler" / "scheduler_config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"pipeline folder {folder} has no scheduler/scheduler_config.json")
    config = _read_json(config_path)
    name = config.get("_class_name")
    if name not in SCHEDULERS:
        raise ValueError(f"unsupported scheduler {name!r} in {config_path}; supported: {', '.join(SCHEDULERS)}")
    if name == "DPMSolverMultistepScheduler" and not config.get("use_flow_sigmas"):
        raise ValueError(f"{config_path}: only the flow-matching DPM-Solver (use_flow_sigmas=true) is supported")
    sampler, shift_field = SCHEDULERS[name]
    return sampler, (float(config.get(shift_field, 1.0)) if shift_field else None)


def load_pipeline(
    path: str | Path | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Pipeline:
    """A pipeline from a diffusers pipeline folder (SanaPipeline, SanaSprintPipeline, SanaVideoPipeline).

    dtype applies to the transformer and the text encoder; the VAE keeps its stored dtype (the references run
    their VAEs in fp32). path=None: the embedded demo model.
    """
    if path is None:
        raise FileNotFoundError(
            "the embedded demo model is not built yet: pass the path of a diffusers Sana pipeline folder"
        )
    folder = Path(path)
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise FileNotFoundError(f"{folder} is not a pipeline folder (no model_index.json)")
    index = _read_json(index_path)
    family = PIPELINE_CLASSES.get(index.get("_class_name"))
    if family is None:
        raise ValueError(f"unsupported pipeline {index.get('_class_name')!r}; supported: {', '.join(PIPELINE_CLASSES)}")
    missing = [c for c in COMPONENTS if not (folder / c).is_dir()]
    if missing:
        raise FileNotFoundError(f"pipeline folder {folder} is missing component(s): {', '.join(missing)}")
    vae_entry = index.get("vae")
    vae_class = VAE_CLASSES.get(vae_entry[1] if isinstance(vae_entry, list) and len(vae_entry) == 2 else None)
    if vae_class is None:
        raise ValueError(f"unsupported VAE {vae_entry!r} in {index_path}; supported: {', '.join(VAE_CLASSES)}")

    sampler, shift = _sampler_of(folder)
    transformer = load_transformer(folder / "transformer", dtype=dtype, device=device)
    vae = vae_class.from_pretrained(folder / "vae", device=device)
    text_encoder = TextEncoder.from_pretrained(folder / "text_encoder", folder / "tokenizer", dtype=dtype,
                                               device=device)
    return Pipeline(transformer, vae, text_encoder, family, sampler=sampler, shift=shift)
