"""Text encoding against diffusers' SanaPipeline / SanaVideoPipeline.encode_prompt on a tiny Gemma-2."""

from __future__ import annotations

import inspect

import pytest
import torch
from diffusers import SanaPipeline, SanaVideoPipeline

from sana_stream.text import (
    IMAGE_INSTRUCTION,
    VIDEO_INSTRUCTION,
    VIDEO_NEGATIVE_PROMPT,
    LRUCache,
    TextEncoder,
)
from tests.tiny_text import HIDDEN_SIZE, save_tiny_text_pipeline, tiny_gemma2

PROMPTS = [
    "A Cat sleeping on a WINDOWSILL",
    "  the busy city street at dusk, neon;  ",
    "",
    "the long road " * 80,  # > 300 tokens: exercises truncation
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipe")
    tokenizer, model = save_tiny_text_pipeline(folder)
    encoder = TextEncoder.from_pretrained(folder / "text_encoder", folder / "tokenizer")
    return folder, tokenizer, model, encoder


def chi_default(pipeline_class) -> str:
    return "\n".join(inspect.signature(pipeline_class.__call__).parameters["complex_human_instruction"].default)


def reference(pipeline_class, tiny, prompt, negative_prompt, chi, max_sequence_length=300):
    _, tokenizer, model, _ = tiny
    pipe = pipeline_class(tokenizer=tokenizer, text_encoder=model, vae=None, transformer=None, scheduler=None)
    with torch.no_grad():
        return pipe.encode_prompt(
            prompt,
            negative_prompt=negative_prompt,
            device=torch.device("cpu"),
            complex_human_instruction=chi.split("\n") if chi else None,
            max_sequence_length=max_sequence_length,
        )


def assert_same(ours, theirs):
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def count_forwards(model) -> list[int]:
    """Batch sizes of every forward pass the model runs from now on."""
    seen: list[int] = []
    model.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[0]))
    return seen


def test_instructions_match_reference_defaults():
    assert IMAGE_INSTRUCTION == chi_default(SanaPipeline)
    assert VIDEO_INSTRUCTION == chi_default(SanaVideoPipeline)


@pytest.mark.parametrize("chi", [None, IMAGE_INSTRUCTION], ids=["plain", "chi"])
def test_image_matches_sana_pipeline(tiny, chi):
    encoder = TextEncoder(tiny[1], tiny[2], cache_size=0)
    ours = encoder.encode_with_negative(PROMPTS, "Blurry, LOW quality ", instruction=chi)
    assert ours[0].shape == (len(PROMPTS), 300, HIDDEN_SIZE) and ours[1].shape == (len(PROMPTS), 300)
    assert_same(ours, reference(SanaPipeline, tiny, PROMPTS, "Blurry, LOW quality ", chi))


def test_video_matches_sana_video_pipeline(tiny):
    encoder = tiny[3]  # loaded from disk: also checks the save/load round trip
    prompts = PROMPTS[:2]
    negatives = [VIDEO_NEGATIVE_PROMPT, ""]
    ours = encoder.encode_with_negative(prompts, negatives, instruction=VIDEO_INSTRUCTION, motion_score=10)
    # SanaVideoPipeline appends nothing itself; its documented usage adds the sentence to the prompt.
    with_motion = [p + " motion score: 10." for p in prompts]
    theirs = reference(SanaVideoPipeline, tiny, with_motion, negatives, VIDEO_INSTRUCTION)
    assert_same(ours, theirs)


def test_short_sequence_length_matches(tiny):
    ours = tiny[3].encode_with_negative(PROMPTS[0], instruction=IMAGE_INSTRUCTION, max_sequence_length=20)
    assert ours[0].shape == (1, 20, HIDDEN_SIZE)
    assert_same(ours, reference(SanaPipeline, tiny, PROMPTS[0], "", IMAGE_INSTRUCTION, max_sequence_length=20))


def test_cache_hits_skip_the_model_and_return_copies(tiny):
    tokenizer = tiny[1]
    encoder = TextEncoder(tokenizer, tiny_gemma2(len(tokenizer)), cache_size=2)  # its own model: a hook is added
    forwards = count_forwards(encoder.model)

    day, mask = encoder.encode("day", instruction=VIDEO_INSTRUCTION)
    day[:] = 0  # a caller editing its result in place must not reach the cache
    again, mask_again = encoder.encode(" DAY ", instruction=VIDEO_INSTRUCTION)  # same text after cleaning
    assert forwards == [1]
    assert again.abs().sum() > 0 and torch.equal(mask, mask_again)

    # Same text, other options: a different entry.
    encoder.encode("day")
    assert forwards == [1, 1]

    # A batch runs the model only on its misses, once per distinct prompt.
    batch, _ = encoder.encode(["night", "day", "night"])
    assert forwards == [1, 1, 1]
    assert torch.equal(batch[1], encoder.encode("day")[0][0]) and torch.equal(batch[0], batch[2])

    # Bounded: the oldest entry ("day" with the instruction) was evicted, the switched-back prompt is recomputed.
    assert len(encoder.cache) == 2
    assert torch.equal(encoder.encode("day", instruction=VIDEO_INSTRUCTION)[0], again)
    assert forwards == [1, 1, 1, 1]

    encoder.cache.clear()
    encoder.encode("night")
    assert forwards == [1, 1, 1, 1, 1]


def test_lru_order_and_disabled_cache():
    cache = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recent, so "b" goes first
    cache.put("c", 3)
    assert "a" in cache and "b" not in cache and cache.get("b") is None
    off = LRUCache(0)
    off.put("a", 1)
    assert len(off) == 0
    with pytest.raises(ValueError, match="max_entries"):
        LRUCache(-1)


def test_dtype_and_empty_prompt(tiny):
    folder = tiny[0]
    encoder = TextEncoder.from_pretrained(folder / "text_encoder", folder / "tokenizer", dtype=torch.bfloat16)
    embeds, mask = encoder.encode("")
    assert encoder.dtype == torch.bfloat16 and embeds.dtype == torch.bfloat16
    assert embeds.shape == (1, 300, HIDDEN_SIZE) and mask.dtype == torch.int64
    assert mask[0, 0] == 1 and mask[0, 1:].sum() == 0  # BOS only


@pytest.mark.parametrize(
    "prompt, message",
    [
        (3, "got int"),
        (None, "got NoneType"),
        (b"a cat", "got bytes"),
        (["a cat", 7], "list holding int"),
        ([], "empty list"),
    ],
)
def test_bad_prompts_raise(tiny, prompt, message):
    with pytest.raises(ValueError, match=message):
        tiny[3].encode(prompt)


def test_bad_options_raise(tiny):
    with pytest.raises(ValueError, match="instruction must be a string"):
        tiny[3].encode("a cat", instruction=["User Prompt: "])
    with pytest.raises(ValueError, match="2 negative prompts for 1 prompts"):
        tiny[3].encode_with_negative("a cat", ["x", "y"])
