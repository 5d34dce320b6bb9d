"""`sana-stream train-demo`: train the embedded demo model from scratch on the procedural world, reproducibly.

Stages (each checkpointed under the work folder; a rerun resumes where it stopped):
1. autoencoder: per-frame reconstruction of rendered frames (L1 + MSE), with noise on the latents during
   decoding so the decoder tolerates the DiT's imperfect latents;
2. latents: a fixed set of training clips (CLIP_CHUNKS chunks each) rendered and encoded once, and the
   scaling factor set so the DiT sees unit-variance latents;
3. text encoder: pretrained on the caption language (demo/text.py), then frozen;
4. transformer, chunk-causally: every chunk of a clip is either clean history (t = 0, what the streaming state
   holds) or noised to its own level (diffusion forcing), with the levels drawn half the time at the streaming
   sampler's timesteps so few-step sampling works; 10% empty captions for CFG; latent pixels that stand out
   from their frame (the objects) weigh more in the loss;
5. continuation: fine-tunes on fresh clips where most of every batch is a clean history and the next chunk from
   pure noise, from single-object clips of the cycle's motions (sometimes with the history held still), beside
   the stage-4 objective with motion-weighted loss: what a stream asks of the model, and how its objects learn to
   move. It runs in cosine cycles (warm restarts), each from the weights the cycle before left;
6. export: a diffusers-style pipeline folder (model_index.json, component folders, sana_stream.json with the
   stream/generate defaults, a model card).

The stages take the model's spec (sizes, stream settings, text encoder) as `model_spec`, the demo's by default,
so other models of this family (the world model in worldmodel/train.py) train with the same code; the world
model keeps the first recipe (text encoder trained jointly, no object weighting: text_steps=0, object_weight=0).
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from tqdm.auto import tqdm

from .. import data as world
from ..data.world import DIRECTIONS
from ..model import SanaTransformer, TransformerConfig
from ..sampling import classifier_free_guidance, make_sampler
from ..text import TextEncoder
from ..vae.dc_ae import DCAE
from ..vae.dc_ae_config import DCAEConfig
from ..weights import write_component_folder
from . import spec


TRANSLATIONS = " ".join(DIRECTIONS)
# v6's: v4's two cycles (v3: the first alone), then three with the history noised as a stream noises it (v5), then
# two where half the continuation rows' history ends in a chunk of the model's own.
CONTINUATION_CYCLES = ((3500, TRANSLATIONS, 0.0, 0.0), (2000, TRANSLATIONS, 0.0, 0.0),
                       (2000, TRANSLATIONS, 250.0, 0.0), (2000, TRANSLATIONS + " growing shrinking", 250.0, 0.0),
                       (2000, TRANSLATIONS, 250.0, 0.0), (2000, TRANSLATIONS + " growing shrinking", 250.0, 0.5),
                       (2000, TRANSLATIONS, 250.0, 0.5))


def describe_cycles(cycles: tuple[tuple[int, str, float, float], ...]) -> str:
    """Continuation cycles in words, for the model card and train-demo --help."""
    return "; ".join(f"{n} steps on {m}" + (f", history at t = {h:g}" if h else "")
                     + (f", {r:.0%} of its rows after a chunk of the model's own" if r else "")
                     for n, m, h, r in cycles) or "none"


@dataclass
class TrainConfig:
    work: str = "runs/demo"
    seed: int = 0
    ae_steps: int = 2500
    ae_batch: int = 16
    ae_lr: float = 1e-3
    text_steps: int = 600  # 0: no text stage, the encoder trains jointly with the DiT instead (demo v1, world)
    text_batch: int = 128
    text_lr: float = 2e-3
    clips: int = 6000
    dit_steps: int = 2500
    dit_batch: int = 16
    dit_lr: float = 5e-4
    caption_dropout: float = 0.1
    clean_chunk_prob: float = 0.35  # a chunk is clean history (t = 0) with this probability, else noised
    object_weight: float = 3.0  # extra loss weight on latent pixels that stand out from their frame (objects)
    motion_weight: float = 0.0  # extra loss weight on latent pixels that change from the frame before (motion)
    # Stage 5, continuation (no cycles: none, v2's recipe): fine-tunes on fresh clips where `continuation_share` of
    # every batch is the case streaming lives on, clean history and the next chunk from pure noise, drawn from the
    # single-object clips of the cycle's motions; `onset_prob` of those rows hold their history still at its last
    # frame. Each cycle, (steps, motions, history level, own share), is a cosine run with a fresh optimizer from the
    # previous cycle's weights; its continuation rows' history is noised to that level (0: clean), as a stream with
    # that context_noise sees it, and in `own share` of them the history's second chunk is the model's own sample.
    continuation_cycles: tuple[tuple[int, str, float, float], ...] = CONTINUATION_CYCLES
    continuation_clips: int = 10000
    continuation_lr: float = 3e-4
    continuation_share: float = 0.75
    continuation_motion_weight: float = 3.0
    onset_prob: float = 0.25
    checkpoint_every: int = 50
    device: str = "cpu"  # a GPU only makes it faster; the data is rendered on the CPU either way


# ----- helpers -------------------------------------------------------------------------------------------------


def _scene(rng: np.random.Generator):
    # Most training scenes hold one object: prompts are judged on single objects, and a tiny model learns the
    # binding of colour, shape and motion fastest there; the rest keep multi-object captions in the language.
    return world.sample_scene(rng, split="train", max_objects=1 if rng.random() < 0.6 else 3)


def _to_model(frames: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def _cosine(step: int, total: int, peak: float, warmup: int = 50) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def _save(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # atomic: a stop mid-write never leaves a broken checkpoint


def _load(path: Path) -> dict | None:
    return torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None


def _resume(path: Path, opt: torch.optim.Optimizer, **modules: torch.nn.Module) -> int:
    """A stage's checkpoint, if there is one, loaded into its optimizer and into each module under its key
    (model=..., text=...); the step to go on from (0 without one)."""
    ckpt = _load(path)
    if ckpt is None:
        return 0
    for key, module in modules.items():
        module.load_state_dict(ckpt[key])
    opt.load_state_dict(ckpt["optimizer"])
    return ckpt["step"]


def _progress(total: int, initial: int, desc: str):
    return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, smoothing=0.05)


def _optimizer_step(opt: torch.optim.Optimizer, params, loss: torch.Tensor, bar, **shown: str) -> None:
    """Backward, gradients clipped to norm 1, one step, the progress bar advanced with the loss (and `shown`):
    every training stage's update."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    bar.update()
    bar.set_postfix(loss=f"{loss.item():.4f}", **shown)


def _checkpoint_due(step: int, every: int, total: int) -> bool:
    """After step (0-based) a stage saves: every `every` steps and after its last."""
    return (step + 1) % every == 0 or step + 1 == total


# ----- stage 1: autoencoder ------------------------------------------------------------------------------------


def _demo_frames(rng: np.random.Generator, count: int) -> np.ndarray:
    scenes = [_scene(rng) for _ in range(count)]
    return np.concatenate([world.render(s, 1, size=spec.SIZE, start_frame=int(rng.integers(0, 400)))
                           for s in scenes])


def train_autoencoder(cfg: TrainConfig, work: Path, model_spec: ModuleType = spec,
                      sample_frames: Callable[[np.random.Generator, int], np.ndarray] = _demo_frames) -> DCAE:
    """sample_frames(rng, n): n uint8 (H, W, 3) training frames, drawn with rng."""
    ckpt_path = work / "autoencoder.pt"
    torch.manual_seed(cfg.seed)
    ae = DCAE(DCAEConfig.from_dict(model_spec.AUTOENCODER)).to(cfg.device)
    opt = torch.optim.AdamW(ae.parameters(), lr=cfg.ae_lr, weight_decay=0.0)
    start = _resume(ckpt_path, opt, model=ae)
    rng = np.random.default_rng([cfg.seed, 1, start])  # seeded by step, so a resumed run draws fresh data
    ae.train()
    bar = _progress(cfg.ae_steps, start, "autoencoder")
    for step in range(start, cfg.ae_steps):
        frames = sample_frames(rng, cfg.ae_batch)
        x = _to_model(frames).to(cfg.device).contiguous(memory_format=torch.channels_last)
        for group in opt.param_groups:
            group["lr"] = _cosine(step, cfg.ae_steps, cfg.ae_lr)
        with torch.autocast(torch.device(cfg.device).type, dtype=torch.bfloat16):  # AMX/tensor cores: ~2x
            z = ae.encoder(x).float()
            noise = 0.1 * z.detach().std() * torch.randn_like(z) * torch.rand(z.shape[0], 1, 1, 1, device=z.device)
            recon = ae.decoder(z + noise).float()
        loss = F.l1_loss(recon, x) + F.mse_loss(recon, x) + 1e-4 * z.pow(2).mean()
        _optimizer_step(opt, ae.parameters(), loss, bar)
        if _checkpoint_due(step, cfg.checkpoint_every, cfg.ae_steps):
            _save(ckpt_path, {"model": ae.state_dict(), "optimizer": opt.state_dict(), "step": step + 1})
    bar.close()
    return ae.eval()


# ----- stage 2: latents ----------------------------------------------------------------------------------------


@torch.no_grad()
def encode_clips(cfg: TrainConfig, work: Path, ae: DCAE, count: int, file: str = "latents.pt", rng_stream: int = 2,
                 scaling_factor: float | None = None) -> dict:
    """`count` clips rendered with the rng stream [seed, rng_stream] and encoded, cached in work/file; the scaling
    factor is set from them unless given (a later stage's clips keep the first set's)."""
    path = work / file
    cached = _load(path)
    frames_per_clip = spec.CLIP_CHUNKS * spec.STREAM["chunk_frames"]
    if cached is not None and cached["latents"].shape[0] == count:
        return cached
    rng = np.random.default_rng([cfg.seed, rng_stream])
    latent_size = spec.SIZE // ae.spatial_compression
    latents = torch.empty(count, frames_per_clip, spec.LATENT_CHANNELS, latent_size, latent_size,
                          dtype=torch.bfloat16)
    captions = []
    for i in tqdm(range(count), desc=f"encode clips ({file})", dynamic_ncols=True):
        scene = _scene(rng)
        frames = world.render(scene, frames_per_clip, size=spec.SIZE, start_frame=int(rng.integers(0, 200)))
        pixels = _to_model(frames).to(cfg.device).contiguous(memory_format=torch.channels_last)
        latents[i] = ae.encode(pixels).to("cpu", torch.bfloat16)
        captions.append(world.caption(scene))
    scale = scaling_factor if scaling_factor is not None else 1.0 / latents.float().std().item()
    out = {"latents": latents, "captions": captions, "scaling_factor": scale}
    _save(path, out)
    return out


# ----- stage 3: transformer + text encoder ---------------------------------------------------------------------


def _sample_timesteps(rng: torch.Generator, batch: int, chunks: int, clean_prob: float,
                      grid: list[float] = spec.STREAM["timesteps"]) -> torch.Tensor:
    """(batch, chunks) timesteps in [0, 1000]: clean history (0) or a noise level per chunk; half of the noise
    levels are the streaming sampler's `grid`."""
    grid = torch.tensor(grid)
    at_grid = grid[torch.randint(len(grid), (batch, chunks), generator=rng)]
    logit_normal = torch.sigmoid(torch.randn(batch, chunks, generator=rng)) * 1000
    t = torch.where(torch.rand(batch, chunks, generator=rng) < 0.5, at_grid, logit_normal)
    clean = torch.rand(batch, chunks, generator=rng) < clean_prob
    clean[:, -1] = False  # every clip supervises at least its last chunk
    return torch.where(clean, torch.zeros_like(t), t)


def _object_weight(x0: torch.Tensor, strength: float) -> torch.Tensor:
    """(B, 1, T, h, w) loss weights, 1 + strength × each latent pixel's distance from its frame's median (per
    channel, unit-variance latents): at 32× compression an object is 1–2 latent pixels, and with plain area
    weighting the model learns to drop it (demo v1's objects faded out of the stream)."""
    median = x0.flatten(3).median(dim=3).values[..., None, None]
    distance = (x0 - median).norm(dim=1, keepdim=True) / math.sqrt(x0.shape[1])
    return 1 + strength * distance.clamp(max=3.0)


def _motion_weight(x0: torch.Tensor, strength: float) -> torch.Tensor:
    """(B, 1, T, h, w) loss weights, 1 + strength × how much each latent pixel changes from the frame before
    (the first frame: to the frame after): a moving object shifts a fraction of a latent pixel per frame, a
    change the plain loss barely sees."""
    change = (x0[:, :, 1:] - x0[:, :, :-1]).norm(dim=1, keepdim=True) / math.sqrt(x0.shape[1])
    change = torch.cat([change[:, :, :1], change], dim=2)
    return 1 + strength * change.clamp(max=3.0)


def _attention_kernel(device_type: str):
    """On a CPU, plain matmul attention (the transformer's cross-attention to the text, and a jointly trained text
    encoder's own): over so few text tokens its backward is faster than the flash kernel's (a training step 9–17 %
    faster for the demo transformer, 8–24 % for the world model's, interleaved A/B); elsewhere torch's choice."""
    if device_type != "cpu":
        return contextlib.nullcontext()
    return sdpa_kernel([SDPBackend.MATH])


def _caption_table(text: TextEncoder, captions: list[str], length: int) -> tuple[dict[str, int], torch.Tensor,
                                                                                 torch.Tensor]:
    """A frozen encoder's states for every distinct caption and the empty one, computed once."""
    distinct = ["", *sorted(set(captions) - {""})]
    states, masks = [], []
    with torch.no_grad():
        for i in range(0, len(distinct), 256):
            e, m = text.embed(distinct[i:i + 256], "", length)
            states.append(e.float().cpu())
            masks.append(m.cpu())
    return {c: i for i, c in enumerate(distinct)}, torch.cat(states), torch.cat(masks)


@torch.no_grad()
def _own_chunk(model: SanaTransformer, history: torch.Tensor, emb: torch.Tensor, mask: torch.Tensor, level: float,
               k: int, rng: torch.Generator, stream: dict, negative: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """(B, C, k, h, w): the chunk after all but the last of `history`'s chunks, as the stream makes it: those
    chunks noised to `level` as context, the streaming sampler from pure noise, CFG against the `negative` text
    row at the stream's guidance scale. Returns the chunk's clean estimate."""
    context = history[:, :, :-k]
    context = (1 - level / 1000) * context + level / 1000 * torch.randn(context.shape, generator=rng).to(context)
    sampler = make_sampler("longsana", timesteps=stream["timesteps"])
    x = torch.randn(history[:, :, -k:].shape, generator=rng).to(history)
    b, frames = len(x), history.shape[2]
    emb2 = torch.cat([negative[0].expand(b, -1, -1).to(emb), emb])
    mask2 = torch.cat([negative[1].expand(b, -1).to(mask), mask])
    device_type = x.device.type
    for i in range(sampler.num_steps):
        t = torch.full((2 * b, frames), float(level), device=x.device)
        t[:, -k:] = sampler.timesteps[i]
        with torch.autocast(device_type, dtype=torch.bfloat16), _attention_kernel(device_type):
            v = model(torch.cat([context, x], 2).repeat(2, 1, 1, 1, 1), t, emb2, mask2, chunk_frames=k)[:, :, -k:]
        x = sampler.step(classifier_free_guidance(v[:b], v[b:], stream["guidance_scale"]), i, x, generator=rng)
    return x


def _draw_clips(rng: torch.Generator, batch: int, data: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(clip indices (batch,), which of them are branch clips, which are continuation rows: (batch,) bool each).
    With branch groups in the data (data["branches"] clips a group, stored consecutively from
    data["branch_start"]), data["branch_groups"] whole groups fill most of the batch, so every step contrasts the
    actions taken from the same history. With data["follow_rows"], that many rows lead the batch, drawn from the
    clips data["followers"] lists (their history noised to data["follow_level"], 0 by default)."""
    n, size, rows = len(data["captions"]), data.get("branches", 0), data.get("follow_rows", 0)
    follow = torch.arange(batch) < rows
    if not size:
        idx = torch.randint(n, (batch,), generator=rng)
        if rows:
            followers = data["followers"]
            idx[:rows] = followers[torch.randint(len(followers), (rows,), generator=rng)]
        return idx, torch.zeros(batch, dtype=torch.bool), follow
    if rows:
        raise ValueError("continuation rows and branch groups do not mix in one batch")
    start, groups = data["branch_start"], data["branch_groups"]
    if groups * size > batch:
        raise ValueError(f"{groups} branch groups of {size} clips do not fit in a batch of {batch}")
    first = start + size * torch.randint((n - start) // size, (groups,), generator=rng)
    branch = (first[:, None] + torch.arange(size)).flatten()
    plain = torch.randint(start, (batch - len(branch),), generator=rng)
    return torch.cat([plain, branch]), torch.arange(batch) >= len(plain), follow


def train_transformer(cfg: TrainConfig, work: Path, data: dict, model_spec: ModuleType = spec,
                      words: list[str] | None = None, checkpoint: str = "transformer.pt", init: dict | None = None):
    """data: latents (N, frames, C, h, w), captions, scaling_factor and, for a world model (a config with
    action_dim), actions (N, frames, action_dim), each frame's action; optionally branch groups (see
    _draw_clips), whose history is kept clean so that only their last frame is learnt, or continuation rows, whose
    history is clean or at data["follow_level"] (held still at its last frame in cfg.onset_prob of them; a noised
    history is supervised like any noised chunk) and whose last chunk is pure noise (t = 1000), so that they learn
    what comes next from history and caption alone; in data["follow_own"] of them the history's last chunk is the
    model's own (_own_chunk), not supervised. words: the caption vocabulary. With cfg.text_steps the text
    encoder is pretrained on the caption language first (demo/text.py) and frozen; without, it trains jointly with
    the transformer. checkpoint: the file in `work` this run resumes from; init: {"model", "text"} state dicts a
    fresh run starts from (a fine-tuning stage; a frozen text encoder is then init's, not pretrained again)."""
    if words is None:
        words = list(world.VOCABULARY) + [",", "."]
    ckpt_path = work / checkpoint
    tokenizer = spec.build_tokenizer(words)
    text_model = model_spec.build_text_model(len(tokenizer), cfg.seed)
    text = TextEncoder(tokenizer, text_model.to(cfg.device), cache_size=0)
    latents, captions, scale = data["latents"], data["captions"], data["scaling_factor"]
    frozen_text = cfg.text_steps > 0
    if init is not None:
        text_model.load_state_dict(init["text"])
        text_model.requires_grad_(not frozen_text)
    elif frozen_text:
        from .text import pretrain_text_encoder

        accuracy = pretrain_text_encoder(cfg, work, text)
        print(f"text encoder, held-out captions, facts read from the last token: min {min(accuracy.values()):.3f} "
              f"({min(accuracy, key=accuracy.get)}), mean {np.mean(list(accuracy.values())):.3f}")
    if frozen_text:
        row_of, table, table_mask = _caption_table(text, captions, model_spec.TEXT_LENGTH)
    torch.manual_seed(cfg.seed)
    model = SanaTransformer(TransformerConfig.from_dict(model_spec.TRANSFORMER)).to(cfg.device)
    if init is not None:
        model.load_state_dict(init["model"])
    else:
        with torch.no_grad():  # start as the identity on the residual paths that are zero-initialised in Sana
            model.proj_out.weight.zero_()
            for block in model.transformer_blocks:
                block.ff.conv_temp.weight.zero_()
    params = list(model.parameters()) + ([] if frozen_text else list(text_model.parameters()))
    opt = torch.optim.AdamW(params, lr=cfg.dit_lr, weight_decay=0.01)
    # A frozen encoder's own checkpoint (the text stage's) is the one it trained against.
    start = _resume(ckpt_path, opt, model=model, **({} if frozen_text else {"text": text_model}))
    actions = data.get("actions")
    level, own_share = data.get("follow_level", 0.0), data.get("follow_own", 0.0)
    k, chunks = model_spec.STREAM["chunk_frames"], model_spec.CLIP_CHUNKS
    gen = torch.Generator().manual_seed(cfg.seed * 7919 + start)
    device_type = torch.device(cfg.device).type
    model.train()
    text_model.train(not frozen_text)
    bar = _progress(cfg.dit_steps, start, Path(checkpoint).stem)
    for step in range(start, cfg.dit_steps):
        idx, branch, follow = _draw_clips(gen, cfg.dit_batch, data)
        x0 = latents[idx].float().permute(0, 2, 1, 3, 4).to(cfg.device) * scale  # (B, C, T, h, w)
        if follow.any() and cfg.onset_prob:
            # A motion's onset: the stream's opening chunk barely moves, so later chunks must start the captioned
            # motion from a still history, not only carry on one they are shown.
            still = (follow & (torch.rand(cfg.dit_batch, generator=gen) < cfg.onset_prob)).to(cfg.device)
            history = (chunks - 1) * k
            x0[still, :, :history] = x0[still, :, history - 1:history]
        texts = [captions[i] if torch.rand(1, generator=gen).item() >= cfg.caption_dropout else ""
                 for i in idx.tolist()]
        if frozen_text:
            rows = torch.tensor([row_of[c] for c in texts])
            emb, mask = table[rows].to(cfg.device), table_mask[rows].to(cfg.device)
        else:
            with torch.autocast(device_type, dtype=torch.bfloat16), _attention_kernel(device_type):
                emb, mask = text.embed(texts, "", model_spec.TEXT_LENGTH)
        own = torch.zeros_like(follow)
        if own_share:  # drawn only then, so that cycles without own chunks train as before
            own = follow & (torch.rand(cfg.dit_batch, generator=gen) < own_share)
        if own.any():
            # Exposure bias: the stream's history is the model's own chunks, not the data's. These rows see their
            # last history chunk as the model streams it from the real one before, and still learn the real next
            # chunk: to carry on the caption's motion from a history that has drifted from it.
            with torch.no_grad():  # the sampling pass's negative row, never trained through
                negative = (table[:1], table_mask[:1]) if frozen_text else text.embed([""], "", model_spec.TEXT_LENGTH)
            x0[own, :, -2 * k:-k] = _own_chunk(model, x0[own, :, :-k], emb[own].float(), mask[own], level, k, gen,
                                               model_spec.STREAM, negative)
        t_chunk = _sample_timesteps(gen, cfg.dit_batch, chunks, cfg.clean_chunk_prob, model_spec.STREAM["timesteps"])
        t_chunk[branch, :-1] = 0
        t_chunk[follow, :-1] = level
        t_chunk[follow, -1] = 1000.0
        t = t_chunk.repeat_interleave(k, dim=1).to(cfg.device)  # per latent frame
        sigma = (t / 1000).view(cfg.dit_batch, 1, -1, 1, 1)
        noise = torch.randn(x0.shape, generator=gen).to(cfg.device)
        # Clean history gets a little noise the model is not told about: robustness to its own imperfect past.
        history_jitter = 0.03 * torch.randn(x0.shape, generator=gen).to(cfg.device) * (sigma == 0)
        xt = (1 - sigma) * x0 + sigma * noise + history_jitter
        for group in opt.param_groups:
            group["lr"] = _cosine(step, cfg.dit_steps, cfg.dit_lr)
        with torch.autocast(device_type, dtype=torch.bfloat16), _attention_kernel(device_type):
            action = None if actions is None else actions[idx].float().to(cfg.device)
            pred = model(xt, t, emb.float(), mask, chunk_frames=k, action=action)
        weight = (sigma > 0).float().expand_as(pred).clone()
        weight[own, :, -2 * k:-k] = 0  # the model's own chunk is no target
        if cfg.object_weight:
            weight = weight * _object_weight(x0, cfg.object_weight)
        if cfg.motion_weight:
            weight = weight * _motion_weight(x0, cfg.motion_weight)
        loss = ((pred.float() - (noise - x0)) ** 2 * weight).sum() / weight.sum().clamp_min(1)
        _optimizer_step(opt, params, loss, bar)
        if _checkpoint_due(step, cfg.checkpoint_every, cfg.dit_steps):
            _save(ckpt_path, {"model": model.state_dict(), "text": text_model.state_dict(),
                              "optimizer": opt.state_dict(), "step": step + 1})
    bar.close()
    return model.cpu().eval(), tokenizer, text_model.cpu().eval()


# ----- stage 5: continuation -----------------------------------------------------------------------------------


def continuation_followers(captions: list[str], motions: str) -> torch.Tensor:
    """Indices of the clips with one object whose motion is one of `motions` (space-separated) and no camera pan:
    the clips a continuation cycle draws its continuation rows from."""
    wanted = motions.split()
    unknown = sorted(set(wanted) - set(world.MOTIONS))
    if unknown:
        raise ValueError(f"unknown continuation motion(s) {unknown}; the world's motions are {list(world.MOTIONS)}")
    scenes = [world.parse_caption(c) for c in captions]
    return torch.tensor([i for i, s in enumerate(scenes)
                         if len(s.objects) == 1 and s.objects[0].motion in wanted and s.pan is None], dtype=torch.long)


def train_continuation(cfg: TrainConfig, work: Path, data: dict, model: SanaTransformer, text_model):
    """The stage-4 model fine-tuned with continuation rows, cycle after cycle (TrainConfig: stage 5). Diffusion
    forcing spreads the loss over every noise level and over noisy histories, and a chunk after clean history from
    pure noise, the case a stream runs on, gets a small share of it: v2, trained so, kept its objects still
    (README). Cycle i resumes from continuation.pt (the first) or continuation{i + 1}.pt."""
    if not 0 < cfg.continuation_share <= 1:
        raise ValueError(f"continuation_share must be in (0, 1], got {cfg.continuation_share}")
    rows = round(cfg.continuation_share * cfg.dit_batch)
    cycles = []  # checked whole before any training, so that a bad later cycle does not wait an hour to fail
    for i, (steps, motions, level, own) in enumerate(cfg.continuation_cycles):
        if steps < 1:
            raise ValueError(f"continuation cycle {i + 1} has {steps} steps; each needs at least 1")
        if not 0 <= level < 1000:
            raise ValueError(f"continuation cycle {i + 1} has history level {level}; it must be in [0, 1000)")
        if not 0 <= own <= 1:
            raise ValueError(f"continuation cycle {i + 1} has own-chunk share {own}; it must be in [0, 1]")
        followers = continuation_followers(data["captions"], motions)
        if not len(followers):
            raise ValueError(f"the continuation clips hold no single-object clip moving {motions!r}")
        cycles.append((steps, followers, level, own))
    for i, (steps, followers, level, own) in enumerate(cycles):
        model, _, text_model = train_transformer(
            replace(cfg, dit_steps=steps, dit_lr=cfg.continuation_lr, motion_weight=cfg.continuation_motion_weight),
            work, dict(data, followers=followers, follow_rows=rows, follow_level=level, follow_own=own),
            checkpoint="continuation.pt" if i == 0 else f"continuation{i + 1}.pt",
            init={"model": model.state_dict(), "text": text_model.state_dict()})
    return model


# ----- stage 6: export -----------------------------------------------------------------------------------------


MODEL_INDEX = {
    "_class_name": "SanaVideoPipeline",
    "transformer": ["diffusers", "SanaVideoTransformer3DModel"],
    "vae": ["diffusers", "AutoencoderDC"],
    "text_encoder": ["transformers", "Gemma2Model"],
    "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
    "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
}


def export(folder: Path, ae: DCAE, scale: float, model: SanaTransformer, tokenizer, text_model,
           cfg: TrainConfig, seconds: float, model_spec: ModuleType = spec, card: str | None = None) -> Path:
    """card: the model card template (MODEL_CARD's fields), the demo's by default."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps(MODEL_INDEX, indent=2))
    model.save_pretrained(folder / "transformer")
    vae_config = dict(model_spec.AUTOENCODER, scaling_factor=scale)
    write_component_folder(folder / "vae", vae_config, ae.state_dict())
    text_model.save_pretrained(folder / "text_encoder", safe_serialization=True)
    tokenizer.save_pretrained(folder / "tokenizer")
    (folder / "scheduler").mkdir()
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(
        {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 1.0}, indent=2))
    defaults = {"causal": True, "generate": model_spec.GENERATE, "stream": model_spec.STREAM,
                "training": {**asdict(cfg), "seconds": round(seconds)}}
    (folder / "sana_stream.json").write_text(json.dumps(defaults, indent=2))
    (folder / "README.md").write_text((card or MODEL_CARD).format(
        transformer=model.num_parameters() / 1e6, autoencoder=sum(p.numel() for p in ae.parameters()) / 1e6,
        text=sum(p.numel() for p in text_model.parameters()) / 1e6, minutes=seconds / 60,
        compression=ae.spatial_compression, latent=model_spec.SIZE // ae.spatial_compression,
        patch=model.config.patch_size[-1],
        cycles=describe_cycles(cfg.continuation_cycles),
        config=json.dumps(asdict(cfg))))
    return folder


MODEL_CARD = """# sana-stream embedded demo model

A text-to-video model of the real SANA-Video architecture at toy size, trained from scratch on this project's
procedural world (`sana_stream/data`): 1–3 coloured shapes moving over simple backgrounds, captioned by the
world's grammar. It exists so that a fresh install streams real, trained video with no download.

- transformer: SanaVideoTransformer3DModel config, {transformer:.2f} M parameters (ReLU linear attention with
  3-D RoPE, Mix-FFN with temporal conv, {patch}×{patch} patches), trained chunk-causally (chunks of 3 frames, a
  window of 2 chunks);
- autoencoder: AutoencoderDC config, {compression}× spatial compression, 256² frames → {latent}×{latent}×16
  latents, {autoencoder:.2f} M parameters, applied per frame;
- text encoder: 2-layer Gemma-2 with a word-level tokenizer over the caption language, {text:.2f} M
  parameters, pretrained on training-split captions (each word's identity at its position, the whole scene
  read from the last token) and then frozen while the transformer trains;
- continuation stage: the trained transformer fine-tuned on fresh clips with three quarters of every batch
  a two-chunk history (clean, or noised to the cycle's level as a stream with that context noise shows it) and
  the next chunk from pure noise (single-object clips of the cycle's motions, a quarter of them with the history
  held still; in some cycles a share of them with the history's second chunk the model's own, sampled as the
  stream samples it, and the real next chunk still the target), the rest the chunk-causal objective with
  motion-weighted loss, in cosine cycles, each from the weights the one before left: {cycles}.

Data: procedurally rendered clips at 256×256, 16 fps; a documented set of colour×shape×motion triples
(`sana_stream.data.HELDOUT_TRIPLES`) is never shown in training and is used to test generalisation.

Reproduce: `sana-stream train-demo --install` (seeded; stages checkpoint and resume), with the settings
{config}. This build took {minutes:.0f} minutes on the machine that trained it.

Measured figures (adherence, stability, speed) and known limits: see the project README, section
"The embedded demo model" (`python benchmarks/demo_model.py` prints them).
"""


def train_demo(cfg: TrainConfig, export_to: str | Path | None = None) -> Path:
    work = Path(cfg.work)
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    started = time.perf_counter()
    ae = train_autoencoder(cfg, work)
    data = encode_clips(cfg, work, ae, cfg.clips)
    fresh = encode_clips(cfg, work, ae, cfg.continuation_clips, "continuation_latents.pt", rng_stream=5,
                         scaling_factor=data["scaling_factor"]) if cfg.continuation_cycles else None
    ae = ae.cpu()
    model, tokenizer, text_model = train_transformer(cfg, work, data)
    if fresh is not None:
        model = train_continuation(cfg, work, fresh, model, text_model)
    return export(Path(export_to) if export_to else work / "model", ae, data["scaling_factor"], model, tokenizer,
                  text_model, cfg, time.perf_counter() - started)
