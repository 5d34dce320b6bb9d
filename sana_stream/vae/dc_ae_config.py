"""DC-AE configuration: the fields of a diffusers AutoencoderDC config.json, checked up front.

Checking here, not deep inside module construction, lets a bad config fail with one message that names
every offending field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .dc_ae_blocks import ACTIVATIONS, BLOCK_TYPES, NORMS

CLASS_NAME = "AutoencoderDC"
# Bookkeeping fields diffusers writes into config.json; they do not change the model.
_BOOKKEEPING = {"_class_name", "_diffusers_version", "_name_or_path", "_use_default_values"}
# diffusers treats every value but "pixel_unshuffle" as a stride-2 conv; released configs spell it both ways.
DOWNSAMPLE_TYPES = ("pixel_unshuffle", "conv", "Conv")
UPSAMPLE_TYPES = ("interpolate", "pixel_shuffle")

# Fields that hold one value per stage; a single string means "the same for every stage".
_PER_STAGE = {
    "encoder": ("encoder_block_types", "encoder_layers_per_block", "encoder_qkv_multiscales"),
    "decoder": ("decoder_block_types", "decoder_layers_per_block", "decoder_qkv_multiscales",
                "decoder_norm_types", "decoder_act_fns"),
}


@dataclass
class DCAEConfig:
    """Defaults are diffusers' AutoencoderDC defaults; per-stage fields are tuples after construction."""

    in_channels: int = 3
    latent_channels: int = 32
    attention_head_dim: int = 32
    encoder_block_types: Any = "ResBlock"
    decoder_block_types: Any = "ResBlock"
    encoder_block_out_channels: Any = (128, 256, 512, 512, 1024, 1024)
    decoder_block_out_channels: Any = (128, 256, 512, 512, 1024, 1024)
    encoder_layers_per_block: Any = (2, 2, 2, 3, 3, 3)
    decoder_layers_per_block: Any = (3, 3, 3, 3, 3, 3)
    encoder_qkv_multiscales: Any = ((), (), (), (5,), (5,), (5,))
    decoder_qkv_multiscales: Any = ((), (), (), (5,), (5,), (5,))
    upsample_block_type: str = "pixel_shuffle"
    downsample_block_type: str = "pixel_unshuffle"
    decoder_norm_types: Any = "rms_norm"
    decoder_act_fns: Any = "silu"
    encoder_out_shortcut: bool = True
    decoder_in_shortcut: bool = True
    decoder_conv_act_fn: str = "relu"
    scaling_factor: float = 1.0

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DCAEConfig:
        """A config from a config.json dict; unknown fields or values raise a ValueError naming them."""
        class_name = raw.get("_class_name", CLASS_NAME)
        if class_name != CLASS_NAME:
            raise ValueError(f"config is for {class_name!r}, not {CLASS_NAME!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known - _BOOKKEEPING)
        if unknown:
            raise ValueError(f"unsupported DC-AE config field(s): {', '.join(unknown)}")
        return cls(**{k: v for k, v in raw.items() if k in known})

    def __post_init__(self) -> None:
        problems = self._normalise()
        problems = problems or self._problems()
        if problems:
            raise ValueError("unsupported DC-AE config: " + "; ".join(problems))

    @property
    def spatial_compression(self) -> int:
        return 2 ** (len(self.encoder_block_out_channels) - 1)

    def _normalise(self) -> list[str]:
        """Lists (JSON) → tuples; a single string per-stage value → that value for every stage."""
        problems = []
        for side, fields in _PER_STAGE.items():
            widths = getattr(self, f"{side}_block_out_channels")
            if not isinstance(widths, (list, tuple)):
                problems.append(f"{side}_block_out_channels must be a list")
                continue
            setattr(self, f"{side}_block_out_channels", tuple(widths))
            for name in fields:
                value = getattr(self, name)
                if isinstance(value, str):
                    value = (value,) * len(widths)
                if not isinstance(value, (list, tuple)) or (
                    name.endswith("multiscales") and not all(isinstance(v, (list, tuple)) for v in value)
                ):
                    problems.append(f"{name}={value!r} is not a per-stage list")
                    continue
                setattr(self, name, tuple(tuple(v) if isinstance(v, list) else v for v in value))
        return problems

    def _problems(self) -> list[str]:
        problems = []

        def check(ok: bool, message: str) -> None:
            if not ok:
                problems.append(message)

        def positive_int(value: Any) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and value > 0

        def one_of(name: str, value: Any, allowed: tuple[str, ...]) -> None:
            values = value if isinstance(value, tuple) else (value,)  # one value, or one per stage
            check(all(v in allowed for v in values), f"{name}={value!r} (supported: {', '.join(allowed)})")

        for name in ("in_channels", "latent_channels", "attention_head_dim"):
            check(positive_int(getattr(self, name)), f"{name}={getattr(self, name)!r} must be a positive int")
        one_of("downsample_block_type", self.downsample_block_type, DOWNSAMPLE_TYPES)
        one_of("upsample_block_type", self.upsample_block_type, UPSAMPLE_TYPES)
        one_of("decoder_conv_act_fn", self.decoder_conv_act_fn, tuple(ACTIVATIONS))
        one_of("decoder_norm_types", self.decoder_norm_types, NORMS)
        one_of("decoder_act_fns", self.decoder_act_fns, tuple(ACTIVATIONS))
        check(all(positive_int(k) and k % 2 for scales in self.encoder_qkv_multiscales + self.decoder_qkv_multiscales
                  for k in scales), "qkv_multiscales kernel sizes must be odd positive ints")
        check(len(self.encoder_block_out_channels) == len(self.decoder_block_out_channels),
              "encoder and decoder must have the same number of stages")
        for side, fields in _PER_STAGE.items():
            widths = getattr(self, f"{side}_block_out_channels")
            layers = getattr(self, f"{side}_layers_per_block")
            block_types = getattr(self, f"{side}_block_types")
            one_of(f"{side}_block_types", block_types, BLOCK_TYPES)
            for name in fields:
                check(len(getattr(self, name)) == len(widths), f"{name} must have one entry per stage ({len(widths)})")
            if len(widths) < 2 or not all(positive_int(w) for w in widths):
                problems.append(f"{side}_block_out_channels={widths} must be 2 or more positive ints")
                continue
            # A skipped middle stage would skip its ×2 resampling, breaking the spatial compression.
            check(all(isinstance(n, int) and n >= 0 for n in layers) and all(n > 0 for n in layers[1:]),
                  f"{side}_layers_per_block={layers}: only the first stage may have 0 layers")
            for width, block_type in zip(widths, block_types):
                check(block_type != "EfficientViTBlock" or width >= self.attention_head_dim,
                      f"{side} stage of width {width} is narrower than attention_head_dim")
            # The space-to-channel shortcuts average / repeat whole groups of channels.
            for narrow, wide in zip(widths, widths[1:]):
                check((4 * narrow) % wide == 0, f"{side}_block_out_channels: 4·{narrow} is not a multiple of {wide}")
            if positive_int(self.latent_channels):
                check(widths[-1] % self.latent_channels == 0,
                      f"{side}_block_out_channels[-1]={widths[-1]} is not a multiple of latent_channels")
        if self.downsample_block_type == "pixel_unshuffle":
            check(all(w % 4 == 0 for w in self.encoder_block_out_channels[1:]),
                  "pixel_unshuffle downsampling needs encoder widths divisible by 4")
        return problems
