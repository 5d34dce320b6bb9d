"""Original releases: the Wan repo's `Wan2.1_VAE.pth` and the Sana `checkpoints/*.pth` layouts.

Tiny random diffusers models are written by hand into the original key names (the inverse mappings below and
tests.tiny_transformers.to_original), saved as the releases save them, and must load to diffusers' numbers.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import sana_stream as ss
from sana_stream.pipeline.loading import guess_variant, locate_original_release
from sana_stream.vae import WanVAE
from tests.tiny_pipelines import TINY_WAN, image_pipeline, save, video_pipeline
from tests.tiny_transformers import _perturb, to_original

TOL = 1e-5
_RESIDUAL_PARTS = {"norm1.": "residual.0.", "conv1.": "residual.2.", "norm2.": "residual.3.",
                   "conv2.": "residual.6.", "conv_shortcut.": "shortcut."}


def _residual(prefix: str, rest: str) -> str:
    for ours, theirs in _RESIDUAL_PARTS.items():
        if rest.startswith(ours):
            return prefix + theirs + rest[len(ours):]
    raise KeyError(rest)


def wan_to_original(state: dict[str, torch.Tensor], num_res_blocks: int) -> dict[str, torch.Tensor]:
    """A diffusers AutoencoderKLWan state dict in the Wan repo's names, written out by hand.

    The original decoder is one flat list: per stage num_res_blocks + 1 residual blocks, then one resampler.
    """
    per_stage = num_res_blocks + 2
    out = {}
    for key, value in state.items():
        half, _, rest = key.partition(".")
        if key.startswith("quant_conv."):
            new = "conv1." + key[len("quant_conv."):]
        elif key.startswith("post_quant_conv."):
            new = "conv2." + key[len("post_quant_conv."):]
        elif rest.startswith("conv_in."):
            new = f"{half}.conv1.{rest[len('conv_in.'):]}"
        elif rest.startswith("norm_out."):
            new = f"{half}.head.0.{rest[len('norm_out.'):]}"
        elif rest.startswith("conv_out."):
            new = f"{half}.head.2.{rest[len('conv_out.'):]}"
        elif rest.startswith("mid_block.attentions.0."):
            new = f"{half}.middle.1.{rest[len('mid_block.attentions.0.'):]}"
        elif rest.startswith("mid_block.resnets."):
            i, inner = rest[len("mid_block.resnets."):].split(".", 1)
            new = _residual(f"{half}.middle.{2 * int(i)}.", inner)
        elif rest.startswith("down_blocks."):
            i, inner = rest[len("down_blocks."):].split(".", 1)
            new = f"encoder.downsamples.{i}.{inner}" if inner.startswith(("resample.", "time_conv.")) \
                else _residual(f"encoder.downsamples.{i}.", inner)
        elif rest.startswith("up_blocks."):
            stage, kind, j, inner = rest[len("up_blocks."):].split(".", 3)
            if kind == "upsamplers":
                new = f"decoder.upsamples.{int(stage) * per_stage + num_res_blocks + 1}.{inner}"
            else:
                new = _residual(f"decoder.upsamples.{int(stage) * per_stage + int(j)}.", inner)
        else:
            raise KeyError(key)
        out[new] = value
    return out


class NotATensor:
    """Any pickled object outside torch's weights-only allow-list (the training configs some files carry)."""


@pytest.fixture(scope="module")
def video_ref():
    ref = video_pipeline()
    _perturb(ref.vae, seed=11)  # stock init leaves norms at 1 and biases at 0: make every VAE weight matter
    return ref


@pytest.fixture(scope="module")
def release(video_ref, tmp_path_factory):
    """(diffusers pipeline folder, original-layout folder) holding the same tiny video model."""
    root = tmp_path_factory.mktemp("release")
    diffusers_folder = save(video_ref, root / "diffusers")
    original = root / "SANA-Video_tiny"
    (original / "checkpoints").mkdir(parents=True)
    (original / "vae").mkdir()
    torch.save({"state_dict": to_original(video_ref.transformer.state_dict()), "step": 100},
               original / "checkpoints" / "SANA_Video_tiny.pth")
    torch.save(wan_to_original(video_ref.vae.state_dict(), TINY_WAN["num_res_blocks"]),
               original / "vae" / "Wan2.1_VAE.pth")
    # gemma-2-2b-it as on HF: the tokenizer files sit inside the model folder
    video_ref.text_encoder.save_pretrained(original / "gemma-2-2b-it")
    video_ref.tokenizer.save_pretrained(original / "gemma-2-2b-it")
    return diffusers_folder, original


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    ours, theirs = a.state_dict(), b.state_dict()
    return set(ours) == set(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)


def transformer_config(folder: Path) -> dict:
    return json.loads((folder / "transformer" / "config.json").read_text())


def test_original_wan_vae_matches_diffusers(video_ref, release):
    reference, path = video_ref.vae, release[1] / "vae" / "Wan2.1_VAE.pth"
    vae = WanVAE.from_original(path, config=TINY_WAN)
    assert same_weights(vae, reference)
    latent = torch.randn(1, 4, 3, 2, 2, generator=torch.Generator().manual_seed(3))
    video = torch.rand(1, 3, 5, 16, 16, generator=torch.Generator().manual_seed(4)) * 2 - 1
    with torch.no_grad():
        want_pixels = reference.decode(latent).sample
        want_latent = reference.encode(video).latent_dist.mode()
    assert (vae.decode(latent) - want_pixels).abs().max() <= TOL
    assert (vae.encode(video) - want_latent).abs().max() <= TOL
    # a state dict works as well as a file
    assert same_weights(WanVAE.from_original(torch.load(path, weights_only=True), config=TINY_WAN), reference)


def test_original_wan_vae_names_what_does_not_fit(release):
    path = release[1] / "vae" / "Wan2.1_VAE.pth"
    with pytest.raises(ValueError, match="shape mismatch.*pass its config"):
        WanVAE.from_original(path)  # the tiny file read with the Wan2.1 release's config
    state = torch.load(path, weights_only=True)
    state["decoder.upsamples.99.residual.0.gamma"] = torch.ones(1)
    with pytest.raises(ValueError, match="unexpected keys: decoder.upsamples.99"):
        WanVAE.from_original(state, config=TINY_WAN)


def _pixels(pipe: ss.Pipeline, latents: torch.Tensor) -> torch.Tensor:
    return pipe.generate_pixels("a boat drifting on a lake", negative_prompt="jitter", num_frames=5,
                                latents=latents, height=32, width=32, num_inference_steps=2, guidance_scale=6.0)


def test_original_video_release_matches_diffusers_folder(release):
    diffusers_folder, original = release
    latents = torch.randn(1, 4, 2, 4, 4, generator=torch.Generator().manual_seed(2))
    reference = ss.load_pipeline(diffusers_folder)
    want = _pixels(reference, latents)
    config = transformer_config(diffusers_folder)

    # the HF repo layout: checkpoints/*.pth, vae/Wan2.1_VAE.pth, gemma-2-2b-it/ with its tokenizer inside
    pipe = ss.load_pipeline(original, variant=config, vae_config=TINY_WAN)
    assert pipe.family == "video" and pipe.defaults.sampler == "flow_dpm_solver" and pipe.defaults.shift == 8.0
    assert (_pixels(pipe, latents) - want).abs().max() <= TOL

    # separate pieces: the checkpoint file with a config.json path, a diffusers VAE folder, and a diffusers
    # text_encoder/ whose tokenizer/ sits beside it. Same weights as the reference, so the same pixels.
    (original.parent / "transformer_config.json").write_text(json.dumps(config))
    pipe = ss.load_pipeline(original / "checkpoints" / "SANA_Video_tiny.pth",
                            variant=original.parent / "transformer_config.json", vae=diffusers_folder / "vae",
                            text_encoder=diffusers_folder / "text_encoder")
    assert same_weights(pipe.transformer, reference.transformer) and same_weights(pipe.vae, reference.vae)
    assert same_weights(pipe.text_encoder.model, reference.text_encoder.model)
    assert pipe.text_encoder.tokenizer.get_vocab() == reference.text_encoder.tokenizer.get_vocab()


def test_original_image_release_matches_diffusers_folder(tmp_path):
    ref = image_pipeline("image")
    diffusers_folder = save(ref, tmp_path / "diffusers")
    checkpoint = tmp_path / "Sana_tiny.pth"
    torch.save({"state_dict": to_original(ref.transformer.state_dict())}, checkpoint)
    pipe = ss.load_pipeline(checkpoint, variant=transformer_config(diffusers_folder), vae=diffusers_folder / "vae",
                            text_encoder=diffusers_folder / "text_encoder")
    assert pipe.family == "image" and pipe.defaults.shift == 3.0
    latents = torch.randn(1, 8, 4, 4, generator=torch.Generator().manual_seed(0))
    kwargs = dict(height=32, width=32, num_inference_steps=2, latents=latents)
    want = ss.load_pipeline(diffusers_folder).generate_pixels("a red fox", **kwargs)
    assert (pipe.generate_pixels("a red fox", **kwargs) - want).abs().max() <= TOL


def test_release_pieces_are_found_beside_the_checkpoint(release):
    diffusers_folder, original = release
    config = transformer_config(diffusers_folder)
    for path in (original, original / "checkpoints" / "SANA_Video_tiny.pth"):
        parts = locate_original_release(path, variant=config)
        assert parts.checkpoint == original / "checkpoints" / "SANA_Video_tiny.pth" and parts.family == "video"
        assert parts.vae == original / "vae" / "Wan2.1_VAE.pth" and parts.vae_is_original
        assert parts.text_encoder == original / "gemma-2-2b-it" and parts.tokenizer is None
    parts = locate_original_release(original, variant="SanaVideo_2B_480p", text_encoder=diffusers_folder)
    assert parts.config.num_layers == 20 and parts.variant == "SanaVideo_2B_480p"
    assert parts.text_encoder == diffusers_folder / "text_encoder" and parts.tokenizer == diffusers_folder / "tokenizer"
    assert guess_variant("SANA_Video_2B_480p") == "SanaVideo_2B_480p"
    assert guess_variant("Sana_Sprint_1.6B_1024px") == "SanaSprint_1600M_1024px"
    assert guess_variant("Sana_1600M_4Kpx_BF16") == "Sana_1600M_4Kpx"
    assert guess_variant("SANA1.5_4.8B_1024px") == "Sana1.5_4800M_1024px"
    assert guess_variant("my_finetune") is None


def test_missing_or_bad_pieces_are_named(release, tmp_path):
    diffusers_folder, original = release
    config = transformer_config(diffusers_folder)
    broken = tmp_path / "no_vae"
    shutil.copytree(original, broken, ignore=shutil.ignore_patterns("vae"))
    with pytest.raises(FileNotFoundError, match="no VAE for SANA_Video_tiny.pth \\(no .*vae\\): pass vae=.*Wan2.1_VAE"):
        ss.load_pipeline(broken, variant=config)
    with pytest.raises(FileNotFoundError, match="VAE not found: .*nowhere"):
        ss.load_pipeline(broken, variant=config, vae=tmp_path / "nowhere")
    shutil.rmtree(broken / "gemma-2-2b-it")
    with pytest.raises(FileNotFoundError, match="no text encoder .*pass text_encoder="):
        ss.load_pipeline(broken, variant=config, vae=original / "vae")
    with pytest.raises(ValueError, match="cannot tell which model SANA_Video_tiny.pth is: pass variant="):
        ss.load_pipeline(original)
    with pytest.raises(ValueError, match="variant apply to original checkpoints"):
        ss.load_pipeline(diffusers_folder, variant=config)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="neither a diffusers pipeline folder .* nor an original release"):
        ss.load_pipeline(tmp_path / "empty")
    image_config = transformer_config(save(image_pipeline("image"), tmp_path / "image"))
    with pytest.raises(ValueError, match="DC-AE of image models is published in diffusers format only"):
        ss.load_pipeline(original / "checkpoints" / "SANA_Video_tiny.pth", variant=image_config,
                         vae=original / "vae" / "Wan2.1_VAE.pth", text_encoder=original / "gemma-2-2b-it")

    # pickles that need more than torch's weights-only loader are refused, never executed
    unsafe = tmp_path / "unsafe"
    shutil.copytree(original, unsafe)
    torch.save({"state_dict": {}, "config": NotATensor()}, unsafe / "checkpoints" / "SANA_Video_tiny.pth")
    with pytest.raises(ValueError, match="is not a weights-only torch checkpoint"):
        ss.load_pipeline(unsafe, variant=config, vae_config=TINY_WAN)
    vae_state = torch.load(original / "vae" / "Wan2.1_VAE.pth", weights_only=True)
    torch.save({**vae_state, "extra": NotATensor()}, unsafe / "vae" / "Wan2.1_VAE.pth")
    with pytest.raises(ValueError, match="Wan2.1_VAE.pth is not a weights-only torch checkpoint"):
        WanVAE.from_original(unsafe / "vae" / "Wan2.1_VAE.pth", config=TINY_WAN)
