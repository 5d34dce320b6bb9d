"""Streaming: cost per chunk and memory against stream length, ours vs a softmax KV-cache baseline, in one run.

    python benchmarks/streaming.py            # full run: video chunks 1,10,100,300 and 2b chunks 1,5,20
    python benchmarks/streaming.py --quick    # video chunks 1,10,20 and 2b chunks 1,4
    python benchmarks/streaming.py --parts video --chunks 1,10,100 --stat min   # choose parts / points

With the 2-core CPU nearly idle (load average 1.5) the full run took 7 min 46 s and --quick takes about 2 min;
every chunk of our stream is really generated and decoded. Processes of others slow it down a lot (two threads
that keep missing a core): there, --stat min gives the least disturbed sample of each point.

Parts (bf16 transformers, random weights, batch 1, the same torch threads for every contender):
  video  Our whole streaming engine (`pipe.stream`) on a small but not trivial SanaVideoPipeline written by
         diffusers and read by `sana_stream.load_pipeline`: DiT 6 blocks × 384 wide (6 heads × 64), Wan VAE
         (base width 16, 16 latent channels; fp32 as in the references), the tiny Gemma-2 text encoder of the
         tests, 128×128 pixels (8×8 tokens a latent frame), chunks of 3 latent frames (12 video frames), the 4
         LongSANA steps [1000, 960, 889, 727] + the t = 0 append pass per chunk.
  2b     The released SanaVideo 2B 480p config (VARIANTS["SanaVideo_2B_480p"]) cut to 2 of its 20 blocks,
         transformer only: 480×832 → 60×104 latent → 1560 tokens a latent frame, 300 random text tokens
         (2304-d), chunks of 1 latent frame, 1 denoising step + the append pass per chunk.

Baseline (in this file only, never in the package): the very same transformer, weights shared, with the linear
self-attention replaced by softmax attention (same q/k/v/out projections, q/k RMSNorm, 3-D RoPE at absolute
positions) over a growing K/V cache of every earlier chunk, as CausVid / Self-Forcing without a window: the
denoising passes attend to [cache, own chunk] with F.scaled_dot_product_attention, the append pass writes the
clean chunk's K/V into the cache. Cache buffers are preallocated, so no pass copies the history. Two small
differences roughly cancel: its append pass also runs the final layer (one D → 64 projection), and its FFN gets
no previous-frame features (one D × D matmul over one frame less). Its chunk N is measured on a cache prefilled with N − 1 chunks of random K/V (cost depends on the
length only), interleaved with our chunks N − window + 1 … N of one real, continuous stream. Each point is the
median (or --stat min: the least disturbed sample, for a loaded machine) of those samples.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import matmul_peak  # noqa: E402
from sana_stream import load_pipeline  # noqa: E402
from sana_stream.model import VARIANTS, SanaTransformer, TransformerConfig  # noqa: E402
from sana_stream.model.embeddings import apply_rope  # noqa: E402
from sana_stream.sampling import LONGSANA_TIMESTEPS, make_sampler  # noqa: E402

DTYPE = torch.bfloat16
PROMPT = "a red fox running through fresh snow"
TEXT_TOKENS, TEXT_VALID = 300, 120
VIDEO = dict(width=384, layers=6, head_dim=64, vae_base=16, latent_channels=16, pixels=128, chunk_frames=3)
VIDEO_2B = dict(latent=(60, 104), chunk_frames=1, timesteps=(1000.0,))
POINTS = {"full": {"video": (1, 10, 100, 300), "2b": (1, 5, 20)}, "quick": {"video": (1, 10, 20), "2b": (1, 4)}}
STATS = {"median": statistics.median, "min": min}

Ms = dict[str, float]  # one chunk's timings (ms) and sizes


@dataclass
class Settings:
    window: int  # our chunks per point
    repeats: int  # baseline chunks per point, at least
    stat: Callable[[list[float]], float]
    peak: float  # measured bf16 matmul FLOP/s

    def summary(self, samples: list[Ms]) -> Ms:
        return {key: self.stat([s[key] for s in samples]) for key in samples[0]}


# ----- the baseline: softmax self-attention over a growing K/V cache ------------------------------------------


class KVCache:
    """Per-layer K and V of every committed token, (B, heads, capacity, d) each, preallocated."""

    def __init__(self, layers: int, batch: int, heads: int, head_dim: int, capacity: int, dtype: torch.dtype):
        shape = (batch, heads, capacity, head_dim)
        self.k = [torch.empty(shape, dtype=dtype) for _ in range(layers)]
        self.v = [torch.empty(shape, dtype=dtype) for _ in range(layers)]
        self.tokens = 0  # committed tokens (the history)
        self.frames = 0  # committed latent frames: the absolute RoPE index of the next chunk
        self.rope: tuple[torch.Tensor, torch.Tensor] | None = None  # angles of the chunk in flight

    def prefill(self, tokens: int, frames: int, chunk_tokens: int) -> None:
        """Make the history `tokens` long with random K/V (one random chunk tiled: values do not change cost)."""
        for buf in (*self.k, *self.v):
            block = torch.randn(*buf.shape[:2], chunk_tokens, buf.shape[3], dtype=buf.dtype)
            buf[:, :, :tokens].unflatten(2, (-1, chunk_tokens)).copy_(block.unsqueeze(2))
        self.tokens, self.frames = tokens, frames

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the chunk's k, v (B, heads, n, d) after the history; views of [history, chunk] to attend to."""
        end = self.tokens + k.shape[2]
        self.k[layer][:, :, self.tokens:end] = k
        self.v[layer][:, :, self.tokens:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    @property
    def nbytes(self) -> int:
        per_token = sum(buf[:, :, :1].numel() * buf.element_size() for buf in (*self.k, *self.v))
        return self.tokens * per_token


class SoftmaxCachedAttention(nn.Module):
    """Stands in for a block's linear self-attention: the same projections, softmax over cache + chunk."""

    def __init__(self, linear: nn.Module, cache: KVCache, layer: int):
        super().__init__()
        self.linear, self.cache, self.layer = linear, cache, layer

    def forward(self, x, chunks, rope, history):
        p = self.linear
        q, k, v = p.to_q(x), p.to_k(x), p.to_v(x)
        if p.norm_q is not None:
            q, k = p.norm_q(q), p.norm_k(k)
        shape = (x.shape[0], x.shape[1], p.heads, p.head_dim)
        cos, sin = self.cache.rope  # absolute positions (the `rope` the block passes starts at frame 0)
        q = apply_rope(q.view(shape), cos, sin).to(x.dtype).transpose(1, 2)
        k = apply_rope(k.view(shape), cos, sin).to(x.dtype).transpose(1, 2)
        keys, values = self.cache.extend(self.layer, k, v.view(shape).transpose(1, 2))
        out = F.scaled_dot_product_attention(q, keys, values)
        return p.to_out[0](out.transpose(1, 2).flatten(2)), None


class SoftmaxKVBaseline:
    """Our transformer (weights shared) with softmax self-attention over a growing K/V cache."""

    def __init__(self, model: SanaTransformer, chunk_shape: tuple[int, ...], text: torch.Tensor,
                 mask: torch.Tensor, timesteps: tuple[float, ...]):
        self.model, self.chunk_shape = model, chunk_shape  # chunk_shape: latent (B, C, T, H, W)
        self.text, self.mask, self.timesteps = text, mask, timesteps
        _, ph, pw = model.config.patch_size
        self.grid = (chunk_shape[3] // ph, chunk_shape[4] // pw)
        self.chunk_tokens = chunk_shape[2] * self.grid[0] * self.grid[1]
        self.net: SanaTransformer | None = None
        self.cache: KVCache | None = None

    def prepare(self, chunk_index: int) -> None:
        """Room for `chunk_index` chunks, the first chunk_index − 1 of them already in the history."""
        cfg, b, frames = self.model.config, self.chunk_shape[0], self.chunk_shape[2]
        self.cache = KVCache(cfg.num_layers, b, cfg.num_attention_heads, cfg.attention_head_dim,
                             chunk_index * self.chunk_tokens, self.model.dtype)
        self.cache.prefill((chunk_index - 1) * self.chunk_tokens, (chunk_index - 1) * frames, self.chunk_tokens)
        self.net = copy.deepcopy(self.model, memo={id(p): p for p in self.model.parameters()})
        for i, block in enumerate(self.net.transformer_blocks):
            block.attn1 = SoftmaxCachedAttention(self.model.transformer_blocks[i].attn1, self.cache, i)

    def release(self) -> None:
        self.net = self.cache = None

    def _forward(self, x, timestep, text, mask):
        self.cache.rope = self.model.rope(self.cache.frames, x.shape[2], *self.grid)
        return self.net(x, timestep, text, mask)

    def _append(self, x: torch.Tensor) -> None:
        self._forward(x, torch.zeros(x.shape[0]), self.text, self.mask)
        self.cache.tokens += self.chunk_tokens
        self.cache.frames += self.chunk_shape[2]

    def chunk(self) -> Ms:
        """One chunk at the prepared index (denoise + append); the history is then rolled back for a repeat."""
        history = (self.cache.tokens, self.cache.frames)
        ms = timed_chunk(self._forward, self._append, self.chunk_shape, self.text, self.mask, self.timesteps,
                         self.model.dtype)
        ms["bytes"] = self.cache.nbytes
        self.cache.tokens, self.cache.frames = history
        return ms


def timed_chunk(forward: Callable, append: Callable, shape, text, mask, timesteps, dtype) -> Ms:
    """Denoise one chunk from noise with the LongSANA sampler, then append it; wall times in ms."""
    start = time.perf_counter()
    sampler, gen = make_sampler("longsana", timesteps=timesteps), torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen)
    for i, t in enumerate(sampler.timesteps):
        x = sampler.step(forward(x.to(dtype), t.expand(shape[0]), text, mask), i, x, generator=gen)
    mid = time.perf_counter()
    append(x.to(dtype))
    end = time.perf_counter()
    return {"generate": 1e3 * (mid - start), "append": 1e3 * (end - mid)}


# ----- the measurement loop ------------------------------------------------------------------------------------


@dataclass
class Point:
    chunk: int
    ours: Ms
    baseline: Ms


def run_interleaved(start_stream: Callable[[], Callable[[], Ms]], baseline: SoftmaxKVBaseline,
                    milestones: tuple[int, ...], settings: Settings) -> tuple[list[Point], list[Ms]]:
    """start_stream() begins a fresh stream of ours and gives its next-chunk function. One stream runs through
    max(milestones) chunks; at each milestone N our chunks N-window+1 … N alternate with repeats of the
    baseline's chunk N (chunk 1 is sampled on `window` fresh streams, the last of which goes on).
    Returns the points and every chunk of the stream that went on."""
    start_stream()()  # warm-up: the first chunk ever pays one-time costs
    baseline.prepare(1)
    baseline.chunk()
    points, every, ours_chunk = [], [], None
    for n in milestones:
        baseline.prepare(n)
        ours, theirs = [], []
        if n == 1:
            for _ in range(settings.window):
                ours_chunk = start_stream()
                ours.append(ours_chunk())
                theirs.append(baseline.chunk())
            every.append(ours[-1])
        else:
            ours_chunk = ours_chunk or start_stream()
            while len(every) < n:
                every.append(ours_chunk())
                if len(every) > n - settings.window:
                    ours.append(every[-1])
                    theirs.append(baseline.chunk())
        while len(theirs) < settings.repeats:
            theirs.append(baseline.chunk())
        baseline.release()
        points.append(Point(n, settings.summary(ours), settings.summary(theirs)))
        print(f"  … chunk {n} measured, load average {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
    return points, every


def random_text(channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    mask = torch.zeros(1, TEXT_TOKENS)
    mask[:, :TEXT_VALID] = 1
    return torch.randn(1, TEXT_TOKENS, channels, generator=gen).to(DTYPE), mask


# ----- the two parts ----------------------------------------------------------------------------------------


def build_video_pipeline(folder: str):
    """The benchmark's SanaVideoPipeline (diffusers, random weights), saved and loaded with load_pipeline."""
    from diffusers import AutoencoderKLWan, DPMSolverMultistepScheduler, SanaVideoPipeline

    from tests.tiny_pipelines import TINY_WAN
    from tests.tiny_text import HIDDEN_SIZE, tiny_gemma2, tiny_tokenizer
    from tests.tiny_transformers import diffusers_video

    heads, z = VIDEO["width"] // VIDEO["head_dim"], VIDEO["latent_channels"]
    transformer = diffusers_video(
        seed=11, num_layers=VIDEO["layers"], num_attention_heads=heads, attention_head_dim=VIDEO["head_dim"],
        num_cross_attention_heads=heads, cross_attention_head_dim=VIDEO["head_dim"], cross_attention_dim=VIDEO["width"],
        caption_channels=HIDDEN_SIZE, in_channels=z, out_channels=z, sample_size=VIDEO["pixels"] // 8,
    )
    torch.manual_seed(12)
    vae = AutoencoderKLWan(**dict(TINY_WAN, base_dim=VIDEO["vae_base"], z_dim=z, latents_mean=[0.0] * z,
                                  latents_std=[1.0] * z)).eval()
    tokenizer = tiny_tokenizer()
    scheduler = DPMSolverMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=8.0)
    SanaVideoPipeline(tokenizer=tokenizer, text_encoder=tiny_gemma2(len(tokenizer)), vae=vae,
                      transformer=transformer, scheduler=scheduler).save_pretrained(folder)
    return load_pipeline(folder, dtype=DTYPE)


def video_part(milestones: tuple[int, ...], settings: Settings) -> None:
    size, k = VIDEO["pixels"], VIDEO["chunk_frames"]
    with tempfile.TemporaryDirectory() as folder:
        pipe = build_video_pipeline(folder)
    options = dict(height=size, width=size, chunk_frames=k, timesteps=LONGSANA_TIMESTEPS)
    streams = []

    def start_stream() -> Callable[[], Ms]:
        start = time.perf_counter()
        stream = pipe.stream(PROMPT, seed=len(streams), **options)
        streams.append(stream)

        def chunk() -> Ms:
            t0 = time.perf_counter()
            frames = stream.next_chunk()
            end = time.perf_counter()
            ms = dict(stream.stats["last_chunk_ms"], wall=1e3 * (end - t0), first_frame=1e3 * (end - start))
            return dict(ms, frames=len(frames), bytes=stream.stats["state_bytes"])
        return chunk

    text, mask = random_text(pipe.transformer.config.caption_channels)
    latent = (1, VIDEO["latent_channels"], k, size // 8, size // 8)
    baseline = SoftmaxKVBaseline(pipe.transformer, latent, text, mask, LONGSANA_TIMESTEPS)
    points, every = run_interleaved(start_stream, baseline, milestones, settings)

    frames = sum(s["frames"] for s in every)
    print(f"\n[video] our engine, pipe.stream: {size}×{size}, chunks of {k} latent frames = {4 * k} video frames "
          f"(the first {1 + 4 * (k - 1)}), {len(LONGSANA_TIMESTEPS)} steps + append, DiT {VIDEO['layers']}×"
          f"{VIDEO['width']}, {baseline.chunk_tokens} tokens a chunk")
    if milestones[0] == 1:
        print(f"first frame {points[0].ours['first_frame']:.0f} ms after pipe.stream() (model warm; "
              f"{settings.stat.__name__} of {settings.window} streams; the last one's stats first_frame_ms "
              f"{streams[-1].stats['first_frame_ms']:.0f})")
    print(f"the long stream: {frames} frames in {len(every)} chunks, "
          f"{frames / (1e-3 * sum(s['wall'] for s in every)):.1f} fps overall")
    print(f"{'chunk':>6} {'generate':>9} {'append':>7} {'decode':>7} {'wall':>8} {'fps':>6} {'state MB':>9}"
          f"   (ms; {settings.stat.__name__} of chunks N-{settings.window - 1}…N)")
    for p in points:
        o = p.ours
        print(f"{p.chunk:6d} {o['generate']:9.1f} {o['append']:7.1f} {o['decode']:7.1f} {o['wall']:8.1f} "
              f"{o['frames'] / o['wall'] * 1e3:6.1f} {o['bytes'] / 1e6:9.3f}")
    print_comparison("video", points, baseline.chunk_tokens, decode=True)
    print_growth(every)


def video_2b_part(milestones: tuple[int, ...], settings: Settings) -> None:
    cfg = TransformerConfig.from_dict({**VARIANTS["SanaVideo_2B_480p"], "num_layers": 2})
    torch.manual_seed(0)
    model = SanaTransformer(cfg).to(DTYPE).eval()
    k, (h, w), steps = VIDEO_2B["chunk_frames"], VIDEO_2B["latent"], VIDEO_2B["timesteps"]
    shape = (1, cfg.in_channels, k, h, w)
    text, mask = random_text(cfg.caption_channels)

    def start_stream() -> Callable[[], Ms]:
        state = model.new_state(1)

        def chunk() -> Ms:
            ms = timed_chunk(lambda x, t, y, m: model(x, t, y, m, state=state),
                             lambda x: model.append_state(state, x, text, mask), shape, text, mask, steps, DTYPE)
            return dict(ms, bytes=state.nbytes)
        return chunk

    baseline = SoftmaxKVBaseline(model, shape, text, mask, steps)
    points, every = run_interleaved(start_stream, baseline, milestones, settings)

    tokens = baseline.chunk_tokens
    flops = 2 * tokens * sum(p.numel() for p in model.transformer_blocks.parameters())
    append_s = 1e-3 * points[-1].ours["append"]
    print(f"\n[2b] SanaVideo_2B_480p, 2 of 20 blocks, transformer only: chunks of {k} latent frame(s) × {h}×{w} "
          f"latent = {tokens} tokens, {len(steps)} step(s) + append")
    print(f"our append pass at chunk {points[-1].chunk}: ≈ {flops / 1e9:.0f} GFLOP of block matmuls in "
          f"{append_s:.2f} s = {flops / append_s / 1e9:.0f} GFLOP/s, {100 * flops / append_s / settings.peak:.0f}% "
          f"of the measured bf16 peak")
    print_comparison("2b", points, tokens, decode=False)
    print_growth(every)


# ----- printing -----------------------------------------------------------------------------------------------


def print_comparison(name: str, points: list[Point], chunk_tokens: int, decode: bool) -> None:
    print(f"[{name}] transformer per chunk (generate + append), ours vs softmax KV cache; ratio = KV / ours")
    extra = f" {'KV fps*':>8}" if decode else ""
    print(f"{'chunk':>6} {'history tok':>11} | {'ours ms':>8} {'KV ms':>9} {'ratio':>6} | {'ours MB':>8} "
          f"{'KV MB':>9} {'ratio':>7} |{extra}")
    for p in points:
        ours, theirs = p.ours["generate"] + p.ours["append"], p.baseline["generate"] + p.baseline["append"]
        row = (f"{p.chunk:6d} {(p.chunk - 1) * chunk_tokens:11d} | {ours:8.1f} {theirs:9.1f} {theirs / ours:6.2f} | "
               f"{p.ours['bytes'] / 1e6:8.2f} {p.baseline['bytes'] / 1e6:9.2f} "
               f"{p.baseline['bytes'] / p.ours['bytes']:7.2f} |")
        if decode:
            row += f" {p.ours['frames'] / (theirs + p.ours['decode']) * 1e3:8.1f}"
        print(row)
    if decode:
        print("  * KV fps: frames / (KV transformer ms + our decode ms): the baseline with the same VAE")


def print_growth(every: list[Ms]) -> None:
    """Does our per-chunk transformer time drift with length? Early vs late medians over all our chunks."""
    totals = [s["generate"] + s["append"] for s in every[1:]]  # chunk 1 has no history
    if len(totals) < 8:
        return
    span = max(3, len(totals) // 10)
    early, late = statistics.median(totals[:span]), statistics.median(totals[-span:])
    print(f"  ours over the whole stream (generate + append): chunks 2-{span + 1} median {early:.1f} ms, last {span} "
          f"chunks median {late:.1f} ms (late/early {late / early:.2f}); state bytes seen: "
          f"{sorted({s['bytes'] for s in every})}")


PARTS = {"video": video_part, "2b": video_2b_part}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer chunks: about 2 minutes")
    parser.add_argument("--parts", default=",".join(PARTS), help="comma list of: " + ", ".join(PARTS))
    parser.add_argument("--chunks", help="chunk indices of the video part (default 1,10,100,300; quick 1,10,20)")
    parser.add_argument("--chunks-2b", help="chunk indices of the 2b part (default 1,5,20; quick 1,4)")
    parser.add_argument("--window", type=int, default=3, help="our chunks per point: N-window+1 … N")
    parser.add_argument("--repeats", type=int, default=3, help="baseline chunks per point, at least")
    parser.add_argument("--stat", choices=STATS, default="median", help="min: for a machine others load")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    args = parser.parse_args()
    given = {"video": args.chunks, "2b": args.chunks_2b}
    preset = POINTS["quick" if args.quick else "full"]
    parts = args.parts.split(",")
    if not set(parts) <= set(PARTS) or args.window < 1 or args.repeats < 1:
        raise SystemExit(f"--parts takes {', '.join(PARTS)}; --window and --repeats must be ≥ 1")
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.set_grad_enabled(False)
    start = time.perf_counter()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, bf16; load average at start "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    settings = Settings(args.window, args.repeats, STATS[args.stat], matmul_peak(torch.bfloat16))
    print(f"measured matmul peak: bf16 {settings.peak / 1e9:.0f} GFLOP/s")
    for part in parts:
        milestones = tuple(int(c) for c in given[part].split(",")) if given[part] else preset[part]
        if list(milestones) != sorted(set(milestones)) or milestones[0] < 1:
            raise SystemExit(f"chunk indices must be increasing and ≥ 1, got {milestones}")
        with torch.inference_mode():
            PARTS[part](milestones, settings)
    print(f"\ntotal {time.perf_counter() - start:.0f} s; load average at end "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
