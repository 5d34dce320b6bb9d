"""`train-world`'s action stage (branch groups are laid out and drawn whole, and the stage fine-tunes the base
model, checkpoints and resumes), its copy-gate stage and its guidance distillation."""

from __future__ import annotations

import pytest
import torch

from sana_stream.demo.train import _draw_clips
from sana_stream.model import SanaTransformer, TransformerConfig
from sana_stream.vae.dc_ae import DCAE
from sana_stream.vae.dc_ae_config import DCAEConfig
from worldmodel import spec
from worldmodel.sim import BRANCH_ACTIONS
from worldmodel.model import action_guided_velocity
from worldmodel.train import (
    distill_guidance, make_branches, train_actions, train_copy_gate, with_branches, world_config,
)


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
    mixed = with_branches(data, make_branches(cfg, tmp_path, ae), cfg.branch_groups)
    model, _, _ = train_actions(cfg, tmp_path, mixed, base, text)
    saved = torch.load(tmp_path / "actions.pt", weights_only=True)
    assert saved["step"] == 2 and torch.load(tmp_path / "branches.pt", weights_only=True)["history"].shape[0] == 2
    # Started from the base model's weights (not a fresh init) and moved away from them.
    assert not torch.equal(model.action_embedder.linear_2.weight, base.action_embedder.linear_2.weight)
    # The Plücker maps' projections start at zero and learn from the branches' camera motion.
    assert not base.transformer_blocks[0].plucker_proj.weight.any()
    assert model.transformer_blocks[0].plucker_proj.weight.any()
    assert torch.allclose(model.proj_out.weight, base.proj_out.weight, atol=0.05)
    cfg.action_steps = 3
    train_actions(cfg, tmp_path, mixed, base, text)
    assert torch.load(tmp_path / "actions.pt", weights_only=True)["step"] == 3


def test_guidance_distillation_learns_the_guided_velocity_and_resumes(tmp_path):
    # A teacher whose action branches matter (perturbed from zero), a tiny clip set; after distilling, the student's
    # one-row prediction for a frame after clean history is nearer the teacher's guided velocity than the teacher's
    # own unguided prediction is.
    torch.manual_seed(0)
    teacher = SanaTransformer(TransformerConfig.from_dict(spec.TRANSFORMER)).eval()
    with torch.no_grad():
        for name, p in teacher.named_parameters():
            if "action_embedder.linear_2" in name or "plucker_proj" in name:
                p.normal_(0, 0.05)
    tokenizer = spec.demo.build_tokenizer(spec.WORDS)
    text_model = spec.build_text_model(len(tokenizer), 0)
    clips, frames = 4, spec.CLIP_CHUNKS
    keys = torch.zeros(clips, frames, 14)
    keys[:, :, 8:] = torch.randn(clips, frames, 6) * 0.1
    data = {"latents": torch.randn(clips, frames, spec.LATENT_CHANNELS, 8, 8), "actions": keys,
            "captions": ["a walk through a brick maze"] * clips, "scaling_factor": 1.0, "branch_start": 2}
    cfg = world_config(work=str(tmp_path), distill_steps=40, distill_lr=3e-3, dit_batch=4, checkpoint_every=20)
    student = distill_guidance(cfg, tmp_path, data, _copy(teacher), tokenizer, text_model, guidance=3.0)
    assert torch.load(tmp_path / "distill.pt", weights_only=True)["step"] == 40

    x = data["latents"][:1].permute(0, 2, 1, 3, 4)
    emb, mask = _text(tokenizer, text_model)
    with torch.no_grad():
        state = teacher.new_state(1)
        student_state = student.new_state(1)
        for i in range(frames - 1):
            teacher.append_state(state, x[:, :, i:i + 1], emb, mask, action=keys[:1, i:i + 1])
            student.append_state(student_state, x[:, :, i:i + 1], emb, mask, action=keys[:1, i:i + 1])
        noise = torch.randn(1, spec.LATENT_CHANNELS, 1, 8, 8)
        t, last = torch.tensor([1000.0]), keys[:1, -1:]
        target = action_guided_velocity(teacher, noise, t, emb, mask, state, last, 3.0)
        plain = teacher(noise, t, emb, mask, state=state, action=last)
        learnt = student(noise, t, emb, mask, state=student_state, action=last)
    assert (learnt - target).pow(2).mean() < 0.7 * (plain - target).pow(2).mean()
    cfg.distill_steps = 41  # resumes from the checkpoint: one more step
    distill_guidance(cfg, tmp_path, data, _copy(teacher), tokenizer, text_model, guidance=3.0)
    assert torch.load(tmp_path / "distill.pt", weights_only=True)["step"] == 41


def test_copy_gate_stage_learns_to_keep_a_still_world_and_resumes(tmp_path):
    # Clips of a still world (every frame the first): the stage adds a closed gate to the base model and opens it,
    # so that a noised frame's clean estimate after a clean history lands nearer the previous frame than the base
    # model's does.
    torch.manual_seed(0)
    base = SanaTransformer(TransformerConfig.from_dict(spec.TRANSFORMER)).eval()
    tokenizer = spec.demo.build_tokenizer(spec.WORDS)
    text_model = spec.build_text_model(len(tokenizer), 0)
    clips, frames = 4, spec.CLIP_CHUNKS
    still = torch.randn(clips, 1, spec.LATENT_CHANNELS, 8, 8).expand(-1, frames, -1, -1, -1).contiguous()
    data = {"latents": still, "actions": torch.zeros(clips, frames, 14),
            "captions": ["a walk through a brick maze"] * clips, "scaling_factor": 1.0}
    cfg = world_config(work=str(tmp_path), gate_steps=30, gate_head_lr=3e-2, dit_batch=4, checkpoint_every=10)
    gated = train_copy_gate(cfg, tmp_path, data, _copy(base), tokenizer, text_model)
    assert gated.config.copy_gate and not base.config.copy_gate
    assert torch.load(tmp_path / "gate.pt", weights_only=True)["step"] == 30
    assert torch.allclose(gated.proj_out.weight, base.proj_out.weight, atol=0.05)  # fine-tuned, not fresh

    x = still[:1].permute(0, 2, 1, 3, 4)
    emb, mask = _text(tokenizer, text_model)
    noise = torch.randn(1, spec.LATENT_CHANNELS, 1, 8, 8)
    t = torch.tensor([1000.0])
    misses = []
    with torch.no_grad():
        for model, previous in ((base, None), (gated, x[:, :, -2:-1])):
            state = model.new_state(1)
            for i in range(frames - 1):
                model.append_state(state, x[:, :, i:i + 1], emb, mask)
            v = model(noise, t, emb, mask, state=state, previous=previous)
            misses.append((noise - v - x[:, :, -1:]).pow(2).mean())
    assert misses[1] < 0.5 * misses[0]
    cfg.gate_steps = 31  # resumes from the checkpoint: one more step
    train_copy_gate(cfg, tmp_path, data, _copy(base), tokenizer, text_model)
    assert torch.load(tmp_path / "gate.pt", weights_only=True)["step"] == 31


def _copy(model):
    copied = SanaTransformer(model.config)
    copied.load_state_dict(model.state_dict())
    return copied


def _text(tokenizer, text_model):
    from sana_stream.text import TextEncoder

    return TextEncoder(tokenizer, text_model.eval(), cache_size=0).embed(["a walk through a brick maze"], "",
                                                                         spec.TEXT_LENGTH)
