"""train-demo's text stage: teach the small Gemma the caption language before the DiT reads it, then freeze it.

Trained jointly from scratch with the DiT (demo v1), the encoder learned the structure words but left the colour
words nearly indistinguishable: at the output, "red" and "blue" in "... on a red/blue background" were 3.6 apart
at norm 11.3, and the DiT's prediction moved 0.4 %. A reader and a writer that both start random give each other
almost no gradient. Real SANA reads a pretrained, frozen Gemma; the demo does the same at its scale: the encoder
is pretrained on training-split captions to

1. keep each token's identity in its own output state (a linear read-out of the word at every position), and
2. gather the whole scene in the last token, the one position a causal encoder lets see everything: every
   object's colour, shape, motion and size, the background's kind and colours, and the pan.

Both are plain classification losses on the states the DiT will read (`TextEncoder.embed`, the same call).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..text import TextEncoder
from . import spec

NONE = "<none>"  # an absent object, background colour or pan
MAX_OBJECTS = 3


def _fields() -> dict[str, tuple[str, ...]]:
    """The scene's facts the last token must hold: name -> its classes."""
    from ..data import world as data

    fields: dict[str, tuple[str, ...]] = {}
    for i in range(MAX_OBJECTS):
        fields[f"object{i}.colour"] = (NONE, *data.COLOURS)
        fields[f"object{i}.shape"] = (NONE, *data.SHAPES)
        fields[f"object{i}.motion"] = (NONE, data.STILL, *data.MOTIONS)
        fields[f"object{i}.size"] = (NONE, *data.SIZES)
    fields["background.kind"] = tuple(data.BACKGROUNDS)
    fields["background.colour0"] = tuple(data.COLOURS)
    fields["background.colour1"] = (NONE, *data.COLOURS)
    fields["pan"] = (NONE, *data.DIRECTIONS)
    return fields


def scene_facts(scene) -> dict[str, str]:
    """The value of every field of `_fields()` for a scene."""
    facts = {"background.kind": scene.background.kind, "background.colour0": scene.background.colours[0],
             "background.colour1": scene.background.colours[1] if len(scene.background.colours) > 1 else NONE,
             "pan": scene.pan or NONE}
    for i in range(MAX_OBJECTS):
        obj = scene.objects[i] if i < len(scene.objects) else None
        for name in ("colour", "shape", "motion", "size"):
            facts[f"object{i}.{name}"] = getattr(obj, name) if obj is not None else NONE
    return facts


class Probes(torch.nn.Module):
    """Linear read-outs: the word at each position, and the scene's facts from the last token."""

    def __init__(self, hidden: int, vocab: int, fields: dict[str, tuple[str, ...]]):
        super().__init__()
        self.fields = fields
        self.word = torch.nn.Linear(hidden, vocab)
        self.facts = torch.nn.Linear(hidden, sum(len(c) for c in fields.values()))

    def loss(self, states: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor,
             targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, per-field accuracy). states (B, L, H); ids, mask (B, L); targets (B, fields) class indices."""
        word_loss = F.cross_entropy(self.word(states)[mask.bool()], ids[mask.bool()])
        last = states[torch.arange(len(states)), mask.sum(1) - 1]
        logits = self.facts(last).split([len(c) for c in self.fields.values()], dim=-1)
        fact_loss = sum(F.cross_entropy(z, targets[:, j]) for j, z in enumerate(logits)) / len(logits)
        accuracy = torch.stack([(z.argmax(-1) == targets[:, j]).float().mean() for j, z in enumerate(logits)])
        return word_loss + fact_loss, accuracy


def _batch(text: TextEncoder, scenes: list, fields: dict[str, tuple[str, ...]]):
    """(captions, token ids, fact targets) for a list of scenes."""
    from .. import data

    captions = [data.caption(scene) for scene in scenes]
    facts = [scene_facts(scene) for scene in scenes]
    targets = torch.tensor([[classes.index(f[name]) for name, classes in fields.items()] for f in facts])
    tokens = text.tokenizer(captions, padding="max_length", max_length=spec.TEXT_LENGTH, truncation=True,
                            return_tensors="pt")
    return captions, tokens.input_ids, targets


def pretrain_text_encoder(cfg, work: Path, text: TextEncoder) -> dict[str, float]:
    """Pretrain `text.model` in place for cfg.text_steps on training-split scenes' captions (checkpointed in
    work/text_encoder.pt, resumable) and freeze it. Returns the held-out fact accuracy (scenes whose object is a
    held-out triple), the share of each field read correctly from the last token."""
    from .. import data
    from .train import _checkpoint_due, _cosine, _optimizer_step, _progress, _resume, _save, _scene

    fields = _fields()
    probes = Probes(text.model.config.hidden_size, len(text.tokenizer), fields)
    params = list(text.model.parameters()) + list(probes.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.text_lr, weight_decay=0.01)
    path = work / "text_encoder.pt"
    start = _resume(path, opt, model=text.model, probes=probes)
    rng = np.random.default_rng([cfg.seed, 3, start])
    text.model.train()
    bar = _progress(cfg.text_steps, start, "text encoder")
    for step in range(start, cfg.text_steps):
        captions, ids, targets = _batch(text, [_scene(rng) for _ in range(cfg.text_batch)], fields)
        for group in opt.param_groups:
            group["lr"] = _cosine(step, cfg.text_steps, cfg.text_lr)
        states, mask = text.embed(captions, "", spec.TEXT_LENGTH)
        loss, accuracy = probes.loss(states.float(), ids, mask, targets)
        _optimizer_step(opt, params, loss, bar, facts=f"{accuracy.min().item():.2f}")
        if _checkpoint_due(step, cfg.checkpoint_every, cfg.text_steps):
            _save(path, {"model": text.model.state_dict(), "probes": probes.state_dict(),
                         "optimizer": opt.state_dict(), "step": step + 1})
    bar.close()
    text.model.eval().requires_grad_(False)
    with torch.no_grad():
        captions, ids, targets = _batch(text, data.heldout_scenes(200, seed=11), fields)
        states, mask = text.embed(captions, "", spec.TEXT_LENGTH)
        _, accuracy = probes.loss(states.float(), ids, mask, targets)
    return {name: round(float(a), 3) for name, a in zip(fields, accuracy)}
