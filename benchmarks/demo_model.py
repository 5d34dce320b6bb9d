"""The embedded demo model, measured: prompt adherence, stability, speed, size.

    python benchmarks/demo_model.py [--model PATH] [--compile] [--quick]

- adherence: 50 held-out prompts (colour×shape×motion triples never seen in training) and 50 seen ones, each
  streamed for 2 s from its own seed and judged by the procedural world's analyser (object colour by pixel
  clustering, motion direction by centroid tracking); the rendered ground truth of the same prompts is judged
  too, as the analyser's own ceiling; and the held-out prompts again with the model streaming on from two real
  chunks of the rendered clip (does it carry on a motion it is shown?), and how well one transformer pass
  predicts the chunk after two real ones (against copying the last frame) from noise levels down to t = 500;
- stability: a 2-minute stream with a prompt change every 15 s, cut into 2-second windows; a window has
  collapsed when the analyser's collapse check flags it (frame statistics outside the range of rendered data,
  or no detectable object for a whole second); with --stream-seeds N, over N streams of different seeds;
- speed on this machine at the model's native size, decode included: sustained frames/s over the 2-minute
  stream, first-frame latency, per-chunk times; against 24 frames/s real time and 300 ms. With --compile, the
  same stream again from the pipeline with `Pipeline.compile()` (after a warm-up stream that compiles its graphs),
  as ratios to the eager figures of the same run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import sana_stream as ss  # noqa: E402
from sana_stream import data  # noqa: E402
from sana_stream.data import world  # noqa: E402
from sana_stream.data.analyser import collapse_check, judge  # noqa: E402
from sana_stream.engine import StreamOptions, warm_up  # noqa: E402
from sana_stream.demo.train import _to_model  # noqa: E402
from sana_stream.pipeline.pipeline import to_uint8  # noqa: E402
from sana_stream.sampling import make_sampler  # noqa: E402

JUDGED_FRAMES = 32
WINDOW_SECONDS = 2


def seen_prompts(n: int, seed: int = 1) -> list[str]:
    """Single-object training compositions with the held-out benchmark's motion mix (world.BENCHMARK_MOTIONS)
    and background kinds."""
    kinds = set(world.BENCHMARK_BACKGROUNDS)
    rng = np.random.default_rng(seed)
    prompts: list[str] = []
    while len(prompts) < n:
        want = world.BENCHMARK_MOTIONS[len(prompts) % len(world.BENCHMARK_MOTIONS)]
        scene = data.sample_scene(rng, split="train", max_objects=1)
        obj = scene.objects[0]
        text = data.caption(scene)
        if (obj.motion == want and obj.size != "small" and scene.background.kind in kinds and scene.pan is None
                and text not in prompts):
            prompts.append(text)
    return prompts


def adherence(pipe, prompts: list[str]) -> tuple[float, float, float, float, dict[str, tuple[int, int]]]:
    """(colour %, motion %) of the model and of the rendered ground truth, and the model's motions judged right
    by the captioned motion: {motion: (right, prompts)}."""
    model_ok, truth_ok = np.zeros((len(prompts), 2)), np.zeros((len(prompts), 2))
    scenes = [data.parse_caption(p) for p in prompts]
    motions = [scene.objects[0].motion for scene in scenes]
    for i, (prompt, scene) in enumerate(zip(prompts, scenes)):
        stream = pipe.stream(prompt, seed=i)
        frames = np.stack([next(stream) for _ in range(JUDGED_FRAMES)])
        verdict = judge(frames, prompt)
        model_ok[i] = verdict["colour_ok"], verdict["motion_ok"]
        truth = data.render(scene, JUDGED_FRAMES, size=frames.shape[1])
        verdict = judge(truth, prompt)
        truth_ok[i] = verdict["colour_ok"], verdict["motion_ok"]
    by_motion = {m: (int(sum(model_ok[i, 1] for i, x in enumerate(motions) if x == m)), motions.count(m))
                 for m in dict.fromkeys(motions)}
    return (*(100 * model_ok.mean(0)), *(100 * truth_ok.mean(0)), by_motion)


def real_history(pipe, prompt: str, chunks: int, extra_chunks: int = 0):
    """The prompt's rendered clip, `chunks + extra_chunks` chunks of it encoded (latents (1, C, F, h, w)), the
    prompt's text rows, and a streaming state holding the first `chunks` chunks as history."""
    model, vae, o = pipe.transformer, pipe.vae, StreamOptions(**pipe.stream_defaults)
    k = o.chunk_frames
    truth = data.render(data.parse_caption(prompt), (chunks + extra_chunks) * k, size=pipe.defaults.height)
    pixels = _to_model(truth).permute(1, 0, 2, 3)[None]  # (1, 3, F, H, W), as training encoded its clips
    latents = vae.normalize_latents(vae.encode(pixels.to(vae.device, vae.dtype)))
    emb, mask = pipe.encode_prompt(prompt)
    state = model.new_state(1, window=o.window)
    for c in range(chunks):
        model.append_state(state, latents[:, :, c * k:(c + 1) * k].to(model.dtype), emb, mask)
    return latents, emb, mask, state


def continuation(pipe, prompts: list[str], history_chunks: int = 2) -> tuple[float, float]:
    """(colour %, motion %) when the model streams on from the real clip: the first `history_chunks` chunks of
    each prompt's rendered clip, encoded, are the history, and only the frames the model makes are judged. This
    separates learning motion from history (here) from holding it over the model's own chunks (adherence)."""
    model, o = pipe.transformer, StreamOptions(**pipe.stream_defaults)
    k = o.chunk_frames
    sampler = make_sampler("longsana", timesteps=o.timesteps)
    ok = np.zeros((len(prompts), 2))
    for i, prompt in enumerate(prompts):
        history, emb, mask, state = real_history(pipe, prompt, history_chunks)
        generator, made = torch.Generator().manual_seed(i), []
        while len(made) * k < JUDGED_FRAMES:
            x = torch.randn((1, history.shape[1], k, *history.shape[3:]), generator=generator)
            for step in range(sampler.num_steps):
                v = model(x.to(model.dtype), sampler.timesteps[step].expand(1), emb, mask, state=state)
                x = sampler.step(v.float(), step, x, generator=generator)
            model.append_state(state, x.to(model.dtype), emb, mask)
            made.append(x)
        verdict = judge(to_uint8(pipe.decode(torch.cat(made, 2))[0]), prompt)
        ok[i] = verdict["colour_ok"], verdict["motion_ok"]
    return tuple(100 * ok.mean(0))


def next_chunk_from_history(pipe, prompts: list[str], history_chunks: int = 2,
                            levels: tuple[float, ...] = (1000.0, 750.0, 500.0)) -> dict[float, tuple[float, float]]:
    """{t: (cosine, error ratio)}: one transformer pass predicts the chunk after `history_chunks` real chunks of
    each prompt's rendered clip from that chunk noised to t (1000: pure noise, where every streamed chunk starts).
    cosine: between the predicted and the true change from the history's last frame (1: the right motion);
    error ratio: |predicted − true| / |true change| in latent space, where copying the last frame scores 1."""
    model, k = pipe.transformer, StreamOptions(**pipe.stream_defaults).chunk_frames
    scores: dict[float, list[tuple[float, float]]] = {t: [] for t in levels}
    for i, prompt in enumerate(prompts):
        z, emb, mask, state = real_history(pipe, prompt, history_chunks, extra_chunks=1)
        z = z.float()
        target, last = z[:, :, history_chunks * k:], z[:, :, history_chunks * k - 1:history_chunks * k]
        noise = torch.randn(target.shape, generator=torch.Generator().manual_seed(i))
        for t in levels:
            sigma = t / 1000
            xt = (1 - sigma) * target + sigma * noise
            v = model(xt.to(model.dtype), torch.tensor([t]), emb, mask, state=state).float()
            change, predicted = (target - last).flatten(), (xt - sigma * v - last).flatten()
            scores[t].append((torch.nn.functional.cosine_similarity(change, predicted, 0).item(),
                              ((predicted - change).norm() / change.norm()).item()))
    return {t: tuple(np.mean(v, axis=0)) for t, v in scores.items()}


def stability_and_speed(pipe, seconds: float, switch_every: float, seed: int = 0) -> dict:
    prompts = data.heldout_prompts(50, seed=3)
    stream = pipe.stream(prompts[0], seed=seed)
    fps = stream.options.fps
    total, per_switch = int(seconds * fps), int(switch_every * fps)
    window = int(WINDOW_SECONDS * fps)
    windows, collapsed, produced, chunk_ms = 0, 0, 0, []
    buffer: list[np.ndarray] = []
    started = time.perf_counter()
    while produced < total:
        frames = stream.next_chunk()
        chunk_ms.append(stream.stats["last_chunk_ms"])
        for frame in frames:
            buffer.append(np.asarray(frame))
            produced += 1
            if produced % per_switch == 0:
                stream.set_prompt(prompts[(produced // per_switch) % len(prompts)])
            if len(buffer) == window:
                windows += 1
                collapsed += collapse_check(np.stack(buffer), patience=window // 2)["collapsed"]
                buffer = []
    wall = time.perf_counter() - started
    keys = chunk_ms[-1].keys()
    mean_ms = {k: float(np.mean([c[k] for c in chunk_ms[1:]])) for k in keys}
    return {"windows": windows, "stable_pct": 100 * (windows - collapsed) / max(windows, 1),
            "fps": produced / wall, "first_frame_ms": stream.stats["first_frame_ms"], "chunk_ms": mean_ms,
            "chunk_frames": stream.options.chunk_frames, "state_bytes": stream.stats["state_bytes"],
            "recaches": stream.stats["recaches"]}


def sizes(folder: Path, pipe) -> dict:
    on_disk = {p.name: sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) for p in folder.iterdir()
               if p.is_dir()}
    params = {
        "transformer": pipe.transformer.num_parameters(),
        "autoencoder": sum(p.numel() for p in pipe.vae.autoencoder.parameters()),
        "text_encoder": sum(p.numel() for p in pipe.text_encoder.model.parameters()),
    }
    return {"bytes": on_disk, "params": params}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="pipeline folder (default: the embedded demo model)")
    parser.add_argument("--compile", action="store_true",
                        help="also stream with Pipeline.compile() (torch.compile of the transformer blocks and the "
                             "decoder; needs a C++ compiler), against the eager figures of the same run")
    parser.add_argument("--quick", action="store_true", help="10 prompts each and a 30 s stream")
    parser.add_argument("--stream-seeds", type=int, default=1,
                        help="stability over this many stream seeds (0, 1, ...; speed is from seed 0's stream)")
    args = parser.parse_args()
    if args.stream_seeds < 1:
        parser.error(f"--stream-seeds must be at least 1, got {args.stream_seeds}")
    torch.set_grad_enabled(False)
    from sana_stream.pipeline.loading import DEMO_MODEL

    folder = Path(args.model) if args.model else DEMO_MODEL
    pipe = ss.load_pipeline(folder, dtype=torch.bfloat16)
    n = 10 if args.quick else 50
    print(f"model {folder}; {torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.1f}")
    size = sizes(folder, pipe)
    print("parameters: " + ", ".join(f"{k} {v / 1e6:.2f} M" for k, v in size["params"].items())
          + f"; on disk {sum(size['bytes'].values()) / 1e6:.1f} MB")

    print(f"\nprompt adherence ({JUDGED_FRAMES} frames per prompt)   colour %   motion %   (rendered truth: colour % motion %)")
    for name, prompts in (("held-out", data.heldout_prompts(n)), ("seen", seen_prompts(n))):
        c, m, tc, tm, by_motion = adherence(pipe, prompts)
        print(f"  {name:9} {len(prompts)} prompts                  {c:8.0f}   {m:8.0f}   ({tc:.0f} {tm:.0f})")
        print("            motion right by kind: " + ", ".join(f"{k} {ok}/{n}" for k, (ok, n) in by_motion.items()))
    c, m = continuation(pipe, data.heldout_prompts(n))
    print(f"  held-out, streaming on from 2 real chunks    {c:8.0f}   {m:8.0f}")
    print("\none pass predicts the chunk after 2 real chunks (left/right/up/down prompts) from that chunk noised to t;"
          " change = from the last real frame; copying that frame scores error 1.00")
    for name, prompts in (("held-out", data.heldout_prompts(n)), ("seen", seen_prompts(n))):
        movers = [p for p in prompts if data.parse_caption(p).objects[0].motion in world.DIRECTIONS]
        for t, (cosine, error) in next_chunk_from_history(pipe, movers).items():
            print(f"  {name:9} {len(movers)} prompts, t = {t:4.0f}: cosine(predicted, true change) {cosine:.2f}, "
                  f"error / true change {error:.2f}")

    seconds = 30 if args.quick else 120
    runs = {"eager": stability_and_speed(pipe, seconds, switch_every=15)}
    for seed in range(1, args.stream_seeds):
        s = stability_and_speed(pipe, seconds, switch_every=15, seed=seed)
        print(f"stability, stream seed {seed}: {s['stable_pct']:.1f}% of {s['windows']} {WINDOW_SECONDS}-s windows "
              "without collapse")
    if args.compile:
        pipe.compile()  # in place: the eager figures are taken
        warm_up(pipe, data.heldout_prompts(1)[0])
        runs["compiled"] = stability_and_speed(pipe, seconds, switch_every=15)
    eager = runs["eager"]
    for label, s in runs.items():
        faster = "" if label == "eager" else (f" ({s['fps'] / eager['fps']:.2f}x eager; first frame "
                                              f"{eager['first_frame_ms'] / s['first_frame_ms']:.2f}x)")
        print(f"\n{label}: stability: {seconds} s stream, prompt switch every 15 s: {s['stable_pct']:.1f}% of "
              f"{s['windows']} {WINDOW_SECONDS}-s windows without collapse ({s['recaches']} re-caches)")
        print(f"{label}: speed at {pipe.defaults.width}×{pipe.defaults.height}, decode included: {s['fps']:.1f} "
              f"frames/s sustained (real time: 24), first frame {s['first_frame_ms']:.0f} ms (target ≤ 300){faster}; "
              f"per chunk of {s['chunk_frames']} frames: "
              + ", ".join(f"{k} {v:.1f} ms" for k, v in s["chunk_ms"].items())
              + f"; state {s['state_bytes'] / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
