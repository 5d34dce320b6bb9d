"""load_pipeline: a diffusers pipeline folder, or an original Sana release, read without diffusers.

An original release is three separate downloads: the transformer checkpoint (`checkpoints/<name>.pth`, a
'state_dict' with the original key names), the VAE (Wan2.1 for video: the Wan repo's `Wan2.1_VAE.pth`;
DC-AE for images, published in diffusers format only) and the text encoder (gemma-2-2b-it as transformers
saves it). None of them says which model it is, so the family, sampler and shift come from the variant.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..model import VARIANTS, TransformerConfig, load_transformer
from ..model.config import resolve_config
from ..text import TextEncoder
from ..vae import DCAE, WanVAE
from ..vae.frames import PerFrameVAE
from .family import PIPELINE_CLASSES, SCHEDULERS
from .pipeline import Pipeline

VAE_CLASSES = {"AutoencoderDC": DCAE, "AutoencoderKLWan": WanVAE}
DEMO_MODEL = Path(__file__).resolve().parent.parent / "assets" / "demo"
OUR_DEFAULTS = "sana_stream.json"
COMPONENTS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".safetensors")
ORIGINAL_WAN_VAE = "Wan2.1_VAE.pth"
TEXT_ENCODER_DIRS = ("text_encoder", "gemma-2-2b-it")  # diffusers-style name, then the HF repo's name
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")
# Inference shifts that differ from the family default (reference fact sheet §6: 0.6B 4.0, 4K 6.0).
VARIANT_SHIFTS = {"Sana_600M_1024px": 4.0, "Sana_1600M_4Kpx": 6.0}
# Release file names spell sizes in billions where our variant names use millions.
_SIZE_SPELLINGS = {"0.6b": "600m", "1.6b": "1600m", "3.2b": "3200m", "4.8b": "4800m"}


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
    *,
    variant: str | Path | dict[str, Any] | None = None,
    vae: str | Path | None = None,
    text_encoder: str | Path | None = None,
    vae_config: dict[str, Any] | None = None,
) -> Pipeline:
    """A pipeline from a diffusers pipeline folder or from an original Sana / SANA-Video release.

    path: one of
      - a diffusers pipeline folder (SanaPipeline, SanaSprintPipeline, SanaVideoPipeline: model_index.json);
      - an original transformer checkpoint file (.pth holding 'state_dict', or .safetensors);
      - a folder laid out like the original HF repos: `checkpoints/<name>.pth`, `vae/` (holding
        `Wan2.1_VAE.pth` or a diffusers VAE folder) and `text_encoder/` or `gemma-2-2b-it/`.
    For original releases:
      variant: a name in sana_stream.VARIANTS (e.g. "SanaVideo_2B_480p"), a transformer config.json path or a
        dict. Default: a config.json beside the checkpoint, else the variant named by the checkpoint's file name.
      vae: `Wan2.1_VAE.pth` (original Wan names) or a diffusers VAE folder (AutoencoderKLWan for video,
        AutoencoderDC for images). Default: the folder layout's `vae/`.
      text_encoder: a gemma-2-2b-it folder with its tokenizer inside it or in a `tokenizer/` beside it.
        Default: the folder layout's `text_encoder/` or `gemma-2-2b-it/`.
      vae_config: AutoencoderKLWan config.json fields for an original Wan VAE file that is not Wan2.1's.
    dtype applies to the transformer and the text encoder; the VAE keeps its stored dtype (the references run
    their VAEs in fp32). path=None: the embedded demo model.
    """
    if path is None:
        if not (DEMO_MODEL / "model_index.json").is_file():
            raise FileNotFoundError(
                f"the embedded demo model is not in this install ({DEMO_MODEL}): train it with "
                "`sana-stream train-demo`, or pass the path of a diffusers Sana pipeline folder or an original "
                "Sana checkpoint"
            )
        path = DEMO_MODEL
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such pipeline path: {path}")
    if path.is_dir() and (path / "model_index.json").is_file():
        given = [name for name, value in (("variant", variant), ("vae", vae), ("text_encoder", text_encoder),
                                          ("vae_config", vae_config)) if value is not None]
        if given:
            raise ValueError(f"{', '.join(given)} apply to original checkpoints; the diffusers pipeline folder "
                             f"{path} brings its own components")
        return _load_diffusers_pipeline(path, dtype, device)
    parts = locate_original_release(path, variant, vae, text_encoder, vae_config)
    return parts.load(dtype, device)


def _load_diffusers_pipeline(folder: Path, dtype: torch.dtype | None, device: torch.device | str | None) -> Pipeline:
    index_path = folder / "model_index.json"
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
    if family == "video" and isinstance(vae, DCAE):
        vae = PerFrameVAE(vae)  # an image autoencoder applied frame by frame (the embedded demo model)
    text_encoder = TextEncoder.from_pretrained(folder / "text_encoder", folder / "tokenizer", dtype=dtype,
                                               device=device)
    # Our own file beside model_index.json: per-model defaults (generate/stream) and whether it is causal.
    ours = _read_json(folder / OUR_DEFAULTS) if (folder / OUR_DEFAULTS).is_file() else {}
    return Pipeline(transformer, vae, text_encoder, family, sampler=sampler, shift=shift,
                    defaults=ours.get("generate"), stream_defaults=ours.get("stream"), causal=bool(ours.get("causal")))


# ----- original releases ------------------------------------------------------------------------------------


@dataclass
class OriginalParts:
    """Where each piece of an original release is: resolved (and checked to exist) before any weights load."""

    checkpoint: Path
    config: TransformerConfig
    variant: str | None  # the VARIANTS name, when the config came from one
    vae: Path
    vae_is_original: bool  # a Wan release file (original key names) rather than a diffusers folder
    vae_config: dict[str, Any] | None
    text_encoder: Path
    tokenizer: Path | None  # None: inside text_encoder

    @property
    def family(self) -> str:
        if self.config.is_video:
            return "video"
        return "sprint" if self.config.guidance_embeds else "image"

    def load(self, dtype: torch.dtype | None, device: torch.device | str | None) -> Pipeline:
        transformer = load_transformer(self.checkpoint, dtype=dtype, device=device, config=self.config)
        if self.vae_is_original:
            vae: WanVAE | DCAE = WanVAE.from_original(self.vae, config=self.vae_config, device=device)
        else:
            vae = _diffusers_vae_class(self.vae, self.family).from_pretrained(self.vae, device=device)
        latent_channels = vae.config.z_dim if isinstance(vae, WanVAE) else vae.latent_channels
        if latent_channels != self.config.in_channels:
            raise ValueError(f"the VAE at {self.vae} makes {latent_channels}-channel latents but the transformer "
                             f"{self.checkpoint.name} takes {self.config.in_channels}: pass the VAE it was trained "
                             "with as vae=")
        text = TextEncoder.from_pretrained(self.text_encoder, self.tokenizer, dtype=dtype, device=device)
        shift = VARIANT_SHIFTS.get(self.variant) if self.variant else None
        return Pipeline(transformer, vae, text, self.family, shift=shift)  # sampler: the family's default


def locate_original_release(
    path: str | Path,
    variant: str | Path | dict[str, Any] | None = None,
    vae: str | Path | None = None,
    text_encoder: str | Path | None = None,
    vae_config: dict[str, Any] | None = None,
) -> OriginalParts:
    """Find and check every piece of an original release (load_pipeline's arguments) without loading weights."""
    path = Path(path)
    checkpoint = _find_checkpoint(path) if path.is_dir() else path
    if checkpoint.suffix not in CHECKPOINT_SUFFIXES:
        raise ValueError(f"{checkpoint} is not a transformer checkpoint: expected a diffusers pipeline folder, "
                         f"a {'/'.join(CHECKPOINT_SUFFIXES)} file or a folder holding checkpoints/<name>.pth")
    # The release folder, where vae/ and the text encoder are looked for when not given.
    if path.is_dir():
        root = path
    else:
        root = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    config, variant_name = _transformer_config(checkpoint, variant)
    family = "video" if config.is_video else "image"

    if vae is None:
        vae_path = next((p for p in (root / "vae", root / ORIGINAL_WAN_VAE) if p.exists()), None)
        if vae_path is None:
            raise FileNotFoundError(f"no VAE for {checkpoint.name} (no {root / 'vae'}): pass vae= "
                                    f"({_vae_hint(family)})")
    else:
        vae_path = Path(vae)
        if not vae_path.exists():
            raise FileNotFoundError(f"VAE not found: {vae_path} (vae= takes {_vae_hint(family)})")
    vae_path, vae_is_original = _locate_vae(vae_path, family)
    if vae_config is not None and not vae_is_original:
        raise ValueError(f"vae_config applies to an original {ORIGINAL_WAN_VAE}; {vae_path} brings its config.json")

    if text_encoder is None:
        te_path = next((root / d for d in TEXT_ENCODER_DIRS if (root / d).is_dir()), None)
        if te_path is None:
            raise FileNotFoundError(
                f"no text encoder for {checkpoint.name} (no {' or '.join(str(root / d) for d in TEXT_ENCODER_DIRS)})"
                ": pass text_encoder= (a gemma-2-2b-it folder as saved by transformers)"
            )
    else:
        te_path = Path(text_encoder)
        if (te_path / "model_index.json").is_file():  # a diffusers pipeline folder: use its text encoder
            te_path = te_path / "text_encoder"
    if not (te_path / "config.json").is_file():
        raise FileNotFoundError(f"text encoder folder {te_path} has no config.json (text_encoder= takes a "
                                "gemma-2-2b-it folder as saved by transformers)")
    return OriginalParts(checkpoint, config, variant_name, vae_path, vae_is_original, vae_config, te_path,
                         _find_tokenizer(te_path))


def _find_checkpoint(folder: Path) -> Path:
    """The one transformer checkpoint in folder/checkpoints/ (the HF repos' layout) or in folder itself."""
    for where in (folder / "checkpoints", folder):
        found = sorted(p for p in where.glob("*")
                       if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES and p.name != ORIGINAL_WAN_VAE)
        if len(found) > 1:
            raise ValueError(f"{where} holds several checkpoints ({', '.join(p.name for p in found)}): pass the "
                             "one to load as path")
        if found:
            return found[0]
    raise FileNotFoundError(
        f"{folder} is neither a diffusers pipeline folder (no model_index.json) nor an original release (no "
        f"checkpoints/*.pth or *.safetensors): pass a pipeline folder or a transformer checkpoint file"
    )


def _transformer_config(checkpoint: Path, variant: str | Path | dict[str, Any] | None
                        ) -> tuple[TransformerConfig, str | None]:
    """(config, its VARIANTS name or None): from variant=, a config.json beside the file, or the file name."""
    if variant is None:
        if (checkpoint.parent / "config.json").is_file():
            return resolve_config(checkpoint.parent / "config.json"), None
        variant = guess_variant(checkpoint.stem)
        if variant is None:
            raise ValueError(
                f"cannot tell which model {checkpoint.name} is: pass variant= (one of {', '.join(VARIANTS)}; a "
                "transformer config.json path or a dict) or put its config.json beside it"
            )
    name = variant if isinstance(variant, str) and variant in VARIANTS else None
    return resolve_config(variant), name


def guess_variant(stem: str) -> str | None:
    """The VARIANTS name a release file name starts with, ignoring case, separators and size spelling:
    `SANA_Video_2B_480p` -> SanaVideo_2B_480p, `Sana_Sprint_1.6B_1024px` -> SanaSprint_1600M_1024px,
    `Sana_1600M_1024px_BF16` -> Sana_1600M_1024px. None when no name fits."""

    def normal(name: str) -> str:
        name = name.lower()
        for billions, millions in _SIZE_SPELLINGS.items():
            name = name.replace(billions, millions)
        return re.sub(r"[^a-z0-9.]", "", name)

    key = normal(stem)
    fits = [v for v in VARIANTS if key.startswith(normal(v))]
    return max(fits, key=lambda v: len(normal(v))) if fits else None


def _vae_hint(family: str) -> str:
    if family == "video":
        return f"the original {ORIGINAL_WAN_VAE} or a diffusers AutoencoderKLWan folder"
    return "a diffusers AutoencoderDC folder, e.g. dc-ae-f32c32-sana-1.1-diffusers"


def _locate_vae(path: Path, family: str) -> tuple[Path, bool]:
    """(weights location, is an original Wan file). A folder is a diffusers VAE (config.json), a diffusers
    pipeline folder (its vae/ is used), or the HF repos' vae/ holding Wan2.1_VAE.pth."""
    if path.is_dir() and (path / "model_index.json").is_file():
        path = path / "vae"
    if path.is_dir() and not (path / "config.json").is_file():
        originals = sorted(p for p in path.glob("*") if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES)
        if (path / ORIGINAL_WAN_VAE).is_file():
            path = path / ORIGINAL_WAN_VAE
        elif len(originals) == 1:
            path = originals[0]
        else:
            raise FileNotFoundError(f"VAE folder {path} holds neither a config.json (diffusers) nor one "
                                    f"{ORIGINAL_WAN_VAE}: pass vae= ({_vae_hint(family)})")
    if path.is_file():
        if family != "video":
            raise ValueError(f"{path} is a VAE weight file, but the DC-AE of image models is published in diffusers "
                             f"format only: pass vae= ({_vae_hint(family)})")
        return path, True
    return path, False


def _diffusers_vae_class(folder: Path, family: str) -> type[WanVAE] | type[DCAE]:
    name = _read_json(folder / "config.json").get("_class_name")
    wanted = "AutoencoderKLWan" if family == "video" else "AutoencoderDC"
    if name != wanted:
        raise ValueError(f"the VAE in {folder} is {name!r}, but a {family} model needs {wanted}: pass vae= "
                         f"({_vae_hint(family)})")
    return VAE_CLASSES[wanted]


def _find_tokenizer(text_encoder: Path) -> Path | None:
    """None when the tokenizer is saved inside the text encoder folder (gemma-2-2b-it as on HF), else the
    diffusers-style tokenizer/ beside it."""
    if any((text_encoder / f).is_file() for f in TOKENIZER_FILES):
        return None
    beside = text_encoder.parent / "tokenizer"
    if beside.is_dir():
        return beside
    raise FileNotFoundError(f"no tokenizer for the text encoder {text_encoder}: expected tokenizer files inside it "
                            f"({', '.join(TOKENIZER_FILES)}) or a tokenizer/ folder beside it")
