"""DC-AE against diffusers' AutoencoderDC on tiny random models saved in the real diffusers format."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import AutoencoderDC
from safetensors.torch import load_file, save_file

from sana_stream.vae import DCAE
from sana_stream.vae.dc_ae_tiling import run_tiled, spans
from tests.tiny_pipelines import TINY_DCAE

# The block structure of dc-ae-f32c32-sana-1.1 (ResBlock stages, then EfficientViT stages with 5×5
# multi-scale attention, stride-2 conv down, interpolate up, RMSNorm, SiLU) at tiny widths, 4 stages, with
# two blocks in the attention stages (as the real 3) so attention feeds attention.
TINY_SANA = dict(TINY_DCAE, encoder_layers_per_block=[1, 1, 1, 2], decoder_layers_per_block=[1, 1, 2, 2])
# The other released layout (dc-ae-f32c32-in/mix): no full-resolution stage, pixel (un)shuffle,
# BatchNorm + ReLU in the decoder's ResBlocks, attention without multi-scale copies.
TINY_MIX = dict(
    in_channels=3, latent_channels=8, attention_head_dim=8,
    encoder_block_types=["ResBlock", "ResBlock", "EfficientViTBlock"],
    decoder_block_types=["ResBlock", "ResBlock", "EfficientViTBlock"],
    encoder_block_out_channels=[8, 16, 32], decoder_block_out_channels=[8, 16, 32],
    encoder_layers_per_block=[0, 1, 2], decoder_layers_per_block=[0, 2, 2],
    encoder_qkv_multiscales=[[], [], []], decoder_qkv_multiscales=[[], [], []],
    downsample_block_type="pixel_unshuffle", upsample_block_type="pixel_shuffle",
    decoder_norm_types=["batch_norm", "batch_norm", "rms_norm"], decoder_act_fns=["relu", "relu", "silu"],
    decoder_conv_act_fn="silu", scaling_factor=0.5,
)
CONFIGS = {"sana": TINY_SANA, "mix": TINY_MIX}


def tiny_reference(config: dict, seed: int = 0) -> AutoencoderDC:
    torch.manual_seed(seed)
    model = AutoencoderDC(**config).eval()
    # Stock init leaves norms at 1/0 and BatchNorm statistics at 0/1; perturb everything so every tensor matters.
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                tensor.add_(0.1 * torch.randn(tensor.shape, generator=gen))
                if name.endswith("running_var"):
                    tensor.abs_()
    return model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """name → (diffusers reference, folder holding it as save_pretrained writes it)."""
    out = {}
    for name, config in CONFIGS.items():
        folder = tmp_path_factory.mktemp(f"dcae_{name}")
        reference = tiny_reference(config)
        reference.save_pretrained(folder)
        out[name] = reference, folder
    return out


@pytest.fixture(scope="module")
def sana(saved):
    reference, folder = saved["sana"]
    return reference, DCAE.from_pretrained(folder)


def images(batch: int, height: int, width: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def latents(batch: int, height: int, width: int, seed: int = 2) -> torch.Tensor:
    return torch.randn(batch, 8, height, width, generator=torch.Generator().manual_seed(seed))


# ----- parity with diffusers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("size", [(32, 48), (16, 16)])  # 16²: diffusers' small-map (quadratic) attention path
def test_encode_decode_match_diffusers(saved, name, size):
    reference, folder = saved[name]
    model = DCAE.from_pretrained(folder)
    x = images(2, *size)
    z = latents(2, size[0] // 8, size[1] // 8)
    with torch.no_grad():
        want_latent = reference.encode(x).latent
        want_image = reference.decode(z).sample
    got_latent, got_image = model.encode(x), model.decode(z, tiled=False)
    assert got_latent.shape == want_latent.shape and got_image.shape == want_image.shape
    # Decoded images are O(1): 1e-5 absolute. The random encoders reach |latent| ~ 20, where fp32 rounding
    # alone is ~2e-6, so the latent bound is 1e-5 relative to its largest value.
    assert (got_image - want_image).abs().max() <= 1e-5
    assert (got_latent - want_latent).abs().max() <= 1e-5 * want_latent.abs().max().clamp(min=1)


def test_loaded_model_properties(sana):
    reference, model = sana
    assert model.scaling_factor == reference.config.scaling_factor == 0.41407
    assert model.spatial_compression == reference.spatial_compression_ratio == 8
    assert model.latent_channels == 8 and model.dtype == torch.float32
    assert not any(p.requires_grad for p in model.parameters()) and not model.training


def test_pipeline_folder_uses_its_vae(saved, tmp_path):
    reference, folder = saved["sana"]
    reference.save_pretrained(tmp_path / "vae")
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "SanaPipeline"}))
    z = latents(1, 3, 4)
    assert torch.equal(DCAE.from_pretrained(tmp_path).decode(z), DCAE.from_pretrained(folder).decode(z))


def test_bfloat16_runs_close_to_float32(saved):
    _, folder = saved["sana"]
    full, half = DCAE.from_pretrained(folder), DCAE.from_pretrained(folder, dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16
    # (Smaller images amplify bf16 rounding in these random nets: diffusers' own bf16 is 14% off at 16 × 24.)
    x, z = images(1, 32, 48), latents(1, 4, 5)
    for f32, bf16 in ((full.encode(x), half.encode(x)), (full.decode(z), half.decode(z, tiled=False))):
        assert bf16.dtype == torch.bfloat16
        assert (bf16.float() - f32).abs().mean() <= 0.02 * f32.abs().mean()
    # Tiling is exact in bf16 too, up to the rounding of a different conv blocking.
    half.tile_size = 2
    assert (half.decode(z, tiled=True).float() - half.decode(z, tiled=False).float()).abs().max() <= 0.05


def test_float16_on_cpu_is_refused(saved):
    with pytest.raises(ValueError, match="float16"):
        DCAE.from_pretrained(saved["sana"][1], dtype=torch.float16)


# ----- tiled decoding ----------------------------------------------------------------------------------------------


def border_band(model: DCAE, tile_size: int, latent_hw: tuple[int, int]) -> torch.Tensor:
    """(H, W) bool mask of the image pixels within one global-part pixel of a border between decode tiles."""
    decoder = model.decoder
    tile, width = tile_size * decoder.global_scale, decoder.local_scale
    masks = []
    for length in latent_hw:
        pixels = torch.arange(length * decoder.global_scale * decoder.local_scale)
        near = torch.zeros(len(pixels), dtype=torch.bool)
        for _, end in spans(length * decoder.global_scale, tile)[:-1]:
            near |= (pixels - end * decoder.local_scale).abs() < width
        masks.append(near)
    return masks[0][:, None] | masks[1][None, :]


def count_calls(module: torch.nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("name, tile_size, latent_hw", [("sana", 3, (7, 10)), ("mix", 6, (14, 20))])
def test_tiled_decode_is_exact_and_seamless(saved, name, tile_size, latent_hw):
    model = DCAE.from_pretrained(saved[name][1])
    model.tile_size = tile_size  # 24-pixel tiles in both models, 3 × 4 of them, of uneven sizes
    z = latents(1, *latent_hw)
    calls = count_calls(model.decoder.conv_out)
    untiled = model.decode(z, tiled=False)
    assert calls[0] == 1
    tiled = model.decode(z)  # larger than one tile: tiles on its own
    assert calls[0] == 1 + 12
    # The bound: the local part is convolutions only and every tile reads its full context margin, so the only
    # difference is floating-point reassociation (observed: exactly 0 on this CPU).
    error = (tiled - untiled).abs().amax(dim=(0, 1))
    assert error.max() <= 1e-5
    band = border_band(model, tile_size, latent_hw)
    assert error[band].mean() <= 1.5 * error[~band].mean() + 1e-7


def test_context_margin_is_tight_and_seams_are_caught(sana):
    """One pixel less context than computed breaks exactness, right at the tile borders: the margin is not
    padded for safety, and the seam criterion above does detect seams."""
    _, model = sana
    decoder, tile = model.decoder, 2 * model.decoder.global_scale
    with torch.no_grad():
        features = decoder.global_part(latents(1, 6, 6).contiguous(memory_format=torch.channels_last))
        untiled = decoder.local_part(features)
        short = run_tiled(decoder.local_part, features, tile, decoder.context_margin - 1, decoder.local_scale)
    error = (short - untiled).abs().amax(dim=(0, 1))
    band = border_band(model, 2, (6, 6))
    assert error.max() > 1e-4
    assert error[band].mean() > 1.5 * error[~band].mean() + 1e-7


def test_spans_cover_evenly():
    assert spans(10, 4) == [(0, 3), (3, 6), (6, 10)]
    assert spans(8, 4) == [(0, 4), (4, 8)]
    assert spans(3, 4) == [(0, 3)]


# ----- bad inputs --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, tensor, message",
    [
        ("decode", torch.randn(1, 4, 3, 3), r"\(B, 8, H, W\)"),  # wrong latent channels
        ("decode", torch.randn(8, 3, 3), r"\(B, 8, H, W\)"),  # wrong rank
        ("decode", torch.zeros(1, 8, 3, 3, dtype=torch.long), "floating point"),
        ("encode", torch.randn(1, 1, 16, 16), r"\(B, 3, H, W\)"),
        ("encode", torch.randn(1, 3, 1, 16, 16), r"\(B, 3, H, W\)"),
        ("encode", torch.randn(1, 3, 20, 16), "multiple of the compression 8"),
    ],
)
def test_bad_tensors_are_refused(sana, method, tensor, message):
    with pytest.raises(ValueError, match=message):
        getattr(sana[1], method)(tensor)


def test_missing_config_json(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        DCAE.from_pretrained(tmp_path)


@pytest.fixture
def copy_of_sana(saved, tmp_path):
    """A writable copy of the tiny sana folder: (folder, config dict, state dict)."""
    _, folder = saved["sana"]
    config = json.loads((folder / "config.json").read_text())
    state = load_file(folder / "diffusion_pytorch_model.safetensors")
    return tmp_path, config, state


def write(folder, config, state):
    (folder / "config.json").write_text(json.dumps(config))
    save_file(state, folder / "diffusion_pytorch_model.safetensors")
    return folder


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.pop("decoder.conv_in.bias"), "missing keys: decoder.conv_in.bias"),
        (lambda s: s.update(extra=torch.zeros(1)), "unexpected keys: extra"),
        (lambda s: s.update({"encoder.conv_out.bias": torch.zeros(3)}), r"shape mismatch: encoder.conv_out.bias"),
    ],
)
def test_weights_not_matching_config(copy_of_sana, edit, message):
    folder, config, state = copy_of_sana
    edit(state)
    with pytest.raises(ValueError, match=message):
        DCAE.from_pretrained(write(folder, config, state))


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("decoder_tile_size", 4, "unsupported DC-AE config field.*decoder_tile_size"),
        ("upsample_block_type", "bicubic", "upsample_block_type='bicubic'"),
        ("decoder_norm_types", "layer_norm", "decoder_norm_types"),
        ("encoder_block_types", ["ResBlock", "ResBlock", "SwinBlock", "EfficientViTBlock"], "SwinBlock"),
        ("decoder_act_fns", "relu6", "relu6"),
        ("encoder_layers_per_block", [1, 1, 2], "one entry per stage"),
        ("decoder_layers_per_block", [1, 0, 2, 2], "only the first stage may have 0 layers"),
        ("latent_channels", 12, "not a multiple of latent_channels"),
        ("_class_name", "AutoencoderKL", "AutoencoderKL"),
    ],
)
def test_bad_config_values(copy_of_sana, field, value, message):
    folder, config, state = copy_of_sana
    with pytest.raises(ValueError, match=message):
        DCAE.from_pretrained(write(folder, {**config, field: value}, state))
