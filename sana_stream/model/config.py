"""Transformer configuration: the diffusers config.json fields of the Sana image and video transformers.

One dataclass describes both families. `family` is "image" (SanaTransformer2DModel: no RoPE, optional 2-D sincos
PE, GLUMBConv FFN) or "video" (SanaVideoTransformer3DModel: 3-D RoPE after ReLU, temporal conv in the FFN,
per-frame timesteps). An image is the T = 1 case of the same code.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IMAGE_CLASS = "SanaTransformer2DModel"
VIDEO_CLASS = "SanaVideoTransformer3DModel"

# Bookkeeping fields diffusers writes into config.json; they do not change the model.
_BOOKKEEPING = {"_class_name", "_diffusers_version", "_name_or_path", "_use_default_values"}


@dataclass
class TransformerConfig:
    family: str = "video"
    in_channels: int = 16
    out_channels: int | None = 16
    num_attention_heads: int = 20
    attention_head_dim: int = 112
    num_layers: int = 20
    num_cross_attention_heads: int = 20
    cross_attention_head_dim: int = 112
    cross_attention_dim: int = 2240
    caption_channels: int = 2304
    mlp_ratio: float = 3.0
    dropout: float = 0.0
    attention_bias: bool = False
    sample_size: int = 30
    patch_size: tuple[int, int, int] = (1, 2, 2)
    norm_elementwise_affine: bool = False
    norm_eps: float = 1e-6
    interpolation_scale: float | None = None
    guidance_embeds: bool = False
    guidance_embeds_scale: float = 0.1
    qk_norm: str | None = "rms_norm_across_heads"
    timestep_scale: float = 1.0
    rope_max_seq_len: int = 1024
    # Not in diffusers configs: the width of the per-latent-frame action vector of a world model (0: no actions).
    # Written to config.json only when set, so diffusers configs round-trip unchanged.
    action_dim: int = 0
    # Not in diffusers configs: a world model's camera field of view (degrees across the width); > 0 adds Plücker
    # maps of the camera motion its actions' last six entries describe (model/plucker.py). 0: none.
    action_plucker_fov: float = 0.0
    # Not in diffusers configs: a world model's copy gate. A zero-initialised projection of the final tokens gives
    # g in [0, 1] per latent pixel, and the velocity becomes (1 - g) v + g (x - previous) / sigma: a mix of the
    # network's velocity and the one that lands on the previous frame (forward's `previous=`), so that keeping a
    # pixel as it was costs the network nothing.
    copy_gate: bool = False
    # Not in diffusers configs: the linear-attention denominator epsilon. The reference blocks use 1e-8,
    # diffusers 1e-15; in fp32 both vanish next to any non-zero denominator.
    linear_attention_eps: float = 1e-8
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.patch_size, int):
            p = self.patch_size
            self.patch_size = (1, p, p)
        self.patch_size = tuple(int(p) for p in self.patch_size)
        if self.out_channels is None:
            self.out_channels = self.in_channels
        self.validate()

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    @property
    def is_video(self) -> bool:
        return self.family == "video"

    @property
    def ffn_hidden(self) -> int:
        return int(self.mlp_ratio * self.inner_dim)

    def validate(self) -> None:
        problems = []
        if self.family not in ("image", "video"):
            problems.append(f"family must be 'image' or 'video', got {self.family!r}")
        if len(self.patch_size) != 3 or any(p < 1 for p in self.patch_size):
            problems.append(f"patch_size must be 3 positive ints (t, h, w), got {self.patch_size}")
        elif self.family == "image" and self.patch_size[0] != 1:
            problems.append(f"image models have no temporal patch, got patch_size {self.patch_size}")
        if self.qk_norm not in (None, "rms_norm_across_heads"):
            problems.append(f"qk_norm {self.qk_norm!r} is not supported (None or 'rms_norm_across_heads')")
        if self.cross_attention_dim != self.inner_dim:
            problems.append(
                f"cross_attention_dim {self.cross_attention_dim} must equal heads*head_dim {self.inner_dim}"
            )
        if self.num_cross_attention_heads * self.cross_attention_head_dim != self.inner_dim:
            problems.append("num_cross_attention_heads * cross_attention_head_dim must equal the model width")
        if self.dropout != 0.0:
            problems.append(f"dropout {self.dropout} is not supported (inference and our training use 0.0)")
        if self.norm_elementwise_affine:
            problems.append("norm_elementwise_affine=True is not supported (Sana blocks use LayerNorm without affine)")
        if self.family == "video" and self.interpolation_scale is not None:
            problems.append("interpolation_scale (2-D sincos PE) applies to image models only")
        if self.family == "video" and self.attention_head_dim % 2:
            problems.append(f"RoPE needs an even attention_head_dim, got {self.attention_head_dim}")
        if not isinstance(self.action_dim, int) or self.action_dim < 0:
            problems.append(f"action_dim must be a non-negative int, got {self.action_dim!r}")
        elif self.action_dim and (self.family != "video" or self.patch_size[0] != 1):
            problems.append("action_dim needs a video model with a temporal patch of 1 (one action per latent frame)")
        if not isinstance(self.action_plucker_fov, (int, float)) or not 0 <= self.action_plucker_fov < 180:
            problems.append(f"action_plucker_fov must be a field of view in [0, 180) degrees, got "
                            f"{self.action_plucker_fov!r}")
        elif self.action_plucker_fov and isinstance(self.action_dim, int) and self.action_dim < 6:
            problems.append("action_plucker_fov needs actions that end in a 6-DoF camera delta (action_dim >= 6)")
        if not isinstance(self.copy_gate, bool):
            problems.append(f"copy_gate must be true or false, got {self.copy_gate!r}")
        elif self.copy_gate and (self.family != "video" or self.patch_size[0] != 1):
            problems.append("copy_gate needs a video model with a temporal patch of 1 (a previous frame per frame)")
        if problems:
            raise ValueError("invalid transformer config: " + "; ".join(problems))

    # ----- diffusers config.json <-> TransformerConfig -------------------------------------------------------

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "TransformerConfig":
        raw = dict(raw)
        class_name = raw.get("_class_name")
        family = raw.pop("family", None)
        if family is None:
            if class_name == VIDEO_CLASS:
                family = "video"
            elif class_name == IMAGE_CLASS:
                family = "image"
            elif class_name is not None:
                raise ValueError(
                    f"unsupported transformer class {class_name!r}: expected {IMAGE_CLASS} or {VIDEO_CLASS}"
                )
            else:
                ps = raw.get("patch_size", 1)
                family = "video" if isinstance(ps, (list, tuple)) or "rope_max_seq_len" in raw else "image"
        names = {f.name for f in dataclasses.fields(cls)} - {"family", "extra"}
        unknown = sorted(k for k in raw if k not in names and k not in _BOOKKEEPING)
        if unknown:
            raise ValueError(f"unknown transformer config field(s): {', '.join(unknown)}")
        kwargs = {k: v for k, v in raw.items() if k in names}
        if family == "image":
            # diffusers' SanaTransformer2DModel defaults differ from the video ones for fields a config may omit.
            kwargs.setdefault("patch_size", 1)
            kwargs.setdefault("qk_norm", None)
            kwargs.setdefault("mlp_ratio", 2.5)
            kwargs.setdefault("in_channels", 32)
            kwargs.setdefault("out_channels", kwargs["in_channels"])
            kwargs.setdefault("num_attention_heads", 70)
            kwargs.setdefault("attention_head_dim", 32)
            kwargs.setdefault("sample_size", 32)
        else:
            kwargs.setdefault("mlp_ratio", 2.5)
        return cls(family=family, **kwargs)

    def to_diffusers_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"_class_name": VIDEO_CLASS if self.is_video else IMAGE_CLASS}
        for f in dataclasses.fields(self):
            if f.name in ("family", "extra", "linear_attention_eps"):
                continue
            value = getattr(self, f.name)
            if f.name == "patch_size":
                value = list(value) if self.is_video else value[1]
            if self.is_video and f.name in ("interpolation_scale", "timestep_scale"):
                continue
            if not self.is_video and f.name == "rope_max_seq_len":
                continue
            if f.name in ("action_dim", "action_plucker_fov", "copy_gate") and not value:
                continue
            out[f.name] = value
        return out

    @classmethod
    def from_file(cls, path: str | Path) -> "TransformerConfig":
        with open(path) as fh:
            return cls.from_dict(json.load(fh))

    def replace(self, **changes: Any) -> "TransformerConfig":
        return dataclasses.replace(self, **changes)

    def num_parameters(self) -> int:
        """Parameter count computed from the shapes (no model needed)."""
        d, c_in, c_out = self.inner_dim, self.in_channels, self.out_channels
        pt, ph, pw = self.patch_size
        hid = self.ffn_hidden
        per_block = (
            6 * d  # scale_shift_table
            + 3 * d * d + (3 * d if self.attention_bias else 0) + d * d + d  # linear attention
            + 4 * d * d + 4 * d  # cross attention
            + (4 * d if self.qk_norm else 0)
            + d * 2 * hid + 2 * hid + 2 * hid * 9 + 2 * hid + hid * d  # Mix-FFN
            + (3 * d * d if self.is_video else 0)  # temporal conv
        )
        embed = c_in * pt * ph * pw * d + d + 256 * d + d + d * d + d + d * 6 * d + 6 * d
        if self.guidance_embeds:
            embed += 256 * d + d + d * d + d
        if self.action_dim:
            embed += self.action_dim * d + d + d * d + d
        if self.action_plucker_fov:
            embed += 6 * ph * pw * d + self.num_layers * d * d
        if self.copy_gate:
            embed += (d + 1) * ph * pw
        caption = self.caption_channels * d + d + d * d + d + d
        final = 2 * d + d * math.prod(self.patch_size) * c_out + math.prod(self.patch_size) * c_out
        return embed + caption + self.num_layers * per_block + final


def _video(**kw: Any) -> dict[str, Any]:
    base = dict(
        _class_name=VIDEO_CLASS, in_channels=16, out_channels=16, num_attention_heads=20, attention_head_dim=112,
        num_layers=20, num_cross_attention_heads=20, cross_attention_head_dim=112, cross_attention_dim=2240,
        caption_channels=2304, mlp_ratio=3.0, attention_bias=False, sample_size=30, patch_size=[1, 2, 2],
        norm_elementwise_affine=False, norm_eps=1e-6, qk_norm="rms_norm_across_heads", rope_max_seq_len=1024,
    )
    base.update(kw)
    return base


def _image(width: int, depth: int, **kw: Any) -> dict[str, Any]:
    cross_heads = 16 if width == 1152 else 20
    base = dict(
        _class_name=IMAGE_CLASS, in_channels=32, out_channels=32, num_attention_heads=width // 32,
        attention_head_dim=32, num_layers=depth, num_cross_attention_heads=cross_heads,
        cross_attention_head_dim=width // cross_heads, cross_attention_dim=width, caption_channels=2304,
        mlp_ratio=2.5, attention_bias=False, sample_size=32, patch_size=1, norm_elementwise_affine=False,
        norm_eps=1e-6, interpolation_scale=None, qk_norm=None,
    )
    base.update(kw)
    return base


# Configs of the reference releases (diffusers config.json form), by the names their checkpoints carry.
VARIANTS: dict[str, dict[str, Any]] = {
    "SanaVideo_2B_480p": _video(),
    "SanaVideo_2B_720p": _video(in_channels=128, out_channels=128, patch_size=[1, 1, 1], sample_size=22),
    "LongSANA_2B_480p": _video(),
    "Sana_600M_512px": _image(1152, 28, sample_size=16),
    "Sana_600M_1024px": _image(1152, 28),
    "Sana_1600M_512px": _image(2240, 20, sample_size=16),
    "Sana_1600M_1024px": _image(2240, 20),
    "Sana_1600M_2Kpx": _image(2240, 20, sample_size=64, interpolation_scale=1.0),
    "Sana_1600M_4Kpx": _image(2240, 20, sample_size=128, interpolation_scale=2.0),
    "Sana1.5_1600M_1024px": _image(2240, 20, qk_norm="rms_norm_across_heads"),
    "Sana1.5_4800M_1024px": _image(2240, 60, qk_norm="rms_norm_across_heads"),
    "SanaSprint_600M_1024px": _image(1152, 28, qk_norm="rms_norm_across_heads", guidance_embeds=True),
    "SanaSprint_1600M_1024px": _image(2240, 20, qk_norm="rms_norm_across_heads", guidance_embeds=True),
}


def resolve_config(config: "str | Path | dict[str, Any] | TransformerConfig") -> TransformerConfig:
    """A config given as a variant name, a config.json path, a dict, or a TransformerConfig."""
    if isinstance(config, TransformerConfig):
        return config
    if isinstance(config, dict):
        return TransformerConfig.from_dict(config)
    if isinstance(config, str) and config in VARIANTS:
        return TransformerConfig.from_dict(VARIANTS[config])
    path = Path(config)
    if path.is_dir():
        path = path / "config.json"
    if path.is_file():
        return TransformerConfig.from_file(path)
    raise ValueError(
        f"config {str(config)!r} is neither a known variant ({', '.join(VARIANTS)}) nor a config.json file"
    )
