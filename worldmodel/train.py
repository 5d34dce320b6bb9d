"""`sana-stream train-world`: train the embedded world model on the procedural maze, with the demo model's code.

Stages (each cached under the work folder; a rerun resumes where it stopped):
1. rollouts: trajectories in training worlds, half from the random policy and half from the exploring one,
   rendered once (two processes) and kept with the action behind every frame;
2. autoencoder: the demo's autoencoder stage (sana_stream/demo/train.py) on frames drawn from the rollouts;
3. latents: the rollouts cut into clips of CLIP_CHUNKS frames and encoded; on a quarter of the frames the key
   bits of the action are cleared, so the model also learns to follow the continuous deltas alone, and half of
   the clips start with the zero action, as a stepped world's first (start) frame does;
4. transformer + text encoder: the demo's diffusion-forcing stage, chunk-causal with one-frame chunks and the
   actions passed per frame;
5. actions: branching trajectories (worldmodel/sim/dataset.py: a history, then the next frame under each of the
   nine single-key actions from the same pose) are rendered and encoded, and the stage-4 model is fine-tuned on
   them, with branch groups making up most of every batch and plain clips the rest. Trained on plain
   trajectories alone, the model reads the motion in its history and ignores the action (an inverse-dynamics
   probe names the action in its frames at chance level); a branch group can only be told apart by its actions;
5b. copy gate: the stage-5 model gets a zero-initialised copy gate (TransformerConfig.copy_gate) and is fine-tuned
   on the same data with a clean history and one frame learnt, the gate at a higher learning rate. Without it, a
   "none" step redraws the frame instead of keeping it, and the change reads as motion;
6. guidance distillation: the stage-5b model's action-guided velocity (spec.ACTION_GUIDANCE) taught to a copy of
   it, so that the SDK steps one row per world instead of a guided pair (world.json's action_guidance is then 1);
7. evaluation on held-out worlds (PSNR against the true simulator, next to the copy-last-frame baseline) and
   export: the demo's pipeline folder plus world.json and a model card with the measured numbers.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

from sana_stream.demo.train import (
    TrainConfig, _attention_kernel, _caption_table, _checkpoint_due, _cosine, _draw_clips, _load, _optimizer_step,
    _progress, _resume, _save, _to_model, export, train_autoencoder, train_transformer,
)
from sana_stream.model import SanaTransformer, TransformerConfig
from sana_stream.sampling import classifier_free_guidance, make_sampler
from sana_stream.text import TextEncoder
from sana_stream.vae.dc_ae import DCAE

from . import spec
from .actions import KEYS
from .model import action_guided_velocity
from .sim import BRANCH_ACTIONS, branching, rollout

CLIPS_PER_ROLLOUT = 8
MAX_WARMUP = 40  # unrecorded steps before a rollout starts recording
KEY_DROP = 0.25  # fraction of frames whose action keeps only its continuous part
INSTALL_FOLDER = Path(__file__).resolve().parent / "assets" / "world"  # what WorldModel.from_pretrained() loads
EVAL_HORIZONS = (1, 8, 32, 128)
EVAL_WORLDS = 16

# Sized for about an hour on 2 CPU cores (see the model card for the measured time).
DEFAULTS = dict(work="runs/world", seed=0, ae_steps=900, ae_batch=32, ae_lr=1.5e-3, clips=2400, dit_steps=5000,
                dit_batch=32, dit_lr=8e-4, caption_dropout=0.0, clean_chunk_prob=0.5, checkpoint_every=50,
                text_steps=0, object_weight=0.0, continuation_cycles=())


@dataclass
class WorldTrainConfig(TrainConfig):
    branch_states: int = 2400  # histories rendered with a branch for every single-key action (stage 5)
    branch_groups: int = 3  # branch groups per batch in stage 5 (the rest of the batch is plain clips)
    action_steps: int = 5000  # stage 5's fine-tuning steps
    action_lr: float = 4e-4
    gate_steps: int = 1500  # stage 5b: the copy gate's fine-tuning steps (0: no gate)
    gate_lr: float = 2e-4
    gate_head_lr: float = 5e-3  # the gate's own projection, which starts from zero
    distill_steps: int = 1500  # stage 6: action guidance folded into the weights (0: the SDK guides instead)
    distill_lr: float = 1e-4


def world_config(**overrides) -> WorldTrainConfig:
    return WorldTrainConfig(**{**DEFAULTS, **overrides})


# ----- stage 1: rollouts ---------------------------------------------------------------------------------------


def _rollout_job(job: tuple[int, str, int, int, int]):
    seed, policy, length, warmup, policy_seed = job
    return rollout(seed, policy, length, warmup=warmup, policy_seed=policy_seed)


def make_rollouts(cfg: WorldTrainConfig, work: Path, processes: int = 2) -> dict:
    """frames uint8 (R, L, H, W, 3), actions float32 (R, L, ACTION_DIM), captions [R]; L = clips' frames."""
    path = work / "rollouts.pt"
    count = math.ceil(cfg.clips / CLIPS_PER_ROLLOUT)
    cached = _load(path)
    if cached is not None and cached["frames"].shape[0] == count:
        return cached
    rng = np.random.default_rng([cfg.seed, 3])
    length = CLIPS_PER_ROLLOUT * spec.CLIP_CHUNKS
    jobs = [(int(rng.integers(spec.EVAL_SEED_START)), ("random", "explore")[i % 2], length,
             int(rng.integers(MAX_WARMUP + 1)), i) for i in range(count)]
    with get_context("fork").Pool(processes) as pool:
        results = pool.map(_rollout_job, jobs, chunksize=8)
    out = {"frames": torch.from_numpy(np.stack([r[0] for r in results])),
           "actions": torch.from_numpy(np.stack([r[1] for r in results])),
           "captions": [r[2] for r in results]}
    _save(path, out)
    return out


# ----- stage 3: latents ----------------------------------------------------------------------------------------


@torch.no_grad()
def _encode(ae: DCAE, frames: np.ndarray, device: str, batch: int = 256) -> torch.Tensor:
    """uint8 frames (..., H, W, 3) -> bf16 latents (..., C, h, w) on the CPU, encoded `batch` frames at a time."""
    flat = frames.reshape(-1, *frames.shape[-3:])
    latents = [ae.encode(_to_model(flat[i : i + batch]).to(device).contiguous(memory_format=torch.channels_last))
               .to("cpu", torch.bfloat16) for i in range(0, len(flat), batch)]
    return torch.cat(latents).unflatten(0, frames.shape[:-3])


@torch.no_grad()
def encode_rollouts(cfg: WorldTrainConfig, work: Path, ae: DCAE, rollouts: dict) -> dict:
    path = work / "latents.pt"
    cached = _load(path)
    if cached is not None and cached["latents"].shape[0] == cfg.clips:
        return cached
    frames, actions = rollouts["frames"], rollouts["actions"].clone()
    r, length = frames.shape[:2]
    rng = torch.Generator().manual_seed(cfg.seed * 31 + 4)
    drop = torch.rand(r, length, generator=rng) < KEY_DROP
    actions[..., : len(KEYS)] *= (~drop).unsqueeze(-1)
    clip_starts = torch.arange(0, length, spec.CLIP_CHUNKS)
    first_still = torch.rand(r, len(clip_starts), generator=rng) < 0.5
    actions[:, clip_starts] *= (~first_still).unsqueeze(-1)

    latents = _encode(ae, frames.numpy(), cfg.device)  # (R, L, C, h, w)
    clips = latents.unflatten(1, (-1, spec.CLIP_CHUNKS)).flatten(0, 1)[: cfg.clips]
    out = {"latents": clips, "actions": actions.unflatten(1, (-1, spec.CLIP_CHUNKS)).flatten(0, 1)[: cfg.clips],
           "captions": [c for c in rollouts["captions"] for _ in range(CLIPS_PER_ROLLOUT)][: cfg.clips],
           "scaling_factor": 1.0 / clips.float().std().item()}
    _save(path, out)
    return out


# ----- stage 5: actions ---------------------------------------------------------------------------------------


def _branch_job(job: tuple[int, int, int]):
    seed, warmup, policy_seed = job
    return branching(seed, spec.CLIP_CHUNKS - 1, warmup=warmup, policy_seed=policy_seed)


@torch.no_grad()
def make_branches(cfg: WorldTrainConfig, work: Path, ae: DCAE, processes: int = 2) -> dict:
    """Branching trajectories in training worlds, encoded: history (S, CLIP_CHUNKS - 1, C, h, w), branches
    (S, len(BRANCH_ACTIONS), C, h, w), their actions, captions [S]."""
    path = work / "branches.pt"
    cached = _load(path)
    if cached is not None and cached["history"].shape[0] == cfg.branch_states:
        return cached
    rng = np.random.default_rng([cfg.seed, 5])
    jobs = [(int(rng.integers(spec.EVAL_SEED_START)), int(rng.integers(MAX_WARMUP + 1)), i)
            for i in range(cfg.branch_states)]
    with get_context("fork").Pool(processes) as pool:
        results = pool.map(_branch_job, jobs, chunksize=16)
    out = {"history": _encode(ae, np.stack([r[0] for r in results]), cfg.device),
           "history_actions": torch.from_numpy(np.stack([r[1] for r in results])),
           "branches": _encode(ae, np.stack([r[2] for r in results]), cfg.device),
           "branch_actions": torch.from_numpy(np.stack([r[3] for r in results])),
           "captions": [r[4] for r in results]}
    _save(path, out)
    return out


def with_branches(data: dict, branches: dict, groups: int) -> dict:
    """The plain clips followed by one clip per branch (the shared history, then that branch's frame), in groups
    of len(BRANCH_ACTIONS): the data layout train_transformer draws branch groups from, `groups` a batch."""
    size = len(BRANCH_ACTIONS)
    history = branches["history"][:, None].expand(-1, size, -1, -1, -1, -1)
    clips = torch.cat([history, branches["branches"][:, :, None]], dim=2).flatten(0, 1)
    history_actions = branches["history_actions"][:, None].expand(-1, size, -1, -1)
    actions = torch.cat([history_actions, branches["branch_actions"][:, :, None]], dim=2).flatten(0, 1)
    return {"latents": torch.cat([data["latents"], clips]), "actions": torch.cat([data["actions"], actions]),
            "captions": data["captions"] + [c for c in branches["captions"] for _ in range(size)],
            "scaling_factor": data["scaling_factor"], "branches": size, "branch_start": len(data["captions"]),
            "branch_groups": groups}


def train_actions(cfg: WorldTrainConfig, work: Path, mixed: dict, model: SanaTransformer, text_model):
    """Stage 5: the stage-4 model fine-tuned on plain clips and branch groups (mixed: with_branches' layout)."""
    return train_transformer(replace(cfg, dit_steps=cfg.action_steps, dit_lr=cfg.action_lr), work, mixed, spec,
                             spec.WORDS, checkpoint="actions.pt",
                             init={"model": model.state_dict(), "text": text_model.state_dict()})


def _frozen_captions(cfg: WorldTrainConfig, tokenizer, text_model, captions: list[str]
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The frozen text encoder's states for the few distinct captions, once, on cfg.device: (table, its mask, each
    clip's row of the table)."""
    row_of, table, table_mask = _caption_table(TextEncoder(tokenizer, text_model.to(cfg.device).eval(), cache_size=0),
                                               captions, spec.TEXT_LENGTH)
    return table.to(cfg.device), table_mask.to(cfg.device), torch.tensor([row_of[c] for c in captions])


def _noise_frame(gen: torch.Generator, x0: torch.Tensor, k: torch.Tensor, jitter: float = 0.0
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clean clips x0 (B, C, T, h, w) with frame k of each row noised, half at the SDK's stepping timesteps and
    half spread over the others: (xt, per-frame t (B, T), noise). jitter: noise the model is not told about on the
    clean frames (train_transformer's robustness to an imperfect history)."""
    b, frames = x0.shape[0], x0.shape[2]
    grid = torch.tensor(spec.STEP_TIMESTEPS)
    level = torch.where(torch.rand(b, generator=gen) < 0.5, grid[torch.randint(len(grid), (b,), generator=gen)],
                        torch.sigmoid(torch.randn(b, generator=gen)) * 1000)
    t = torch.zeros(b, frames)
    t[torch.arange(b), k] = level
    sigma = (t / 1000).view(b, 1, frames, 1, 1).to(x0.device)
    noise = torch.randn(x0.shape, generator=gen).to(x0.device)
    xt = (1 - sigma) * x0 + sigma * noise
    if jitter:
        xt = xt + jitter * torch.randn(x0.shape, generator=gen).to(x0.device) * (sigma == 0)
    return xt, t.to(x0.device), noise


def previous_frames(x0: torch.Tensor) -> torch.Tensor:
    """Each frame's previous clean latent (the first frame's is zeros; no row learns it): a copy gate's input."""
    return torch.cat([torch.zeros_like(x0[:, :, :1]), x0[:, :, :-1]], dim=2)


def with_copy_gate(model: SanaTransformer) -> SanaTransformer:
    """The model with a copy gate added, closed (zero): the same velocities until it is trained."""
    gated = SanaTransformer(TransformerConfig.from_dict({**model.config.to_diffusers_dict(), "copy_gate": True}))
    missing, unexpected = gated.load_state_dict(model.state_dict(), strict=False)
    if unexpected or any(not k.startswith("copy_gate.") for k in missing):
        raise ValueError(f"not a copy gate's keys: missing {missing}, unexpected {unexpected}")
    return gated.to(model.device)


def train_copy_gate(cfg: WorldTrainConfig, work: Path, data: dict, model: SanaTransformer, tokenizer,
                    text_model) -> SanaTransformer:
    """Stage 5b: the stage-5 model with a copy gate, fine-tuned on plain clips and branch groups (data:
    with_branches' layout). Every row has a clean history and one frame learnt: a branch clip its branch frame, a
    plain clip a random one; the gate reads that frame's previous clean latent, as the SDK passes its newest."""
    ckpt_path = work / "gate.pt"
    model = with_copy_gate(model).to(cfg.device).train()
    table, table_mask, caption_row = _frozen_captions(cfg, tokenizer, text_model, data["captions"])
    gate = list(model.copy_gate.parameters())
    rest = [p for n, p in model.named_parameters() if not n.startswith("copy_gate.")]
    opt = torch.optim.AdamW([{"params": rest, "peak": cfg.gate_lr}, {"params": gate, "peak": cfg.gate_head_lr}],
                            weight_decay=0.01)
    start = _resume(ckpt_path, opt, model=model)
    latents, actions, scale = data["latents"], data["actions"], data["scaling_factor"]
    frames, b = spec.CLIP_CHUNKS, cfg.dit_batch
    rows = torch.arange(b)
    gen = torch.Generator().manual_seed(cfg.seed * 7919 + 55 + start)
    device_type = torch.device(cfg.device).type
    bar = _progress(cfg.gate_steps, start, "gate")
    for step in range(start, cfg.gate_steps):
        idx, branch, _ = _draw_clips(gen, b, data)
        x0 = latents[idx].float().permute(0, 2, 1, 3, 4).to(cfg.device) * scale  # (B, C, T, h, w)
        k = torch.where(branch, torch.full((b,), frames - 1), torch.randint(1, frames, (b,), generator=gen))
        xt, t, noise = _noise_frame(gen, x0, k, jitter=0.03)
        rows_of_text = caption_row[idx].to(cfg.device)
        for group in opt.param_groups:
            group["lr"] = _cosine(step, cfg.gate_steps, group["peak"])
        with torch.autocast(device_type, dtype=torch.bfloat16), _attention_kernel(device_type):
            pred = model(xt, t, table[rows_of_text], table_mask[rows_of_text], chunk_frames=1,
                         action=actions[idx].float().to(cfg.device), previous=previous_frames(x0))
        loss = torch.nn.functional.mse_loss(pred.float()[rows, :, k], (noise - x0)[rows, :, k])
        _optimizer_step(opt, model.parameters(), loss, bar)
        if _checkpoint_due(step, cfg.checkpoint_every, cfg.gate_steps):
            _save(ckpt_path, {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step + 1})
    bar.close()
    return model.cpu().eval()


# ----- stage 6: guidance distillation ---------------------------------------------------------------------------


def distill_guidance(cfg: WorldTrainConfig, work: Path, data: dict, model: SanaTransformer, tokenizer, text_model,
                     guidance: float = spec.ACTION_GUIDANCE) -> SanaTransformer:
    """Stage 6: action guidance folded into the weights, so that the SDK steps one row per world instead of two.
    The stage-5 (or 5b) model, frozen, is the teacher. A clip's frame k (1 ≤ k < CLIP_CHUNKS) is noised, the frames
    before it are its clean history (with a copy gate, the frame before k is its `previous`), and the student, which
    starts as the teacher, learns the teacher's guided velocity for it: v_none + guidance·(v_action − v_none),
    v_none with frame k's action zeroed and the history's kept, as the SDK guides. data: with_branches' layout;
    half of every batch is plain clips, half branch clips."""
    ckpt_path = work / "distill.pt"
    teacher = copy.deepcopy(model).eval().requires_grad_(False)
    student = model.to(cfg.device).train()
    teacher.to(cfg.device)
    table, table_mask, caption_row = _frozen_captions(cfg, tokenizer, text_model, data["captions"])
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.distill_lr, weight_decay=0.01)
    start = _resume(ckpt_path, opt, model=student)
    latents, actions, captions, scale = data["latents"], data["actions"], data["captions"], data["scaling_factor"]
    branch_start, n, frames, b = data["branch_start"], len(captions), spec.CLIP_CHUNKS, cfg.dit_batch
    rows = torch.arange(b)
    gen = torch.Generator().manual_seed(cfg.seed * 7919 + 6 + start)
    device_type = torch.device(cfg.device).type
    bar = _progress(cfg.distill_steps, start, "distill")
    for step in range(start, cfg.distill_steps):
        plain = torch.rand(b, generator=gen) < 0.5
        idx = torch.where(plain, torch.randint(branch_start, (b,), generator=gen),
                          branch_start + torch.randint(n - branch_start, (b,), generator=gen))
        x0 = latents[idx].float().permute(0, 2, 1, 3, 4).to(cfg.device) * scale  # (B, C, T, h, w)
        action = actions[idx].float().to(cfg.device)
        k = torch.randint(1, frames, (b,), generator=gen)
        xt, t, _ = _noise_frame(gen, x0, k)
        previous = previous_frames(x0) if model.config.copy_gate else None
        still = action.clone()
        still[rows, k] = 0
        rows_of_text = caption_row[idx].to(cfg.device)
        emb, mask = table[rows_of_text], table_mask[rows_of_text]
        with torch.no_grad(), torch.autocast(device_type, dtype=torch.bfloat16), _attention_kernel(device_type):
            v = teacher(torch.cat([xt, xt]), torch.cat([t, t]), torch.cat([emb, emb]), torch.cat([mask, mask]),
                        chunk_frames=1, action=torch.cat([action, still]),
                        previous=None if previous is None else torch.cat([previous, previous])).float()
        acted, none = v.chunk(2)
        target = classifier_free_guidance(none, acted, guidance)
        for group in opt.param_groups:
            group["lr"] = _cosine(step, cfg.distill_steps, cfg.distill_lr)
        with torch.autocast(device_type, dtype=torch.bfloat16), _attention_kernel(device_type):
            pred = student(xt, t, emb, mask, chunk_frames=1, action=action, previous=previous)
        loss = torch.nn.functional.mse_loss(pred.float()[rows, :, k], target[rows, :, k])  # frame k of each row
        _optimizer_step(opt, student.parameters(), loss, bar)
        if _checkpoint_due(step, cfg.checkpoint_every, cfg.distill_steps):
            _save(ckpt_path, {"model": student.state_dict(), "optimizer": opt.state_dict(), "step": step + 1})
    bar.close()
    return student.cpu().eval()


# ----- stage 7: evaluation -------------------------------------------------------------------------------------


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) of the mean squared error over uint8 batches (N, H, W, 3): a frame the baseline copies exactly
    (a step into a wall) adds zero error instead of an infinite PSNR to an average."""
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean()
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


@torch.no_grad()
def evaluate(ae: DCAE, scale: float, model: SanaTransformer, text: TextEncoder, guidance: float, seed: int = 0
             ) -> dict:
    """Step the model through held-out worlds with the actions of a random-policy rollout, from the true start
    frame, and compare with the simulator at EVAL_HORIZONS; copy-last-frame is the baseline. guidance: the action
    guidance the SDK will step with (world.json)."""
    horizon = max(EVAL_HORIZONS)
    runs = [rollout(spec.EVAL_SEED_START + i, "random", horizon + 1, warmup=10, policy_seed=seed)
            for i in range(EVAL_WORLDS)]
    truth = np.stack([r[0] for r in runs])  # (B, horizon + 1, H, W, 3): frame 0 is the start frame
    actions = torch.from_numpy(np.stack([r[1] for r in runs]))
    b = truth.shape[0]
    dtype = model.dtype
    emb, mask = text.embed([r[2] for r in runs], "", spec.TEXT_LENGTH)
    emb = emb.to(dtype)
    gen = torch.Generator().manual_seed(seed)
    sampler = make_sampler("longsana", timesteps=spec.STEP_TIMESTEPS)  # the stepping the SDK does
    state = model.new_state(b, window=spec.WINDOW)
    start = ae.encode(_to_model(truth[:, 0]).contiguous(memory_format=torch.channels_last)) * scale
    model.append_state(state, start[:, :, None].to(dtype), emb, mask, action=torch.zeros(b, 1, actions.shape[-1]))
    predicted = []
    newest = start[:, :, None].to(dtype) if model.config.copy_gate else None  # what a copy gate copies
    for step in range(1, horizon + 1):
        action = actions[:, step : step + 1]
        x = torch.randn(start[:, :, None].shape, generator=gen)
        for i, t in enumerate(sampler.timesteps):
            v = action_guided_velocity(model, x.to(dtype), t.expand(b), emb, mask, state, action, guidance,
                                       previous=newest)
            x = sampler.step(v, i, x, generator=gen)
        model.append_state(state, x.to(dtype), emb, mask, action=action)
        newest = None if newest is None else x.to(dtype)
        pixels = ae.decode(x[:, :, 0] / scale).clamp(-1, 1)
        predicted.append(((pixels.permute(0, 2, 3, 1) + 1) * 127.5).round().byte().numpy())
    recon = ((ae.decode(start / scale).clamp(-1, 1).permute(0, 2, 3, 1) + 1) * 127.5).round().byte().numpy()
    results = {"autoencoder_psnr": psnr(recon, truth[:, 0])}
    for h in EVAL_HORIZONS:
        results[f"h{h}"] = {"model_psnr": psnr(predicted[h - 1], truth[:, h]),
                            "copy_last_frame_psnr": psnr(truth[:, 0], truth[:, h])}
    return results


# ----- all stages ----------------------------------------------------------------------------------------------


MODEL_CARD = """# sana-stream embedded world model

An action-conditioned world model of the real SANA-Video architecture at toy size, trained from scratch on this
project's procedural first-person maze (`worldmodel/sim`): a ray-cast 3-D world of textured walls, floors,
ceilings and landmark pillars, 64×64 frames at 10 steps per second. It exists so that `WorldModel.step(action)`
runs with no download.

- transformer: SanaVideoTransformer3DModel config with `action_dim` 14, {transformer:.2f} M parameters (ReLU linear
  attention with 3-D RoPE, Mix-FFN with temporal conv, 1×{patch}×{patch} patches over the {latent}×{latent} latent
  frame); actions (8 key bits + 6 continuous camera deltas, `worldmodel.actions`) join the per-frame time embedding
  through a zero-initialised MLP, and the camera deltas are also drawn per token as Plücker maps of the camera's
  motion (SANA-WM's camera maps; `sana_stream/model/plucker.py`), added in every block after self-attention through
  zero-initialised projections; a copy gate (`copy_gate`: a zero-initialised read of the final tokens, g in [0, 1]
  per latent pixel) mixes each pixel's velocity toward the one that keeps the previous frame; trained
  chunk-causally with one-frame chunks and a history window of {window} frames;
- autoencoder: AutoencoderDC config, 8× spatial compression, 64² frames → 8×8×16 latents,
  {autoencoder:.2f} M parameters, applied per frame;
- text encoder: 1-layer Gemma-2 over the captions "a walk through a <brick|stone|wood|metal> maze",
  {text:.2f} M parameters, trained jointly with the transformer.

Stepping (world.json): two denoising passes per action, at t = 1000 and t = 500 (re-noised in between, LongSANA
style), then the t = 0 pass that appends the frame to the history (it runs inside the next step's first pass); the
start frame is encoded as one history frame. {guidance}

Data: rollouts of random and exploring policies in worlds with seeds below 1,000,000; worlds from seed 1,000,000 on
are held out. Each frame is paired with the action that produced it. Then an action stage: the model is fine-tuned
on branching trajectories (a history from a policy that draws a fresh action every step, then the next frame under
each of the nine single-key actions from the same pose), whole groups making up most of every batch beside plain
clips (`branch_groups` below). Trained on plain trajectories alone the model ignored its actions (it read the
motion in its history instead); a branch group can only be told apart by its actions. Then a copy-gate stage on
the same data: the gate is added, closed, and trained with the rest (a clean history, one frame learnt). Without
it, a "none" step redrew the frame instead of keeping it, and the change read as motion.

Reproduce: `sana-stream train-world --install` (seeded; stages are cached and resume), with the settings
{config}. This build took {minutes:.0f} minutes on the machine that trained it.

## Measured (held-out worlds, random-policy actions, from the true start frame)

{evaluation}
"""


def _evaluation_table(results: dict) -> str:
    lines = ["| horizon (steps) | model PSNR (dB) | copy-last-frame PSNR (dB) |", "|---|---|---|"]
    for h in EVAL_HORIZONS:
        r = results[f"h{h}"]
        lines.append(f"| {h} | {r['model_psnr']:.2f} | {r['copy_last_frame_psnr']:.2f} |")
    lines.append(f"\nAutoencoder reconstruction of the start frames: {results['autoencoder_psnr']:.2f} dB. "
                 f"{EVAL_WORLDS} worlds, one trajectory each.")
    return "\n".join(lines)


def _guidance_note(cfg: WorldTrainConfig) -> str:
    g = f"{spec.ACTION_GUIDANCE:g}"
    if cfg.distill_steps:
        return (f"Action guidance {g} is in the weights: a last stage ({cfg.distill_steps} steps) taught the model "
                f"the previous stage's guided velocity v_none + {g}·(v_action − v_none), so each pass is one "
                "row per world and world.json's action_guidance is 1.")
    return f"Each pass is action-guided (velocity = v_none + {g}·(v_action − v_none)): two rows per world."


def train_world(cfg: WorldTrainConfig, export_to: str | Path | None = None) -> Path:
    work = Path(cfg.work)
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    started = time.perf_counter()
    rollouts = make_rollouts(cfg, work)
    pool = rollouts["frames"].flatten(0, 1)

    def sample_frames(rng: np.random.Generator, count: int, frames: torch.Tensor = pool) -> np.ndarray:
        return frames[rng.integers(len(frames), size=count)].numpy()

    ae = train_autoencoder(cfg, work, spec, sample_frames)
    data = encode_rollouts(cfg, work, ae, rollouts)
    del rollouts, pool, sample_frames  # the rendered frames are not needed past the latents
    model, tokenizer, text_model = train_transformer(cfg, work, data, spec, spec.WORDS)
    if cfg.action_steps or cfg.gate_steps or cfg.distill_steps:
        mixed = with_branches(data, make_branches(cfg, work, ae), cfg.branch_groups)
    if cfg.action_steps:
        model, tokenizer, text_model = train_actions(cfg, work, mixed, model, text_model)
    if cfg.gate_steps:
        model = train_copy_gate(cfg, work, mixed, model, tokenizer, text_model)
    guidance = spec.ACTION_GUIDANCE  # what the SDK applies (world.json); 1 once the weights carry it
    if cfg.distill_steps:
        model = distill_guidance(cfg, work, mixed, model, tokenizer, text_model)
        guidance = 1.0
    ae = ae.cpu()

    results = evaluate(ae, data["scaling_factor"], model, TextEncoder(tokenizer, text_model, cache_size=0), guidance)
    (work / "evaluation.json").write_text(json.dumps(results, indent=2))
    card = (MODEL_CARD.replace("{evaluation}", _evaluation_table(results)).replace("{window}", str(spec.WINDOW))
            .replace("{guidance}", _guidance_note(cfg)))
    folder = export(Path(export_to) if export_to else work / "model", ae, data["scaling_factor"], model, tokenizer,
                    text_model, cfg, time.perf_counter() - started, spec, card)
    (folder / "world.json").write_text(json.dumps(spec.world_json(guidance), indent=2))
    (folder / "evaluation.json").write_text(json.dumps({"results": results, "training": asdict(cfg)}, indent=2))
    return folder



def install(folder: Path) -> Path:
    """Copy a trained world-model folder into the package, replacing the shipped one."""
    if INSTALL_FOLDER.exists():
        shutil.rmtree(INSTALL_FOLDER)
    shutil.copytree(folder, INSTALL_FOLDER)
    return INSTALL_FOLDER
