"""The Wan2.1 VAE against diffusers' AutoencoderKLWan: a tiny random model saved with save_pretrained and loaded
with our loader; encode/decode parity, chunked (streaming) decode and encode, and input checking."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from sana_stream.vae import WanVAE
from sana_stream.weights import read_component_folder, write_component_folder

TINY = dict(
    base_dim=8, z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1, temperal_downsample=[False, True, True],
    latents_mean=[0.1, -0.2, 0.3, 0.0], latents_std=[1.5, 0.5, 2.0, 1.0],
)
TOL = 1e-5


@pytest.fixture(scope="module")
def reference():
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    model = AutoencoderKLWan(**TINY).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # stock init leaves norms at 1: perturb everything so every weight matters
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen))
    return model


@pytest.fixture(scope="module")
def folder(reference, tmp_path_factory):
    path = tmp_path_factory.mktemp("wan_vae")
    reference.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def vae(folder):
    return WanVAE.from_pretrained(folder)


@pytest.fixture(scope="module")
def video():
    return torch.rand(2, 3, 9, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1


@pytest.fixture(scope="module")
def latent():
    return torch.randn(1, 4, 5, 2, 2, generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def decoded(vae, latent):
    return vae.decode(latent, chunk_frames=latent.shape[2])


@pytest.fixture(scope="module")
def encoded(vae, video):
    return vae.encode(video, chunk_frames=video.shape[2])


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


# ----- parity with diffusers -------------------------------------------------------------------------------------


def test_encode_matches_diffusers(reference, vae, video, encoded):
    with torch.no_grad():
        expected = reference.encode(video).latent_dist.mode()
    assert encoded.shape == expected.shape == (2, 4, 3, 2, 2)
    assert vae.num_latent_frames(9) == 3 and vae.num_video_frames(3) == 9
    assert max_err(encoded, expected) <= TOL


def test_encode_sample_matches_diffusers(reference, vae, video):
    x = video[:1, :, :5]
    with torch.no_grad():
        expected = reference.encode(x).latent_dist.sample(generator=torch.Generator().manual_seed(7))
    ours = vae.encode(x, sample=True, generator=torch.Generator().manual_seed(7))
    assert max_err(ours, expected) <= TOL
    assert max_err(ours, vae.encode(x)) > 1e-3  # the noise really is there


def test_decode_matches_diffusers(reference, latent, decoded):
    with torch.no_grad():
        expected = reference.decode(latent).sample
    assert decoded.shape == expected.shape == (1, 3, 17, 16, 16)
    assert max_err(decoded, expected) <= TOL


def test_normalisation_matches_pipeline(vae, latent):
    # SanaVideoPipeline before decode: std = 1 / std; latents = latents / std + mean
    mean = torch.tensor(TINY["latents_mean"]).view(1, 4, 1, 1, 1)
    inv_std = 1.0 / torch.tensor(TINY["latents_std"]).view(1, 4, 1, 1, 1)
    assert torch.equal(vae.denormalize_latents(latent), latent / inv_std + mean)
    assert max_err(vae.normalize_latents(vae.denormalize_latents(latent)), latent) <= 1e-6


# ----- streaming -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sizes", [[1, 1, 1, 1, 1], [2, 3], [1, 4], [3, 1, 1]])
def test_chunked_decode_equals_full(vae, latent, decoded, sizes):
    state = vae.new_decode_state()
    outs = [vae.decode_chunk(chunk, state) for chunk in latent.split(sizes, dim=2)]
    assert [o.shape[2] for o in outs] == [1 + 4 * (sizes[0] - 1)] + [4 * n for n in sizes[1:]]
    assert max_err(torch.cat(outs, dim=2), decoded) <= TOL


def test_decode_state_is_constant_size(vae, latent):
    state = vae.new_decode_state()
    chunks = [latent[:, :, i % 5 : i % 5 + 1] for i in range(6)]
    for chunk in chunks[:2]:
        vae.decode_chunk(chunk, state)
    keys, nbytes = set(state.tails), state.nbytes
    for chunk in chunks[2:]:
        vae.decode_chunk(chunk, state)
    assert state.chunks == 6
    assert set(state.tails) == keys and state.nbytes == nbytes > 0
    assert all(t.shape[2] == 2 for t in state.tails.values())  # 3-frame causal convs keep 2 frames


def test_chunked_encode_equals_full(vae, video, encoded):
    state, outs, nbytes = vae.new_encode_state(), [], []
    for chunk in video.split([1, 4, 4], dim=2):
        outs.append(vae.encode_chunk(chunk, state))
        nbytes.append(state.nbytes)
    assert [o.shape[2] for o in outs] == [1, 1, 1]
    assert nbytes[1] == nbytes[2]
    assert max_err(torch.cat(outs, dim=2), encoded) <= TOL
    assert max_err(vae.encode(video, chunk_frames=2), encoded) <= TOL  # chunks of 1 + 4 frames, then 4


def test_bfloat16(folder, vae, latent, decoded):
    vae16 = WanVAE.from_pretrained(folder, dtype=torch.bfloat16)
    assert vae16.dtype == torch.bfloat16
    out = vae16.decode(latent)
    assert out.dtype == torch.bfloat16 and out.shape == decoded.shape
    # diffusers' own bf16 decode of this model is off from fp32 by 0.013 on average (0.18 at most)
    assert (out.float() - decoded).abs().mean() < 0.03


# ----- bad inputs ------------------------------------------------------------------------------------------------


def test_rejects_bad_tensors(vae, video, latent):
    with pytest.raises(ValueError, match=r"latent must be \(B, 4, frames, H, W\)"):
        vae.decode(torch.randn(1, 3, 2, 2, 2))
    with pytest.raises(ValueError, match="latent must be"):
        vae.decode(latent[:, :, 0])  # 4-D
    with pytest.raises(ValueError, match=r"video must be \(B, 3, frames, H, W\)"):
        vae.encode(video[:, :2])
    with pytest.raises(ValueError, match=r"a video needs 1 \+ 4·k frames, got 6"):
        vae.encode(video[:, :, :6])
    with pytest.raises(ValueError, match="multiples of 8"):
        vae.encode(video[:, :, :, :12])
    with pytest.raises(ValueError, match="new_decode_state"):
        vae.decode_chunk(latent, vae.new_encode_state())
    state = vae.new_encode_state()
    vae.encode_chunk(video[:, :, :1], state)
    with pytest.raises(ValueError, match="chunks after the first need a positive multiple of 4 frames, got 3"):
        vae.encode_chunk(video[:, :, 1:4], state)


def test_loads_pipeline_folder(folder, tmp_path, vae):
    shutil.copytree(folder, tmp_path / "vae")
    (tmp_path / "model_index.json").write_text(json.dumps({"vae": ["diffusers", "AutoencoderKLWan"]}))
    loaded = WanVAE.from_pretrained(tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), vae.state_dict().values()))


def test_missing_config(folder, tmp_path):
    shutil.copy(folder / "diffusion_pytorch_model.safetensors", tmp_path)
    with pytest.raises(FileNotFoundError, match="config.json"):
        WanVAE.from_pretrained(tmp_path)


def test_missing_key(folder, tmp_path):
    config, state = read_component_folder(folder)
    del state["decoder.conv_in.weight"]
    write_component_folder(tmp_path, config, state)
    with pytest.raises(ValueError, match=r"missing keys: decoder\.conv_in\.weight"):
        WanVAE.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"clip_output": True}, "unknown Wan VAE config field\\(s\\): clip_output"),
        ({"is_residual": True, "patch_size": 2}, "Wan2.2"),
        ({"attn_scales": [0.5]}, "attn_scales must be empty"),
        ({"_class_name": "AutoencoderDC"}, "not a Wan VAE config"),
    ],
)
def test_rejects_bad_config(folder, tmp_path, change, message):
    shutil.copy(folder / "diffusion_pytorch_model.safetensors", tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(ValueError, match=message):
        WanVAE.from_pretrained(tmp_path)
