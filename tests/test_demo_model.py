"""The shipped demo model: loads from the package (no training), streams, and its output depends on the prompt."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sana_stream as ss
from sana_stream.pipeline.loading import DEMO_MODEL

pytestmark = pytest.mark.skipif(not (DEMO_MODEL / "model_index.json").is_file(),
                                reason="no demo model in this checkout")


@pytest.fixture(scope="module")
def pipe():
    return ss.load_pipeline(dtype=torch.bfloat16)


def test_demo_model_is_small_and_complete(pipe):
    size = sum(f.stat().st_size for f in DEMO_MODEL.rglob("*") if f.is_file())
    assert size <= 40 * 2**20  # the budget for everything shipped
    assert pipe.family == "video" and pipe.causal
    assert (pipe.defaults.height, pipe.defaults.width) == (256, 256)


def test_demo_stream_is_deterministic_and_constant_size(pipe):
    a = pipe.stream("a red circle moving right on a blue background", seed=0)
    frames = [next(a) for _ in range(12)]
    assert frames[0].shape == (256, 256, 3) and frames[0].dtype == np.uint8
    size = a.stats["state_bytes"]
    for _ in range(4):
        a.next_chunk()
    assert a.stats["state_bytes"] == size > 0
    b = pipe.stream("a red circle moving right on a blue background", seed=0)
    assert all(np.array_equal(x, next(b)) for x in frames)


def test_demo_stream_follows_the_prompt(pipe):
    # The background colour dominates the picture: streams asked for different backgrounds must differ in
    # the way asked, for every seed tried (red channel high for red, blue for blue).
    def mean_colour(prompt: str, seed: int) -> np.ndarray:
        stream = pipe.stream(prompt, seed=seed)
        return np.stack([next(stream) for _ in range(9)]).reshape(-1, 3).mean(0)

    for seed in range(3):
        red = mean_colour("a white circle moving left on a red background", seed)
        blue = mean_colour("a white circle moving left on a blue background", seed)
        assert red[0] - red[2] > blue[0] - blue[2] + 20


def test_demo_stream_moves_objects_the_way_asked(pipe):
    from sana_stream import data
    from sana_stream.data.analyser import judge
    from sana_stream.data.world import DIRECTIONS

    # The first ten held-out left/right/up/down prompts, with the benchmark's seeds: v5 and v6 move 8 of 10 the way
    # asked, chance is 2.5 (P(≥ 7) = 0.4 %). Growth is left out: no build yet grows or shrinks an object (README).
    prompts = [(seed, p) for seed, p in enumerate(data.heldout_prompts(14))
               if data.parse_caption(p).objects[0].motion in DIRECTIONS][:10]
    moved = 0
    for seed, prompt in prompts:
        stream = pipe.stream(prompt, seed=seed)
        moved += judge(np.stack([next(stream) for _ in range(32)]), prompt)["motion_ok"]
    assert moved >= 7
