"""`train-world`'s action stage: branch groups are laid out and drawn whole, and the stage fine-tunes the base
model, checkpoints and resumes."""

from __future__ import annotations

import pytest
import torch

from sana_stream.demo.train import _draw_clips
from sana_stream.model import SanaTransformer, TransformerConfig
from sana_stream.vae.dc_ae import DCAE
from sana_stream.vae.dc_ae_config import DCAEConfig
from worldmodel import spec
from worldmodel.sim import BRANCH_ACTIONS
from worldmodel.train import train_actions, with_branches, world_config


def test_branch_groups_are_drawn_whole_beside_plain_clips():
    data = {"captions": [""] * (10 + 4 * 9), "branches": 9, "branch_start": 10, "branch_groups": 2}
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        idx, branch, _ = _draw_clips(gen, 32, data)
        assert idx.shape == branch.shape == (32,)
        assert (idx[:14] < 10).all() and not branch[:14].any() and branch[14:].all()
        for group in idx[14:].view(2, 9):
            assert torch.equal(group, group[0] + torch.arange(9)) and (group[0] - 10) % 9 == 0 and group[-1] < 46
    plain, branch, _ = _draw_clips(gen, 8, {"captions": [""] * 5})
    assert (plain < 5).all() and not branch.any()
    with pytest.raises(ValueError, match="do not fit in a batch"):
        _draw_clips(gen, 16, data)


def test_with_branches_appends_one_clip_per_branch_after_the_plain_clips():
    c, h, w = 3, 2, 2
    data = {"latents": torch.zeros(2, 5, c, h, w), "actions": torch.zeros(2, 5, 14), "captions": ["x", "y"],
            "scaling_factor": 0.5}
    branches = {"history": torch.arange(2 * 4.0).view(2, 4, 1, 1, 1).expand(-1, -1, c, h, w),
                "history_actions": torch.ones(2, 4, 14), "branches": -torch.arange(1, 19.0).view(2, 9, 1, 1, 1)
                .expand(-1, -1, c, h, w), "branch_actions": torch.arange(18.0).view(2, 9, 1).expand(-1, -1, 14),
                "captions": ["p", "q"]}
    mixed = with_branches(data, branches, groups=1)
    assert mixed["latents"].shape == (2 + 18, 5, c, h, w) and mixed["actions"].shape == (20, 5, 14)
    assert mixed["branch_start"] == 2 and mixed["branches"] == len(BRANCH_ACTIONS) and mixed["branch_groups"] == 1
    assert mixed["captions"] == ["x", "y"] + ["p"] * 9 + ["q"] * 9 and mixed["scaling_factor"] == 0.5
    clip = mixed["latents"][2 + 9 + 4]  # state 1, branch 4
    assert torch.equal(clip[:4, 0, 0, 0], torch.tensor([4.0, 5, 6, 7])) and clip[4, 0, 0, 0] == -14
    assert torch.equal(mixed["actions"][2 + 9 + 4, :4], torch.ones(4, 14))
    assert (mixed["actions"][2 + 9 + 4, 4] == 13).all()


def test_action_stage_fine_tunes_the_base_model_and_resumes(tmp_path):
    cfg = world_config(work=str(tmp_path), branch_states=2, branch_groups=1, action_steps=2, dit_batch=10,
                       checkpoint_every=1)
    torch.manual_seed(0)
    ae = DCAE(DCAEConfig.from_dict(spec.AUTOENCODER)).eval()
    base = SanaTransformer(TransformerConfig.from_dict(spec.TRANSFORMER))
    text = spec.build_text_model(len(spec.demo.build_tokenizer(spec.WORDS)), 0)
    data = {"latents": torch.randn(4, spec.CLIP_CHUNKS, spec.LATENT_CHANNELS, 8, 8), "actions": torch.zeros(4, 5, 14),
            "captions": ["a walk through a brick maze"] * 4, "scaling_factor": 1.0}
    model, _, _ = train_actions(cfg, tmp_path, data, ae, base, text)
    saved = torch.load(tmp_path / "actions.pt", weights_only=True)
    assert saved["step"] == 2 and torch.load(tmp_path / "branches.pt", weights_only=True)["history"].shape[0] == 2
    # Started from the base model's weights (not a fresh init) and moved away from them.
    assert not torch.equal(model.action_embedder.linear_2.weight, base.action_embedder.linear_2.weight)
    assert torch.allclose(model.proj_out.weight, base.proj_out.weight, atol=0.05)
    cfg.action_steps = 3
    train_actions(cfg, tmp_path, data, ae, base, text)
    assert torch.load(tmp_path / "actions.pt", weights_only=True)["step"] == 3
