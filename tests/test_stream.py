"""The streaming engine: equal to the chunk-causal reference, live edits, constant memory and work."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import sana_stream as ss
from sana_stream.sampling import LongSanaSampler
from tests.tiny_pipelines import save, video_pipeline

K = 2  # latent frames per chunk in these tests


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return ss.load_pipeline(save(video_pipeline(), tmp_path_factory.mktemp("stream") / "video"))


def take(stream, n):
    return [next(stream) for _ in range(n)]


def frames_per_chunk(c):
    return 1 + 4 * (K - 1) if c == 0 else 4 * K


def reference_frames(pipe, prompt, seed, chunks, anchor_guidance=1.0, anchor_timesteps=None, context_noise=0.0):
    """Chunk-causal generation of chunks·K latent frames with the stream's noise draws, decoded in one go; the
    first chunk with CFG at anchor_guidance over anchor_timesteps when those are given; each finished chunk seen
    by the later ones noised to context_noise."""
    model, vae = pipe.transformer, pipe.vae
    emb, mask = pipe.encode_prompt(prompt)
    gen = torch.Generator().manual_seed(seed)
    history, clean = None, []
    with torch.inference_mode():
        for c in range(chunks):
            x = torch.randn(1, 4, K, 4, 4, generator=gen)
            if c == 0 and anchor_timesteps is not None:
                sampler = LongSanaSampler(anchor_timesteps)
                rows = pipe.encode_prompt(prompt, guidance_scale=anchor_guidance)  # (negative, positive) with CFG
                for i in range(sampler.num_steps):
                    v = model(x.expand(len(rows[0]), -1, -1, -1, -1), sampler.timesteps[i].expand(len(rows[0])), *rows)
                    g = 1.0 if sampler.timesteps[i] >= 1000 else anchor_guidance  # pure noise: unguided
                    x = sampler.step(v[:1] + g * (v[1:] - v[:1]) if len(v) == 2 else v, i, x, generator=gen)
            else:
                sampler = LongSanaSampler()
                for i in range(sampler.num_steps):
                    full = x if history is None else torch.cat([history, x], dim=2)
                    t = torch.full((1, full.shape[2]), float(context_noise))
                    t[:, -K:] = sampler.timesteps[i]
                    v = model(full, t, emb, mask, chunk_frames=K)[:, :, -K:]
                    x = sampler.step(v, i, x, generator=gen)
            clean.append(x)
            sigma = context_noise / 1000
            seen = (1 - sigma) * x + sigma * torch.randn(x.shape, generator=gen) if sigma else x
            history = seen if history is None else torch.cat([history, seen], dim=2)
        pixels = vae.decode(vae.denormalize_latents(torch.cat(clean, dim=2)))
    return (pixels[0].float() / 2 + 0.5).clamp(0, 1).permute(1, 2, 3, 0).mul(255).round().to(torch.uint8).numpy()


def test_stream_equals_chunk_causal_reference(pipe):
    stream = pipe.stream("a red ball bouncing", seed=11, height=32, width=32, chunk_frames=K)
    n = sum(frames_per_chunk(c) for c in range(3))
    frames = take(stream, n)
    want = reference_frames(pipe, "a red ball bouncing", 11, 3)
    got = np.stack(frames)
    assert got.shape == want.shape == (n, 32, 32, 3)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    assert [f.index for f in frames] == list(range(n))
    assert frames[5].time == pytest.approx(5 / 16)


def test_context_noise_streams_on_a_noised_history(pipe):
    n = sum(frames_per_chunk(c) for c in range(3))
    stream = pipe.stream("a red ball bouncing", seed=11, height=32, width=32, chunk_frames=K, context_noise=300.0)
    got = np.stack(take(stream, n))
    want = reference_frames(pipe, "a red ball bouncing", 11, 3, context_noise=300.0)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    clean = reference_frames(pipe, "a red ball bouncing", 11, 3)
    first = frames_per_chunk(0)
    assert np.array_equal(got[:first], clean[:first])  # the opening chunk has no history to see
    assert np.abs(got[first:].astype(int) - clean[first:].astype(int)).max() > 1


def test_same_seed_same_frames_and_reset(pipe):
    a = take(pipe.stream("waves", seed=3, height=32, width=32, chunk_frames=K), 12)
    b_stream = pipe.stream("waves", seed=3, height=32, width=32, chunk_frames=K)
    b = take(b_stream, 12)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    c = take(pipe.stream("waves", seed=4, height=32, width=32, chunk_frames=K), 12)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    b_stream.reset(seed=3)  # a new video from the next chunk: the same frames as a fresh stream
    take(b_stream, 1)  # finish the current chunk (12 frames consumed of 5 + 8 + …)
    rest = take(b_stream, frames_per_chunk(0) + 3)  # the new video's chunk 0 and the start of its chunk 1
    assert all(np.array_equal(x, y) for x, y in zip(rest, a))
    assert rest[0].index == 13


def test_prompt_switch_keeps_past_frames_and_recaches_once(pipe):
    plain = pipe.stream("a forest", seed=5, height=32, width=32, chunk_frames=K)
    switched = pipe.stream("a forest", seed=5, height=32, width=32, chunk_frames=K)
    before = take(plain, 8)
    got = take(switched, 8)  # chunk 0 (5 frames) and 3 frames of chunk 1
    switched.set_prompt("a desert at night")
    got += take(switched, 5)  # the rest of chunk 1: already generated, so unchanged
    before += take(plain, 5)
    assert all(np.array_equal(x, y) for x, y in zip(got, before))
    assert switched.stats["recaches"] == 0
    after = take(switched, 8)
    assert switched.stats["recaches"] == 1 and switched.stats["last_chunk_ms"]["recache"] > 0
    assert switched.prompt == "a desert at night"
    assert not all(np.array_equal(x, y) for x, y in zip(after, take(plain, 8)))
    take(switched, 16)
    assert switched.stats["recaches"] == 1  # once per switch, not per chunk


def test_transition_blends_embeddings(pipe):
    stream = pipe.stream("day", seed=1, height=32, width=32, chunk_frames=K, transition_chunks=2)
    take(stream, 1)
    day = stream._text.emb.clone()
    stream.set_prompt("night")
    night, _ = pipe.encode_prompt("night")
    take(stream, frames_per_chunk(0))  # generates chunk 1: halfway
    assert torch.allclose(stream._text.emb.float(), (day.float() + night.float()) / 2, atol=1e-6)
    take(stream, frames_per_chunk(1))  # chunk 2: arrived
    assert torch.equal(stream._text.emb, night)
    assert stream.stats["recaches"] == 1


def test_pause_repeats_last_frame_and_resume_continues(pipe):
    plain = take(pipe.stream("clouds", seed=2, height=32, width=32, chunk_frames=K), 10)
    stream = pipe.stream("clouds", seed=2, height=32, width=32, chunk_frames=K)
    got = take(stream, 3)
    stream.pause()
    held = take(stream, 4)
    assert stream.paused and all(np.array_equal(f, got[-1]) for f in held)
    assert [f.index for f in held] == [2, 2, 2, 2]  # the same frame shown again
    chunks = stream.stats["chunks"]
    stream.resume()
    rest = take(stream, 7)
    assert all(np.array_equal(x, y) for x, y in zip(got + rest, plain))
    assert stream.stats["chunks"] > chunks


def test_set_image_restarts_from_the_image(pipe):
    stream = pipe.stream("a wall", seed=0, height=32, width=32, chunk_frames=K)
    take(stream, frames_per_chunk(0))
    image = np.zeros((32, 32, 3), np.uint8)
    image[:, 16:] = (20, 200, 40)
    stream.set_image(image)
    first = next(stream)
    with torch.inference_mode():
        recon = pipe.decode(pipe._condition_frames(image, 32, 32))[0, 0]
    assert np.abs(first.astype(int) - (recon * 255).round().numpy().astype(int)).max() <= 1
    with pytest.raises(ValueError, match="image arrays must be uint8"):
        stream.set_image(np.zeros((4, 4, 3), np.float32))  # rejected: changes nothing


def test_opening_chunk_made_with_anchor_cfg_and_schedule(pipe):
    anchor = dict(anchor_guidance=4.0, anchor_timesteps=(1000.0, 800.0, 600.0, 400.0, 200.0))
    stream = pipe.stream("a red ball bouncing", seed=11, height=32, width=32, chunk_frames=K, **anchor)
    n = sum(frames_per_chunk(c) for c in range(3))
    got = np.stack(take(stream, n))
    want = reference_frames(pipe, "a red ball bouncing", 11, 3, **anchor)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    plain = np.stack(take(pipe.stream("a red ball bouncing", seed=11, height=32, width=32, chunk_frames=K), n))
    assert np.abs(got.astype(int) - plain.astype(int)).max() > 10  # the anchor options do change the video
    stream.reset(seed=11)  # a new video opens with an anchor chunk again
    assert np.abs(np.stack(take(stream, n)).astype(int) - want.astype(int)).max() <= 1
    # Opening anchor chunks batch with each other, not with other chunks; later chunks batch as usual; each
    # stream gets what it gets alone.
    def make():
        return [pipe.stream("a red ball bouncing", seed=11, height=32, width=32, chunk_frames=K, **anchor),
                pipe.stream("waves", seed=3, height=32, width=32, chunk_frames=K),
                pipe.stream("fire", seed=4, height=32, width=32, chunk_frames=K, anchor_guidance=2.0,
                            anchor_timesteps=anchor["anchor_timesteps"])]
    alone, together = make(), make()
    batches = []
    for _ in range(2):
        want = [s.next_chunk() for s in alone]
        got = ss.engine.next_chunks(together)
        for w, g in zip(want, got):
            assert np.abs(np.stack(w).astype(int) - np.stack(g).astype(int)).max() <= 1
        batches.append([s.stats["batch"] for s in together])
    assert batches == [[2, 1, 2], [3, 3, 3]]
    # The schedule alone (no CFG) also makes an anchor chunk.
    schedule_only = dict(anchor_timesteps=(1000.0, 600.0, 200.0))
    got = np.stack(take(pipe.stream("waves", seed=2, height=32, width=32, chunk_frames=K, **schedule_only), n))
    want = reference_frames(pipe, "waves", 2, 3, **schedule_only)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    with pytest.raises(ValueError, match="anchor_guidance"):
        pipe.stream("x", height=32, width=32, anchor_guidance=-1.0)
    with pytest.raises(ValueError, match="timesteps"):
        pipe.stream("x", height=32, width=32, anchor_timesteps=(200.0, 1000.0))


def test_cfg_and_window_streams_run(pipe):
    stream = pipe.stream("fire", seed=0, height=32, width=32, chunk_frames=K, guidance_scale=3.0,
                         negative_prompt="blur", window=2)
    take(stream, 30)
    assert stream._state.batch_size == 2  # one history row for the negative prompt, one for the prompt
    assert stream.stats["chunks"] == 5  # 30 frames = 5 + 8 + 8 + 8 + 1


def test_streams_batched_together_get_their_own_frames(pipe):
    # Streams at different places (one a chunk ahead, one with CFG, one restarting from an image, one switching
    # prompt) run their chunks through next_chunks together; each must get what it gets alone.
    def make():
        streams = [pipe.stream("a red ball", seed=1, height=32, width=32, chunk_frames=K),
                   pipe.stream("blue sea", seed=2, height=32, width=32, chunk_frames=K, window=2),
                   pipe.stream("fire", seed=3, height=32, width=32, chunk_frames=K, guidance_scale=3.0,
                               negative_prompt="blur"),
                   pipe.stream("a wall", seed=4, height=32, width=32, chunk_frames=K),
                   pipe.stream("green hills", seed=5, height=32, width=32, chunk_frames=K, guidance_scale=2.0)]
        streams[0].next_chunk()
        return streams

    image = np.zeros((32, 32, 3), np.uint8)
    image[:, 16:] = (20, 200, 40)
    alone, together = make(), make()
    batches = []
    for rnd in range(3):
        if rnd == 1:
            for streams in (alone, together):
                streams[3].reset(seed=7)  # an image restart alone would draw a fresh random seed
                streams[3].set_image(image)
                streams[1].set_prompt("grey sky")
        want = [s.next_chunk() for s in alone]
        got = ss.engine.next_chunks(together)
        for w, g in zip(want, got):
            assert [f.index for f in w] == [f.index for f in g]
            assert np.abs(np.stack(w).astype(int) - np.stack(g).astype(int)).max() <= 1
        batches.append([s.stats["batch"] for s in together])
    # Equal shapes and settings share passes (streams 0, 1, 3: one text row each; 2, 4: CFG rows); the chunk
    # that restarts from an image runs alone.
    assert batches == [[3, 3, 2, 3, 2], [2, 2, 2, 1, 2], [3, 3, 2, 3, 2]]
    with pytest.raises(ValueError, match="one chunk at a time"):
        ss.engine.next_chunks([together[0], together[0]])


def test_constant_state_memory_and_work(pipe):
    import resource

    stream = pipe.stream("stars", seed=0, height=32, width=32, chunk_frames=1)
    flops, sizes, rss = {}, {}, {}
    for c in range(1, 301):
        if c in (10, 300):
            with FlopCounterMode(display=False) as counter:
                stream.next_chunk()
            flops[c], sizes[c] = counter.get_total_flops(), stream.stats["state_bytes"]
            rss[c] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        else:
            stream.next_chunk()
    assert sizes[10] == sizes[300] > 0
    assert flops[10] == flops[300] > 0  # the same work per chunk at chunk 300 as at chunk 10
    assert rss[300] <= rss[10] * 1.05
    assert stream.stats["chunks"] == 300


def test_bad_stream_requests(pipe):
    with pytest.raises(ValueError, match="prompt"):
        pipe.stream(42, height=32, width=32)
    stream = pipe.stream("", seed=0, height=32, width=32, chunk_frames=K)  # empty prompt: unconditional
    take(stream, 1)
    with pytest.raises(ValueError, match="prompt must be a string"):
        stream.set_prompt(None)
    with pytest.raises(ValueError, match="unknown stream option"):
        pipe.stream("x", height=32, width=32, chunk_size=3)
    with pytest.raises(ValueError, match="chunk_frames"):
        pipe.stream("x", height=32, width=32, chunk_frames=0)
    with pytest.raises(ValueError, match="context_noise must be in"):
        pipe.stream("x", height=32, width=32, context_noise=1000)
    with pytest.raises(ValueError, match="height must be a positive multiple"):
        pipe.stream("x", height=30, width=32)
    with pytest.raises(ValueError, match="seed must be an int"):
        stream.reset(seed="7")


def test_schedule_parsing_names_the_line():
    from sana_stream.engine.render import parse_schedule

    segments = parse_schedule('{"prompt": "a", "seconds": 2}\n\n# comment\n{"prompt": "b", "seconds": 0.5}\n')
    assert [(s.prompt, s.seconds) for s in segments] == [("a", 2.0), ("b", 0.5)]
    for text, message in [
        ('{"prompt": "a", "seconds": 1}\n{"prompt": "b"', "line 2: not valid JSON"),
        ('{"prompt": 3, "seconds": 1}', "line 1: \"prompt\" must be a string"),
        ('{"prompt": "a", "seconds": -1}', "line 1: \"seconds\" must be a number"),
        ('{"prompt": "a", "seconds": 1, "speed": 2}', "line 1: unknown field"),
        ('["a", 1]', "line 1: expected an object"),
        ("\n# nothing\n", "no segments"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_schedule(text)


def test_render_schedule_writes_the_whole_schedule(pipe, tmp_path):
    import av

    from sana_stream.engine.render import Segment, render_schedule

    schedule = [Segment("a red ball", 1.0), Segment("a blue ball", 0.75), Segment("a green ball", 0.5)]
    stats = render_schedule(pipe, schedule, tmp_path / "out.mp4", seed=0, height=32, width=32, chunk_frames=K,
                            progress=False)
    assert stats["frames_written"] == 16 + 12 + 8
    assert stats["recaches"] == 2  # one re-cache per switch
    with av.open(str(tmp_path / "out.mp4")) as container:
        frames = [f for f in container.decode(video=0)]
    assert len(frames) == 36 and (frames[0].width, frames[0].height) == (32, 32)


def test_async_source_matches_stream_with_back_pressure(pipe):
    import asyncio

    from sana_stream.engine import AsyncFrameSource

    want = take(pipe.stream("lava", seed=6, height=32, width=32, chunk_frames=K), 20)

    async def run():
        source = AsyncFrameSource(pipe.stream("lava", seed=6, height=32, width=32, chunk_frames=K))
        got = [await source.next_frame() for _ in range(6)]  # chunk 0 (5 frames) + 1 frame of chunk 1
        await asyncio.sleep(1.0)  # the worker runs ahead only as far as the queue allows
        ahead = source.stream.stats["chunks"]
        source.pause()
        held = [await source.next_frame() for _ in range(3)]
        source.resume()
        got += [await source.next_frame() for _ in range(14)]
        await source.close()
        return got, held, ahead

    got, held, ahead = asyncio.run(run())
    assert all(np.array_equal(x, y) for x, y in zip(got, want))
    # consumed: chunk 0 done, chunk 1 playing; at most one more waiting and one being generated
    assert ahead <= 4
    assert all(h is held[0] for h in held) and held[0].index == 5


def test_async_source_surfaces_generation_errors(pipe):
    import asyncio

    from sana_stream.engine import AsyncFrameSource

    stream = pipe.stream("x", seed=0, height=32, width=32, chunk_frames=K)

    def broken():
        raise RuntimeError("boom")

    stream.next_chunk = broken

    async def run():
        source = AsyncFrameSource(stream)
        with pytest.raises(RuntimeError, match="generation failed.*boom"):
            await source.next_frame()
        await source.close()
        with pytest.raises(RuntimeError, match="closed"):
            await source.next_frame()

    asyncio.run(run())
