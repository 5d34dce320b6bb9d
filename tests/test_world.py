"""The procedural world (sana_stream.data): captions, held-out split, renderer, and the analyser that judges
generated clips — validated here on rendered clips before it is trusted to judge a model."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from sana_stream.data import (COLOURS, HELDOUT_TRIPLES, MOTIONS, SHAPES, TRAIN_TRIPLES, Background, Obj, Scene,
                              benchmark_render, caption, heldout_prompts, parse_caption, render, sample_scene,
                              stream_scene)
from sana_stream.data.analyser import collapse_check, judge
from sana_stream.data.world import MAX_CAPTION_TOKENS, caption_tokens


def _scenes(seed: int, n: int, **kwargs) -> list[Scene]:
    rng = np.random.default_rng(seed)
    return [sample_scene(rng, **kwargs) for _ in range(n)]


def test_sampling_and_rendering_are_deterministic_per_seed():
    assert _scenes(7, 20) == _scenes(7, 20)
    assert _scenes(7, 20) != _scenes(8, 20)
    scene = _scenes(3, 1)[0]
    assert np.array_equal(render(scene, 6, size=64), render(scene, 6, size=64))


def test_captions_round_trip_and_fit_the_text_encoder():
    for scene in _scenes(1, 300, split="any"):
        text = caption(scene)
        parsed = parse_caption(text)
        assert caption(parsed) == text
        assert [o.triple for o in parsed.objects] == [o.triple for o in scene.objects]
        assert [o.size for o in parsed.objects] == [o.size for o in scene.objects]
        assert parsed.background == scene.background and parsed.pan == scene.pan
        assert len(caption_tokens(text)) <= MAX_CAPTION_TOKENS
    loose = parse_caption("  An ORANGE star moving left and a small blue ring  on a sky over green ground ,"
                          " camera panning up")
    assert [o.triple for o in loose.objects] == [("orange", "star", "left"), ("blue", "ring", "still")]
    assert loose.background == Background("sky", ("green",)) and loose.pan == "up"


def test_parse_caption_names_unknown_words_and_grammar_errors():
    with pytest.raises(ValueError, match="magenta"):
        parse_caption("a magenta circle moving left on a black background")
    with pytest.raises(ValueError, match="expected a shape"):
        parse_caption("a red blue circle")
    with pytest.raises(ValueError, match="direction"):
        parse_caption("a red circle moving on a black background")


def test_heldout_split_is_kept_out_of_training():
    assert 0.15 <= len(HELDOUT_TRIPLES) / (len(HELDOUT_TRIPLES) + len(TRAIN_TRIPLES)) <= 0.2
    # Composition, not vocabulary, is held out: every pair of a held-out triple occurs in training.
    for pair in ((0, 1), (0, 2), (1, 2)):
        seen = {tuple(t[i] for i in pair) for t in TRAIN_TRIPLES}
        assert all(tuple(t[i] for i in pair) in seen for t in HELDOUT_TRIPLES)
    for scene in _scenes(2, 2000, split="train"):
        assert not any(o.triple in HELDOUT_TRIPLES for o in scene.objects)
    assert all(s.objects[0].triple in HELDOUT_TRIPLES for s in _scenes(3, 200, split="heldout"))


def test_heldout_prompts_are_fixed_single_object_and_held_out():
    prompts = heldout_prompts()
    assert prompts == heldout_prompts(n=50, seed=0) and len(set(prompts)) == 50
    assert prompts[:2] == ["a big yellow diamond moving left on a sky over white ground",
                           "a big brown star moving right on an orange to green gradient"]
    for text in prompts:
        scene = parse_caption(text)
        assert len(scene.objects) == 1 and scene.objects[0].triple in HELDOUT_TRIPLES
        assert scene.background.kind in ("plain", "gradient", "sky") and scene.pan is None
    assert sum(parse_caption(p).objects[0].motion in ("left", "right", "up", "down") for p in prompts) == 40


def test_render_shape_dtype_and_antialiasing():
    scene = Scene((Obj("circle", "white", "right", "big"),), Background("plain", ("black",)))
    frames = render(scene, 4, size=96)
    assert frames.shape == (4, 96, 96, 3) and frames.dtype == np.uint8
    values = frames[0, ..., 0]
    edge = (values > 15) & (values < 245)  # strictly between the background and the object
    assert 20 < edge.sum() < 0.2 * (values > 15).sum()
    every_kind = [Background(k, c) for k, c in [("gradient", ("red", "blue")), ("sky", ("green",)),
                                                 ("stripes", ("red", "blue")), ("checkerboard", ("red", "blue"))]]
    for bg in every_kind:
        assert render(Scene((Obj("star", "yellow"),), bg, "left"), 2, size=64).shape == (2, 64, 64, 3)


def test_long_scenes_continue_seamlessly():
    scene = _scenes(4, 1, max_objects=3)[0]
    full = render(scene, 40, size=64)
    assert np.array_equal(render(scene, 12, size=64, start_frame=28), full[28:])
    chunks = list(itertools.islice(stream_scene(scene, chunk_frames=16, size=64), 3))
    assert np.array_equal(np.concatenate(chunks)[:40], full)


@pytest.mark.parametrize("motion,axis,sign", [("left", 0, -1), ("right", 0, 1), ("up", 1, -1), ("down", 1, 1)])
def test_motion_is_visible(motion, axis, sign):
    """A mover crosses over a third of the frame in 1.5 s at 16 fps (centroid measured without the analyser)."""
    scene = Scene((Obj("circle", "red", motion, x=0.5, y=0.5),), Background("plain", ("black",)))
    frames = render(scene, 25, size=128)
    mask = frames[..., 0] > 110
    coords = np.nonzero(mask[-1])[1 - axis].mean() - np.nonzero(mask[0])[1 - axis].mean()
    assert sign * coords / 128 > 0.3


def test_growing_and_shrinking_change_the_area():
    areas = {m: (render(Scene((Obj("square", "red", m, phase=0.1),)), 24, size=64)[..., 0] > 110).sum((1, 2))
             for m in ("growing", "shrinking")}
    assert areas["growing"][-1] > 1.5 * areas["growing"][0]
    assert areas["shrinking"][-1] < 0.67 * areas["shrinking"][0]


def test_analyser_is_accurate_on_rendered_clips():
    """≥ 95% colour and motion on 100 random single-object clips (24 frames, 256², every background kind, pans,
    all motions): the judge is validated before it judges a model."""
    colour_ok = motion_ok = 0
    for scene in _scenes(11, 100, split="any", max_objects=1):
        verdict = judge(render(scene, 24), caption(scene))
        colour_ok += verdict["colour_ok"]
        motion_ok += verdict["motion_ok"]
    assert colour_ok >= 95 and motion_ok >= 95, (colour_ok, motion_ok)


def test_judge_handles_several_objects_and_wrong_captions():
    scene = Scene((Obj("star", "yellow", "left", "big", 0.5, 0.3), Obj("circle", "blue", "down", x=0.25)),
                  Background("plain", ("black",)))
    frames = render(scene, 32)
    verdict = judge(frames, caption(scene))
    assert verdict["colour_ok"] and verdict["motion_ok"]
    assert [o["colour"] for o in verdict["objects"]] == ["yellow", "blue"]
    wrong = judge(frames, "a big green star moving right and a blue circle moving down on a black background")
    assert not wrong["colour_ok"] and not wrong["motion_ok"]


def test_collapse_check_flags_degenerate_frames_but_not_rendered_ones():
    shape = (24, 128, 128, 3)
    noise = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    for frames in (noise, np.full(shape, 128, np.uint8), np.zeros(shape, np.uint8)):
        assert collapse_check(frames)["collapsed"]
    for scene in _scenes(5, 6, split="any"):
        result = collapse_check(render(scene, 24))
        assert not result["collapsed"] and result["bad_fraction"] == 0, (caption(scene), result)
    # A stream given chunk by chunk that goes black after 40 frames collapses there.
    good = stream_scene(_scenes(6, 1)[0], chunk_frames=20, size=128)
    chunks = list(itertools.islice(good, 2)) + [np.zeros((20, 128, 128, 3), np.uint8)]
    result = collapse_check(iter(chunks))
    assert result["collapsed"] and result["first_collapse"] == 40 and result["frames"] == 60


def test_render_speed_is_reported():
    speed = benchmark_render(num_frames=16, scenes=2)
    print(f"render: {speed['fps']:.0f} frames/s at 256² (1 object, one core)")
    assert speed["fps"] > 0


def test_vocabulary_sizes():
    assert len(COLOURS) == 12 and len(SHAPES) == 7 and len(MOTIONS) == 9
