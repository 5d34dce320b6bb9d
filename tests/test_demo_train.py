"""`train-demo`'s stages at toy settings: they run end to end, resume from their checkpoints, freeze the text
encoder after its stage, and export a folder that load_pipeline streams."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sana_stream as ss
from sana_stream.demo import text as text_stage
from sana_stream.demo.train import (TrainConfig, _draw_clips, _motion_weight, _object_weight, continuation_followers,
                                    train_continuation, train_demo)


def test_train_demo_end_to_end_resumes_and_exports(tmp_path, monkeypatch):
    from sana_stream.model import SanaTransformer

    timesteps = []  # each training pass's per-frame timesteps (B, T)
    forward = SanaTransformer.forward

    def recording_forward(self, x, timestep, *args, **kwargs):
        if self.training:
            timesteps.append(timestep.detach().cpu().clone())
        return forward(self, x, timestep, *args, **kwargs)

    monkeypatch.setattr(SanaTransformer, "forward", recording_forward)
    # Of seed 0's first six continuation clips, clip 4 is a single-object translation, clips 3 and 5 spin.
    cfg = TrainConfig(work=str(tmp_path / "work"), ae_steps=2, ae_batch=2, clips=4, text_steps=4, text_batch=8,
                      dit_steps=2, dit_batch=2, checkpoint_every=2, continuation_clips=6,
                      continuation_cycles=((2, "left right up down", 0.0, 0.0), (2, "spinning", 250.0, 1.0)))
    folder = train_demo(cfg, export_to=tmp_path / "model")
    work = tmp_path / "work"
    # Both rows of a batch of 2 are continuation rows (share 0.75): 6 history frames at the cycle's level, then
    # a chunk of pure noise. The first cycle's history is clean, the second's at t = 250.
    passes = [t for t in timesteps if t.shape[1] == 9]
    for t, level in zip(passes[-4:], (0.0, 0.0, 250.0, 250.0)):
        assert (t[:, :6] == level).all() and (t[:, 6:] == 1000).all()
    # In the second cycle every row's second history chunk is the model's own first: the streaming sampler's three
    # steps after the first chunk at the cycle's level, with CFG (a negative and a positive row per clip).
    own = [t for t in timesteps if t.shape[1] == 6]
    assert len(own) == 2 * 3 and all(t.shape[0] == 4 and (t[:, :3] == 250).all() for t in own)
    assert [float(t[0, 3]) for t in own[:3]] == [1000.0, 750.0, 500.0]
    assert torch.load(work / "text_encoder.pt", weights_only=True)["step"] == 4
    first = torch.load(work / "continuation.pt", weights_only=True)
    fresh = torch.load(work / "continuation_latents.pt", weights_only=True)
    assert first["step"] == 2 and fresh["latents"].shape[0] == 6
    second = torch.load(work / "continuation2.pt", weights_only=True)
    assert second["step"] == 2 and any(not torch.equal(first["model"][k], second["model"][k]) for k in first["model"])
    assert fresh["scaling_factor"] == torch.load(work / "latents.pt", weights_only=True)["scaling_factor"]
    # Longer stages resume from their checkpoints (text at step 4, transformer and continuation at step 2); the
    # exported text encoder is the text stage's, the one the transformer's caption states came from.
    cfg.text_steps, cfg.dit_steps = 6, 4
    cfg.continuation_cycles = ((4, "left right up down", 0.0, 0.0), (4, "spinning", 250.0, 1.0))
    folder = train_demo(cfg, export_to=tmp_path / "model")
    assert torch.load(work / "text_encoder.pt", weights_only=True)["step"] == 6
    assert torch.load(work / "continuation.pt", weights_only=True)["step"] == 4
    assert torch.load(work / "continuation2.pt", weights_only=True)["step"] == 4
    pipe = ss.load_pipeline(folder)
    stream = pipe.stream("a red circle moving left on a blue background", seed=0)
    assert next(stream).shape == (256, 256, 3)
    trained = torch.load(tmp_path / "work" / "text_encoder.pt", weights_only=True)["model"]
    shipped = pipe.text_encoder.model.state_dict()
    assert all(torch.equal(trained[k].float(), shipped[k].float()) for k in trained)


def test_scene_facts_cover_every_field():
    from sana_stream import data

    scene = data.parse_caption("a small red circle moving left and a blue star on a green to white gradient")
    facts = text_stage.scene_facts(scene)
    fields = text_stage._fields()
    assert set(facts) == set(fields)
    assert all(facts[name] in classes for name, classes in fields.items())
    assert (facts["object0.colour"], facts["object0.motion"], facts["object1.motion"], facts["object2.shape"]) == \
        ("red", "left", "still", text_stage.NONE)
    assert (facts["background.kind"], facts["background.colour1"]) == ("gradient", "white")


def test_object_weight_marks_what_stands_out():
    x0 = torch.zeros(1, 16, 2, 8, 8)
    x0[:, :, :, 3, 4] = 2.0  # one latent pixel unlike the rest of its frame
    w = _object_weight(x0, 3.0)
    assert w.shape == (1, 1, 2, 8, 8)
    assert torch.all(w[..., 3, 4] > 5) and torch.allclose(w[..., 0, 0], torch.ones(1, 1, 2))
    assert np.isclose(_object_weight(torch.randn(2, 16, 3, 8, 8) * 100, 3.0).max().item(), 10.0)


def test_motion_weight_marks_what_changes():
    x0 = torch.zeros(1, 16, 3, 8, 8)
    x0[:, :, 1:, 2, 2] = 1.0  # appears at frame 1 and stays
    w = _motion_weight(x0, 4.0)
    assert w.shape == (1, 1, 3, 8, 8)
    assert w[0, 0, 1, 2, 2] == 5.0 and w[0, 0, 2, 2, 2] == 1.0 and w[0, 0, 0, 2, 2] == 5.0
    assert torch.all(w[..., 0, 0] == 1.0)


def test_continuation_rows_lead_the_batch_and_come_from_the_followers():
    data = {"captions": [""] * 20, "followers": torch.tensor([3, 7]), "follow_rows": 12}
    gen = torch.Generator().manual_seed(0)
    idx, branch, follow = _draw_clips(gen, 16, data)
    assert follow[:12].all() and not follow[12:].any() and not branch.any()
    assert set(idx[:12].tolist()) <= {3, 7} and (idx < 20).all()


def test_continuation_followers_are_single_object_clips_of_the_cycle_motions():
    captions = ["a small blue star moving down on a cyan background",
                "a pink circle moving down on a red background, camera panning left",
                "a big orange square spinning on a sky over black ground",
                "a red circle growing and a blue star moving left on a green background",
                "a brown diamond shrinking on a sky over black ground"]
    assert continuation_followers(captions, "left right up down").tolist() == [0]
    assert continuation_followers(captions, "down growing shrinking").tolist() == [0, 4]
    assert continuation_followers(captions, "orbiting").tolist() == []
    with pytest.raises(ValueError, match="sideways"):
        continuation_followers(captions, "left sideways")


def test_continuation_cycles_are_checked_before_any_training(tmp_path):
    data = {"captions": ["a small blue star moving down on a cyan background"]}
    for cycles, problem in ((((2, "down", 0.0, 0.0), (0, "down", 0.0, 0.0)), "cycle 2 has 0 steps"),
                            (((2, "down", 0.0, 0.0), (2, "down", 1000.0, 0.0)), "cycle 2 has history level 1000"),
                            (((2, "down", 0.0, 0.0), (2, "down", 0.0, 1.5)), "cycle 2 has own-chunk share 1.5"),
                            (((2, "down", 0.0, 0.0), (2, "growing", 0.0, 0.0)),
                             "no single-object clip moving 'growing'")):
        with pytest.raises(ValueError, match=problem):
            train_continuation(TrainConfig(continuation_cycles=cycles), tmp_path, data, None, None)
    assert not list(tmp_path.iterdir())


def test_own_chunk_is_sampled_from_the_history_before_it():
    from sana_stream.demo import spec
    from sana_stream.demo.train import _own_chunk
    from sana_stream.model import SanaTransformer, TransformerConfig

    torch.manual_seed(0)
    model = SanaTransformer(TransformerConfig.from_dict(spec.TRANSFORMER))
    k, text = spec.STREAM["chunk_frames"], spec.TRANSFORMER["caption_channels"]
    history = torch.randn(2, spec.TRANSFORMER["in_channels"], 2 * k, 8, 8)
    emb, mask = torch.randn(2, 5, text), torch.ones(2, 5, dtype=torch.long)
    negative = (torch.zeros(1, 5, text), torch.ones(1, 5, dtype=torch.long))

    def own(h):
        return _own_chunk(model, h, emb, mask, 250.0, k, torch.Generator().manual_seed(1), spec.STREAM, negative)

    made = own(history)
    assert made.shape == (2, history.shape[1], k, 8, 8) and torch.isfinite(made).all()
    replaced = history.clone()
    replaced[:, :, k:] = 0  # the chunk it stands in for is not looked at
    assert torch.equal(own(replaced), made)
    earlier = history.clone()
    earlier[:, :, :k] += 1  # the chunk before it is
    assert not torch.allclose(own(earlier), made)
