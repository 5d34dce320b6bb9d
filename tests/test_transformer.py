"""The transformer: parity with diffusers, loading formats, chunk-causal == streaming, constant state, errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

import sana_stream as ss
from tests.tiny_transformers import (
    TINY_IMAGE, TINY_IMAGE_PE, TINY_SPRINT, diffusers_image, diffusers_video, text_inputs, to_original,
)

TOL = 1e-5


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


@pytest.fixture(scope="module")
def video_ref(tmp_path_factory):
    ref = diffusers_video(seed=0)
    folder = tmp_path_factory.mktemp("video") / "transformer"
    ref.save_pretrained(folder)
    return ref, folder


@pytest.fixture(scope="module")
def video(video_ref):
    return ss.load_transformer(video_ref[1], dtype=torch.float32)


def video_inputs(batch=2, frames=5, height=8, width=8, seed=3):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 4, frames, height, width, generator=gen)
    text, mask = text_inputs(batch, 7, 16)
    return x, text, mask


# ----- parity with diffusers ------------------------------------------------------------------------------------


def test_video_parity_scalar_timestep(video_ref, video):
    ref, _ = video_ref
    x, text, mask = video_inputs()
    t = torch.tensor([999.0, 321.5])
    with torch.no_grad():
        want = ref(x, encoder_hidden_states=text, timestep=t, encoder_attention_mask=mask, return_dict=False)[0]
        got = video(x, t, text, mask)
    assert got.shape == x.shape
    assert max_err(got, want) <= TOL


def test_video_parity_per_frame_timesteps(video_ref, video):
    ref, _ = video_ref
    x, text, mask = video_inputs(frames=4, height=6, width=10)
    t = torch.tensor([[0.0, 500.0, 700.0, 900.0], [0.0, 0.0, 250.0, 1000.0]])
    # diffusers takes per-frame timesteps per token: (B, 1, T, H', W').
    t_tokens = t[:, None, :, None, None].expand(2, 1, 4, 3, 5)
    with torch.no_grad():
        want = ref(x, encoder_hidden_states=text, timestep=t_tokens, encoder_attention_mask=mask,
                   return_dict=False)[0]
        got = video(x, t, text, mask)
    assert max_err(got, want) <= TOL


def test_video_parity_no_mask_and_rope_split(video_ref, video):
    ref, _ = video_ref
    x, text, _ = video_inputs(batch=1, frames=3)
    with torch.no_grad():
        want = ref(x, encoder_hidden_states=text[:1], timestep=torch.tensor([42.0]), return_dict=False)[0]
        got = video(x, torch.tensor([42.0]), text[:1])
    assert max_err(got, want) <= TOL
    assert ss.model.embeddings.Rope3D(112).dims == (40, 36, 36)  # the released checkpoint's split


@pytest.mark.parametrize("name,config", [("plain", TINY_IMAGE), ("sprint", TINY_SPRINT), ("pe", TINY_IMAGE_PE)])
def test_image_parity(tmp_path, name, config):
    ref = diffusers_image(config, seed=5)
    ref.save_pretrained(tmp_path / name)
    ours = ss.load_transformer(tmp_path / name)
    gen = torch.Generator().manual_seed(0)
    # 12x16 differs from sample_size 8, so the PE model rebuilds its sincos table for the new size.
    x = torch.randn(2, 4, 12, 16, generator=gen)
    text, mask = text_inputs(2, 6, 12)
    t = torch.tensor([10.0, 800.0])
    kwargs = {"guidance": torch.tensor([0.45, 0.3])} if config.get("guidance_embeds") else {}
    with torch.no_grad():
        want = ref(x, encoder_hidden_states=text, timestep=t, encoder_attention_mask=mask, return_dict=False,
                   **kwargs)[0]
        got = ours(x, t, text, mask, **kwargs)
    assert got.shape == x.shape
    assert max_err(got, want) <= TOL


# ----- loading formats --------------------------------------------------------------------------------------------


def test_pipeline_folder_and_shards(tmp_path, video_ref):
    ref, _ = video_ref
    pipe = tmp_path / "pipe"
    ref.save_pretrained(pipe / "transformer", max_shard_size="20KB")
    assert (pipe / "transformer" / "diffusion_pytorch_model.safetensors.index.json").is_file()
    (pipe / "model_index.json").write_text(json.dumps({"_class_name": "SanaVideoPipeline"}))
    model = ss.load_transformer(pipe, dtype=torch.float32)
    x, text, mask = video_inputs(batch=1)
    with torch.no_grad():
        want = ref(x, encoder_hidden_states=text[:1], timestep=torch.tensor([5.0]),
                   encoder_attention_mask=mask[:1], return_dict=False)[0]
        assert max_err(model(x, torch.tensor([5.0]), text[:1], mask[:1]), want) <= TOL


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("kind", ["video", "sprint"])
def test_original_checkpoint_round_trip(tmp_path, kind, suffix):
    if kind == "video":
        ref, config = diffusers_video(seed=2), {"_class_name": "SanaVideoTransformer3DModel"}
    else:
        ref, config = diffusers_image(TINY_SPRINT, seed=2), {"_class_name": "SanaTransformer2DModel"}
    config.update({k: v for k, v in ref.config.items() if not k.startswith("_")})
    original = to_original(ref.state_dict())
    path = tmp_path / f"ckpt{suffix}"
    if suffix == ".pth":
        torch.save({"state_dict": original, "step": torch.tensor(3)}, path)
    else:
        save_file(original, str(path))
    with pytest.raises(ValueError, match="bare checkpoint"):
        ss.load_transformer(path)
    ours = ss.load_transformer(path, config=config)
    (tmp_path / "config.json").write_text(json.dumps(config))
    ours_beside = ss.load_transformer(path)  # config.json next to the file
    for a, b in zip(ours.state_dict().values(), ours_beside.state_dict().values()):
        assert torch.equal(a, b)
    if kind == "video":
        x, text, mask = video_inputs(batch=1)
        args, kwargs = (x, torch.tensor([7.0]), text[:1], mask[:1]), {}
    else:
        x = torch.randn(1, 4, 8, 8)
        text, mask = text_inputs(1, 6, 12)
        args, kwargs = (x, torch.tensor([7.0]), text, mask), {"guidance": torch.tensor([0.45])}
    with torch.no_grad():
        want = ref(args[0], encoder_hidden_states=args[2], timestep=args[1], encoder_attention_mask=args[3],
                   return_dict=False, **kwargs)[0]
        assert max_err(ours(*args, **kwargs), want) <= TOL


def test_save_pretrained_loads_in_diffusers(tmp_path, video):
    from diffusers import SanaVideoTransformer3DModel

    video.save_pretrained(tmp_path / "ours")
    theirs = SanaVideoTransformer3DModel.from_pretrained(tmp_path / "ours").eval()
    x, text, mask = video_inputs()
    t = torch.tensor([100.0, 600.0])
    with torch.no_grad():
        want = theirs(x, encoder_hidden_states=text, timestep=t, encoder_attention_mask=mask, return_dict=False)[0]
        assert max_err(video(x, t, text, mask), want) <= TOL


def test_variants_match_released_sizes():
    cfg = ss.TransformerConfig.from_dict(ss.VARIANTS["SanaVideo_2B_480p"])
    assert (cfg.inner_dim, cfg.num_layers, cfg.ffn_hidden, cfg.patch_size) == (2240, 20, 6720, (1, 2, 2))
    assert 2.0e9 < cfg.num_parameters() < 2.1e9  # fact sheet: about 2.057 B
    with torch.device("meta"):
        model = ss.SanaTransformer(cfg.replace(num_layers=1))
    assert model.num_parameters() == cfg.replace(num_layers=1).num_parameters()
    sana_600m = ss.TransformerConfig.from_dict(ss.VARIANTS["Sana_600M_1024px"])
    assert 0.55e9 < sana_600m.num_parameters() < 0.65e9


# ----- attention modes and the streaming state --------------------------------------------------------------------


def test_chunk_causal_equals_streaming(video):
    k = 2
    x, text, mask = video_inputs(batch=2, frames=3 * k)
    c0, c1, c2 = x.split(k, dim=2)
    t = torch.tensor([[0, 0, 0, 0, 640.0, 640.0], [0, 0, 0, 0, 100.0, 100.0]])
    with torch.no_grad():
        causal = video(x, t, text, mask, chunk_frames=k)
        state = video.new_state(2)
        video.append_state(state, c0, text, mask)
        video.append_state(state, c1, text, mask)
        assert state.frames == 2 * k and state.chunks == 2
        before = state.nbytes
        streamed = video(c2, t[:, -1], text, mask, state=state)
    assert max_err(streamed, causal[:, :, 2 * k:]) <= TOL
    assert state.nbytes == before and state.frames == 2 * k  # a forward never changes the state

    # ... and the mode matters: bidirectional attention gives a different answer on c2.
    with torch.no_grad():
        bidirectional = video(x, t, text, mask)
    assert max_err(bidirectional[:, :, 2 * k:], causal[:, :, 2 * k:]) > 1e-3


def test_chunk_causal_is_causal_and_first_chunk_takes_remainder(video):
    x, text, mask = video_inputs(batch=1, frames=5)
    t = torch.tensor([300.0])
    changed = x.clone()
    changed[:, :, 3:] = torch.randn_like(changed[:, :, 3:])
    with torch.no_grad():
        a = video(x, t, text[:1], mask[:1], chunk_frames=2)  # chunks [0, 3), [3, 5)
        b = video(changed, t, text[:1], mask[:1], chunk_frames=2)
        whole = video(x, t, text[:1], mask[:1], chunk_frames=5)
        bidi = video(x, t, text[:1], mask[:1])
    assert max_err(a[:, :, :3], b[:, :, :3]) == 0.0
    assert max_err(a[:, :, 3:], b[:, :, 3:]) > 1e-3
    assert max_err(whole, bidi) == 0.0
    assert ss.model.transformer.chunk_bounds(21, 10) == [(0, 11), (11, 21)]
    assert ss.model.transformer.chunk_bounds(20, 10) == [(0, 10), (10, 20)]


def test_state_size_is_constant(video):
    x, text, mask = video_inputs(batch=1, frames=1)
    with torch.no_grad():
        state = video.new_state(1)
        sizes = []
        for i in range(200):
            video.append_state(state, x, text[:1], mask[:1])
            if i in (1, 199):
                sizes.append(state.nbytes)
    assert sizes[0] == sizes[1] > 0
    assert state.frames == 200
    # Per block, fp32: S (2·12·12) and z (2·12) for the older chunks, the newest chunk and their total, plus two
    # frames (4×4 tokens × 24) of FFN features: the newest chunk's last frame and the one before it.
    assert sizes[0] == 2 * (3 * (2 * 12 * 12 + 2 * 12) * 4 + 2 * 16 * 24 * 4)


def test_windowed_state_forgets(video):
    # A window of 1 holds c1's own entries only. Block 0's entries depend on nothing but the chunk itself
    # (deeper blocks saw c0 as history when c1 was appended, as in the reference), so there they must not
    # depend on c0 at all, while the global history still does.
    x, text, mask = video_inputs(batch=1, frames=6)
    c0, c1, _ = x.split(2, dim=2)
    other_c0 = torch.randn_like(c0)
    sums = {}
    with torch.no_grad():
        for window in (1, None):
            for name, first in (("a", c0), ("b", other_c0)):
                state = video.new_state(1, window=window)
                video.append_state(state, first, text[:1], mask[:1])
                video.append_state(state, c1, text[:1], mask[:1])
                sums[window, name] = state.history(0)[0]
    for i in range(2):
        assert torch.equal(sums[1, "a"][i], sums[1, "b"][i])
        assert max_err(sums[None, "a"][i], sums[None, "b"][i]) > 1e-4


def test_windowed_state_matches_recent_history(video):
    # window=2 after four chunks == the same chunks' sums recomputed from the last two alone.
    x, text, mask = video_inputs(batch=1, frames=4)
    chunks = x.split(1, dim=2)
    with torch.no_grad():
        windowed = video.new_state(1, window=2)
        for c in chunks:
            video.append_state(windowed, c, text[:1], mask[:1])
        sizes = windowed.nbytes
        video.append_state(windowed, chunks[0], text[:1], mask[:1])
    assert windowed.nbytes == sizes


@pytest.mark.parametrize("window", [None, 2])
def test_replacing_the_newest_chunk_is_exact(video, window):
    # A prompt switch re-runs the newest chunk under the new prompt: the state must then equal one that had
    # appended that chunk under the new prompt in the first place.
    x, text, mask = video_inputs(batch=1, frames=6)
    new_text, new_mask = text_inputs(1, 7, 16, seed=9)
    chunks = x.split(2, dim=2)
    t = torch.tensor([700.0])
    with torch.no_grad():
        switched = video.new_state(1, window=window)
        for c in chunks[:2]:
            video.append_state(switched, c, text[:1], mask[:1])
        before = video(chunks[2], t, new_text, new_mask, state=switched)
        video.append_state(switched, chunks[1], new_text, new_mask, replace_last=True)
        direct = video.new_state(1, window=window)
        video.append_state(direct, chunks[0], text[:1], mask[:1])
        video.append_state(direct, chunks[1], new_text, new_mask)
        a = video(chunks[2], t, new_text, new_mask, state=switched)
        b = video(chunks[2], t, new_text, new_mask, state=direct)
    assert (switched.frames, switched.chunks) == (4, 2)
    assert max_err(a, b) <= 1e-6
    assert max_err(a, before) > 1e-4
    with pytest.raises(ValueError, match="frames"):
        video.append_state(switched, x[:, :, :1], new_text, new_mask, replace_last=True)
    with pytest.raises(ValueError, match="no appended chunk"):
        video.append_state(video.new_state(1), chunks[0], new_text, new_mask, replace_last=True)


@pytest.mark.parametrize("window", [None, 2])
def test_state_batch_runs_streams_at_different_places_in_one_pass(video, window):
    # Three streams: empty, one chunk in, three chunks in (past the window). Batched, each row must match the
    # stream run alone — its own RoPE frame offset, window ring and history — and each state must get back
    # exactly its own rows when the chunk is appended, including a re-run of the newest chunk.
    x, text, mask = video_inputs(batch=3, frames=8)
    chunks = x.split(2, dim=2)
    t = torch.tensor([800.0, 800.0, 800.0])
    with torch.no_grad():
        alone, batched = [], []
        for row, history in enumerate((0, 1, 3)):
            for states in (alone, batched):
                state = video.new_state(1, window=window)
                for c in chunks[:history]:
                    video.append_state(state, c[row:row + 1], text[row:row + 1], mask[row:row + 1])
                states.append(state)
        batch = ss.model.StateBatch(batched)
        assert batch.frame_start() == [0, 2, 6]
        together = video(chunks[3], t, text, mask, state=batch)
        apart = torch.cat([video(chunks[3][i:i + 1], t[:1], text[i:i + 1], mask[i:i + 1], state=s)
                           for i, s in enumerate(alone)])
        assert max_err(together, apart) <= TOL
        video.append_state(batch, chunks[3], text, mask)
        video.append_state(batch, chunks[3].flip(0), text, mask, replace_last=True)
        for i, s in enumerate(alone):
            video.append_state(s, chunks[3][i:i + 1], text[i:i + 1], mask[i:i + 1])
            video.append_state(s, chunks[3].flip(0)[i:i + 1], text[i:i + 1], mask[i:i + 1], replace_last=True)
        for a, b in zip(alone, batched):
            assert (a.frames, a.chunks) == (b.frames, b.chunks)
            for ta, tb in zip(a._tensors(), b._tensors()):  # sums over many tokens: relative tolerance
                assert max_err(ta, tb) <= TOL * max(1.0, tb.abs().max().item())
        with pytest.raises(ValueError, match="batch size"):
            video(chunks[3][:2], t[:2], text[:2], mask[:2], state=batch)


@pytest.mark.parametrize("window", [None, 2])
def test_append_in_the_same_pass_equals_append_then_forward(video, window):
    # forward(x, state=, append=c) must be append_state(state, c) then forward(x, state=): the same output and
    # the same state, past the window too (the chunk the append evicts must be gone for x but not for c), for
    # single streams and a StateBatch of streams at different places.
    x, text, mask = video_inputs(batch=2, frames=12)
    chunks = x.split(2, dim=2)
    t = torch.tensor([[900.0], [400.0]])
    with torch.no_grad():
        for batched in (False, True):
            two_pass = [video.new_state(1, window=window) for _ in range(2)]
            one_pass = [video.new_state(1, window=window) for _ in range(2)]
            video.append_state(two_pass[1], chunks[0][1:], text[1:], mask[1:])  # the second stream is ahead
            video.append_state(one_pass[1], chunks[0][1:], text[1:], mask[1:])
            a_state = ss.model.StateBatch(two_pass) if batched else two_pass[0]
            b_state = ss.model.StateBatch(one_pass) if batched else one_pass[0]
            rows = slice(None) if batched else slice(0, 1)
            for c, nxt in zip(chunks[1:], chunks[2:]):
                nxt = nxt[:, :, :1]
                video.append_state(a_state, c[rows], text[rows], mask[rows])
                a = video(nxt[rows], t[rows], text[rows], mask[rows], state=a_state)
                b = video(nxt[rows], t[rows], text[rows], mask[rows], state=b_state, append=c[rows])
                assert max_err(a, b) <= TOL
            for u, v in zip(two_pass, one_pass):
                assert (u.frames, u.chunks) == (v.frames, v.chunks)
                for ta, tb in zip(u._tensors(), v._tensors()):
                    assert max_err(ta, tb) <= TOL * max(1.0, tb.abs().max().item())
        with pytest.raises(ValueError, match="state="):
            video(chunks[1], t[:, 0], text, mask, append=chunks[0])
        with pytest.raises(ValueError, match="shaped like x"):
            video(chunks[1], t[:, 0], text, mask, state=video.new_state(2), append=chunks[0][:, :2])
        with pytest.raises(ValueError, match="NaN"):
            video(chunks[1], t[:, 0], text, mask, state=video.new_state(2), append=chunks[0] * float("nan"))


def test_state_clone_is_independent(video):
    x, text, mask = video_inputs(batch=1, frames=2)
    with torch.no_grad():
        state = video.new_state(1)
        video.append_state(state, x[:, :, :1], text[:1], mask[:1])
        fork = state.clone()
        video.append_state(state, x[:, :, 1:], text[:1], mask[:1])
        a = video(x[:, :, 1:], torch.tensor([900.0]), text[:1], mask[:1], state=fork)
        fresh = video.new_state(1)
        video.append_state(fresh, x[:, :, :1], text[:1], mask[:1])
        b = video(x[:, :, 1:], torch.tensor([900.0]), text[:1], mask[:1], state=fresh)
    assert fork.frames == 1 and state.frames == 2
    assert max_err(a, b) == 0.0


# ----- dtypes ---------------------------------------------------------------------------------------------------


def test_bf16_close_to_fp32(video_ref, video):
    bf16 = ss.load_transformer(video_ref[1], dtype=torch.bfloat16)
    assert bf16.dtype == torch.bfloat16
    x, text, mask = video_inputs()
    t = torch.tensor([500.0, 900.0])
    with torch.no_grad():
        ref = video(x, t, text, mask)
        low = bf16(x.bfloat16(), t, text.bfloat16(), mask)
        state = bf16.new_state(2)
        bf16.append_state(state, x[:, :, :2].bfloat16(), text.bfloat16(), mask)
        streamed = bf16(x[:, :, 2:].bfloat16(), t, text.bfloat16(), mask, state=state)
    assert low.dtype == torch.bfloat16 and streamed.dtype == torch.bfloat16
    # Stated tolerance: bf16 keeps ~3 significant digits; errors stay within 3% of the output's scale.
    assert max_err(low, ref) <= 0.03 * ref.abs().max().item()
    assert torch.isfinite(streamed).all()


# ----- clear errors -----------------------------------------------------------------------------------------------


def test_bad_checkpoints_name_the_problem(tmp_path, video_ref):
    ref, _ = video_ref
    state = {k: v.clone() for k, v in ref.state_dict().items()}
    config = {"_class_name": "SanaVideoTransformer3DModel", **{k: v for k, v in ref.config.items()
                                                               if not k.startswith("_")}}
    missing = dict(state)
    del missing["transformer_blocks.1.attn1.to_k.weight"]
    save_file(missing, str(tmp_path / "missing.safetensors"))
    with pytest.raises(ValueError, match=r"missing keys: transformer_blocks\.1\.attn1\.to_k\.weight"):
        ss.load_transformer(tmp_path / "missing.safetensors", config=config)
    extra = dict(state, **{"transformer_blocks.0.attn1.surprise": torch.zeros(1)})
    save_file(extra, str(tmp_path / "extra.safetensors"))
    with pytest.raises(ValueError, match=r"unexpected keys: transformer_blocks\.0\.attn1\.surprise"):
        ss.load_transformer(tmp_path / "extra.safetensors", config=config)
    with pytest.raises(ValueError, match=r"shape mismatch: proj_out\.bias \(checkpoint \(16,\), model \(32,\)\)"):
        ss.load_transformer(tmp_path / "missing.safetensors", config=dict(config, out_channels=8))
    with pytest.raises(ValueError, match="unknown transformer config field.*flux_capacitor"):
        ss.load_transformer(tmp_path / "missing.safetensors", config=dict(config, flux_capacitor=1))
    with pytest.raises(ValueError, match="unsupported transformer class 'UNet2DModel'"):
        ss.load_transformer(tmp_path / "missing.safetensors", config=dict(config, _class_name="UNet2DModel"))
    with pytest.raises(ValueError, match="neither a known variant"):
        ss.load_transformer(tmp_path / "missing.safetensors", config="Sana_9000B")
    with pytest.raises(FileNotFoundError):
        ss.load_transformer(tmp_path / "nowhere")
    (tmp_path / "junk.pth").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="weights-only"):
        ss.load_transformer(tmp_path / "junk.pth", config=config)


def test_bad_inputs_name_the_problem(video):
    x, text, mask = video_inputs(batch=2, frames=2)
    t = torch.tensor([1.0, 2.0])
    cases = [
        ((x[0, 0], t, text, mask), {}, "must be \\(B, C, T, H, W\\)"),
        ((x[:, :3], t, text, mask), {}, "has 3 channels"),
        ((x[..., :7], t, text, mask), {}, "not divisible by patch"),
        ((x, torch.ones(3), text, mask), {}, "timestep must be"),
        ((x, t, text[..., :5], mask), {}, "encoder_hidden_states must be"),
        ((x, t, text, mask[:, :3]), {}, "encoder_attention_mask must be"),
        ((x * float("nan"), t, text, mask), {}, "NaN or inf"),
        ((x, t, text, mask), {"chunk_frames": 0}, "chunk_frames must be"),
        ((x, t, text, mask), {"guidance": torch.ones(2)}, "no guidance embedding"),
    ]
    for args, kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            video(*args, **kwargs)
    state = video.new_state(1)
    with pytest.raises(ValueError, match="batch size 2 does not fit"):
        video(x, t, text, mask, state=state)
    state = video.new_state(2)
    video.append_state(state, x, text, mask)
    with pytest.raises(ValueError, match="grid .* does not fit"):
        video(x[..., :4], t, text, mask, state=state)
    with pytest.raises(ValueError, match="not both"):
        video(x, t, text, mask, state=state, chunk_frames=1)
    with pytest.raises(ValueError, match="window must be"):
        video.new_state(1, window=0)


def test_image_model_rejects_video_modes(tmp_path):
    diffusers_image(TINY_IMAGE).save_pretrained(tmp_path / "img")
    model = ss.load_transformer(tmp_path / "img")
    text, mask = text_inputs(1, 6, 12)
    with pytest.raises(ValueError, match="image models take one frame"):
        model(torch.randn(1, 4, 2, 8, 8), torch.tensor([1.0]), text, mask)
    with pytest.raises(ValueError, match="needs a video model"):
        model.new_state(1)
    out = model(torch.randn(1, 4, 1, 8, 8), torch.tensor([1.0]), text, mask)  # 5-D with T = 1 is fine
    assert out.shape == (1, 4, 1, 8, 8)


def test_legacy_pickle_checkpoints_load(tmp_path):
    # Some original releases are torch pickles in the pre-zip format, which cannot be memory-mapped.
    ref = diffusers_image(TINY_IMAGE, seed=3)
    config = {"_class_name": "SanaTransformer2DModel", **{k: v for k, v in ref.config.items()
                                                          if not k.startswith("_")}}
    path = tmp_path / "legacy.pth"
    torch.save({"state_dict": to_original(ref.state_dict())}, path, _use_new_zipfile_serialization=False)
    model = ss.load_transformer(path, config=config)
    for key, value in ref.state_dict().items():
        if key == "patch_embed.proj.weight":
            assert torch.equal(model.state_dict()["patch_embedding.weight"][:, :, 0], value)


# ----- world models: per-frame actions ------------------------------------------------------------------------------


def with_actions(model, action_dim=5, perturb_seed=None, plucker_fov=0.0):
    """The same weights plus an action branch (and Plücker maps with plucker_fov); the branches' last layers zero as
    built, or all their weights perturbed when a seed is given."""
    acting = ss.SanaTransformer(model.config.replace(action_dim=action_dim, action_plucker_fov=plucker_fov)).eval()
    missing, unexpected = acting.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("action_embedder.") or "plucker" in k for k in missing)
    if perturb_seed is not None:
        gen = torch.Generator().manual_seed(perturb_seed)
        with torch.no_grad():
            for name, p in acting.named_parameters():
                if name in missing:
                    p.add_(0.3 * torch.randn(p.shape, generator=gen))
    return acting


def actions_for(batch, frames, action_dim=5, seed=4):
    return torch.randn(batch, frames, action_dim, generator=torch.Generator().manual_seed(seed))


# (action_dim, plucker_fov): the time-embedding branch alone, and with Plücker maps of the last six entries.
ACTION_BRANCHES = [(5, 0.0), (8, 60.0)]


@pytest.mark.parametrize("action_dim, plucker_fov", ACTION_BRANCHES)
def test_zero_initialised_action_branch_changes_nothing(video, action_dim, plucker_fov):
    acting = with_actions(video, action_dim, plucker_fov=plucker_fov)
    x, text, mask = video_inputs(batch=2, frames=4)
    t = torch.tensor([[0.0, 0.0, 500.0, 900.0], [0.0, 250.0, 250.0, 1000.0]])
    a = actions_for(2, 4, action_dim)
    with torch.no_grad():
        want = video(x, t, text, mask, chunk_frames=2)
        got = acting(x, t, text, mask, chunk_frames=2, action=a)
        scalar_t = acting(x, torch.tensor([300.0, 30.0]), text, mask, action=a)
    assert torch.equal(got, want)
    # A scalar timestep with per-frame actions runs the time embedding per frame, a matmul of another shape:
    # equal up to the BLAS kernel's rounding (bit-equal on some CPUs, not on others).
    torch.testing.assert_close(scalar_t, video(x, torch.tensor([300.0, 30.0]), text, mask), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("action_dim, plucker_fov", ACTION_BRANCHES)
def test_trained_action_branch_steers_its_own_frames(video, action_dim, plucker_fov):
    acting = with_actions(video, action_dim, perturb_seed=0, plucker_fov=plucker_fov)
    x, text, mask = video_inputs(batch=1, frames=4)
    t = torch.tensor([700.0])
    a = actions_for(1, 4, action_dim)
    b = a.clone()
    b[:, 2:] = actions_for(1, 2, action_dim, seed=9)  # other actions for the second chunk only
    with torch.no_grad():
        out_a = acting(x, t, text[:1], mask[:1], chunk_frames=2, action=a)
        out_b = acting(x, t, text[:1], mask[:1], chunk_frames=2, action=b)
        zeros = acting(x, t, text[:1], mask[:1], chunk_frames=2, action=torch.zeros(1, 4, action_dim))
        default = acting(x, t, text[:1], mask[:1], chunk_frames=2)
    assert max_err(out_a[:, :, :2], out_b[:, :, :2]) == 0.0  # causal: the first chunk cannot see later actions
    assert max_err(out_a[:, :, 2:], out_b[:, :, 2:]) > 1e-3
    assert torch.equal(default, zeros)  # no action given means the zero vector


@pytest.mark.parametrize("action_dim, plucker_fov", ACTION_BRANCHES)
def test_streaming_with_actions_equals_chunk_causal(video, action_dim, plucker_fov):
    acting = with_actions(video, action_dim, perturb_seed=1, plucker_fov=plucker_fov)
    x, text, mask = video_inputs(batch=2, frames=3)
    a = actions_for(2, 3, action_dim)
    t = torch.tensor([[0.0, 0.0, 800.0], [0.0, 0.0, 150.0]])
    with torch.no_grad():
        causal = acting(x, t, text, mask, chunk_frames=1, action=a)
        state = acting.new_state(2)
        for i in range(2):  # one-frame chunks: each frame's action acts on that frame alone
            acting.append_state(state, x[:, :, i:i + 1], text, mask, action=a[:, i:i + 1])
        streamed = acting(x[:, :, 2:], t[:, 2], text, mask, state=state, action=a[:, 2:])
        other_history = acting.new_state(2)
        for i in range(2):
            acting.append_state(other_history, x[:, :, i:i + 1], text, mask, action=-a[:, i:i + 1])
        streamed_other = acting(x[:, :, 2:], t[:, 2], text, mask, state=other_history, action=a[:, 2:])
    assert max_err(streamed, causal[:, :, 2:]) <= TOL
    assert max_err(streamed_other, streamed) > 1e-4  # the history's actions are part of the history


@pytest.mark.parametrize("action_dim, plucker_fov", [(3, 0.0), (6, 75.0)])
def test_action_models_save_load_and_count(tmp_path, video, action_dim, plucker_fov):
    acting = with_actions(video, action_dim=action_dim, perturb_seed=2, plucker_fov=plucker_fov)
    acting.save_pretrained(tmp_path / "world")
    config = json.loads((tmp_path / "world" / "config.json").read_text())
    assert config["action_dim"] == action_dim
    assert config.get("action_plucker_fov", 0.0) == plucker_fov
    plain = video.config.to_diffusers_dict()
    assert "action_dim" not in plain and "action_plucker_fov" not in plain  # plain configs round-trip unchanged
    loaded = ss.load_transformer(tmp_path / "world", dtype=torch.float32)
    assert (loaded.config.action_dim, loaded.config.action_plucker_fov) == (action_dim, plucker_fov)
    assert loaded.num_parameters() == acting.num_parameters() == acting.config.num_parameters()
    x, text, mask = video_inputs(batch=1, frames=2)
    a = actions_for(1, 2, action_dim=action_dim)
    weights = acting.state_dict()
    assert all(torch.equal(w, weights[k]) for k, w in loaded.state_dict().items())
    with torch.no_grad():  # the same weights; oneDNN's kernels may round differently between two copies of them
        torch.testing.assert_close(loaded(x, 10.0, text[:1], mask[:1], action=a),
                                   acting(x, 10.0, text[:1], mask[:1], action=a), rtol=1e-5, atol=1e-5)


def test_bad_actions_name_the_problem(video):
    acting = with_actions(video)
    x, text, mask = video_inputs(batch=2, frames=2)
    t = torch.tensor([1.0, 2.0])
    with pytest.raises(ValueError, match="takes no actions"):
        video(x, t, text, mask, action=actions_for(2, 2))
    cases = [
        (actions_for(2, 3), "action must be \\(B, T, action_dim\\)=\\(2, 2, 5\\)"),
        (actions_for(2, 2, action_dim=4), "action must be \\(B, T, action_dim\\)"),
        (actions_for(2, 2) * float("nan"), "action contains NaN"),
        (torch.ones(2, 2, 5, dtype=torch.long), "action must be a float tensor"),
    ]
    for action, message in cases:
        with pytest.raises(ValueError, match=message):
            acting(x, t, text, mask, action=action)
    with pytest.raises(ValueError, match="action_dim"):
        ss.TransformerConfig(action_dim=-1)
    with pytest.raises(ValueError, match="temporal patch of 1"):
        ss.TransformerConfig(action_dim=4, patch_size=(2, 2, 2))
    with pytest.raises(ValueError, match="action_dim >= 6"):
        ss.TransformerConfig(action_dim=5, action_plucker_fov=70.0)
    with pytest.raises(ValueError, match="action_plucker_fov must be a field of view"):
        ss.TransformerConfig(action_dim=6, action_plucker_fov=-1.0)


def test_plucker_maps_leave_a_still_camera_alone(video):
    # Neither the maps' embedding nor the blocks' projections have a bias: with every weight of the branch
    # trained (perturbed), a camera that does not move adds exactly nothing, whatever its key bits say, so the
    # "none" row of action guidance is the model without the maps.
    acting = with_actions(video, action_dim=8, perturb_seed=5, plucker_fov=70.0)
    blind = with_actions(video, action_dim=8, plucker_fov=70.0)
    blind.action_embedder.load_state_dict(acting.action_embedder.state_dict())
    x, text, mask = video_inputs(batch=2, frames=3)
    t = torch.tensor([[0.0, 0.0, 600.0], [0.0, 0.0, 1000.0]])
    still = actions_for(2, 3, action_dim=8)
    still[..., -6:] = 0
    moving = still.clone()
    moving[:, 2, -3] = 0.14  # the last frame's camera turns right
    with torch.no_grad():
        assert torch.equal(acting(x, t, text, mask, chunk_frames=1, action=still),
                           blind(x, t, text, mask, chunk_frames=1, action=still))
        turned = acting(x, t, text, mask, chunk_frames=1, action=moving)
        plain = blind(x, t, text, mask, chunk_frames=1, action=moving)
    assert max_err(turned[:, :, :2], plain[:, :, :2]) == 0.0  # earlier frames cannot see a later frame's camera
    assert max_err(turned[:, :, 2:], plain[:, :, 2:]) > 1e-3


# ----- world models: the copy gate ----------------------------------------------------------------------------------


def with_copy_gate(model, bias=None):
    """The same weights plus a copy gate: closed (zero) as built, or opened to `bias` everywhere."""
    gated = ss.SanaTransformer(model.config.replace(copy_gate=True)).eval()
    missing, unexpected = gated.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected and sorted(missing) == ["copy_gate.bias", "copy_gate.weight"]
    if bias is not None:
        with torch.no_grad():
            gated.copy_gate.bias.fill_(bias)
    return gated


def test_copy_gate_starts_closed_and_open_lands_on_the_previous_frame(video):
    x, text, mask = video_inputs(batch=2, frames=3)
    t = torch.tensor([[0.0, 0.0, 500.0], [0.0, 300.0, 1000.0]])
    previous = torch.cat([torch.zeros_like(x[:, :, :1]), x[:, :, :-1]], dim=2)
    with torch.no_grad():
        plain = video(x, t, text, mask, chunk_frames=1)
        assert max_err(with_copy_gate(video)(x, t, text, mask, chunk_frames=1, previous=previous), plain) == 0
        # open (g = 1 at every latent pixel of the 2×2 patches): the clean estimate x - sigma·v is `previous`
        opened = with_copy_gate(video, bias=1.0)(x, t, text, mask, chunk_frames=1, previous=previous)
        sigma = (t / 1000).view(2, 1, 3, 1, 1)
        noised = t > 0
        landed = (x - sigma * opened).permute(0, 2, 1, 3, 4)[noised]
        assert max_err(landed, previous.permute(0, 2, 1, 3, 4)[noised]) <= 1e-5
        # half open: halfway between the network's velocity and the copy's; past 1 it clamps to the copy
        half = with_copy_gate(video, bias=0.5)(x, t, text, mask, chunk_frames=1, previous=previous)
        assert max_err(half, (plain + opened) / 2) <= 1e-4
        beyond = with_copy_gate(video, bias=3.0)(x, t, text, mask, chunk_frames=1, previous=previous)
        assert max_err(beyond, opened) == 0
        # without previous= the gate is not applied
        assert max_err(with_copy_gate(video, bias=1.0)(x, t, text, mask, chunk_frames=1), plain) == 0


def test_copy_gate_streams_as_it_trains(video):
    # A stream passes the newest appended frame as `previous`; with the fused append too.
    gated = with_copy_gate(video, bias=0.3)
    with torch.no_grad():
        gated.copy_gate.weight.normal_(0, 0.1, generator=torch.Generator().manual_seed(1))
    x, text, mask = video_inputs(batch=2, frames=3)
    t = torch.tensor([[0.0, 0.0, 700.0]] * 2)
    previous = torch.cat([torch.zeros_like(x[:, :, :1]), x[:, :, :-1]], dim=2)
    with torch.no_grad():
        causal = gated(x, t, text, mask, chunk_frames=1, previous=previous)
        state = gated.new_state(2)
        gated.append_state(state, x[:, :, :1], text, mask)
        streamed = gated(x[:, :, 2:], t[:, 2], text, mask, state=state, append=x[:, :, 1:2],
                         previous=x[:, :, 1:2])
    assert max_err(streamed, causal[:, :, 2:]) <= TOL


def test_copy_gate_saves_loads_and_names_its_problems(tmp_path, video):
    gated = with_copy_gate(video, bias=0.2)
    gated.save_pretrained(tmp_path / "gated")
    assert json.loads((tmp_path / "gated" / "config.json").read_text())["copy_gate"] is True
    assert "copy_gate" not in video.config.to_diffusers_dict()  # plain configs round-trip unchanged
    loaded = ss.load_transformer(tmp_path / "gated", dtype=torch.float32)
    assert loaded.config.copy_gate and torch.equal(loaded.copy_gate.bias, gated.copy_gate.bias)
    assert loaded.num_parameters() == gated.config.num_parameters()
    x, text, mask = video_inputs(batch=2, frames=2)
    t = torch.tensor([1.0, 2.0])
    with pytest.raises(ValueError, match="no copy gate"):
        video(x, t, text, mask, previous=x)
    for previous, message in [(x[:, :, :1], "previous must be shaped like x"),
                              (x * float("nan"), "previous contains NaN")]:
        with pytest.raises(ValueError, match=message):
            gated(x, t, text, mask, previous=previous)
    with pytest.raises(ValueError, match="copy_gate needs a video model"):
        ss.TransformerConfig(copy_gate=True, patch_size=(2, 2, 2))
