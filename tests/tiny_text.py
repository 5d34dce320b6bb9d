"""A tiny random Gemma-2 text encoder and a Gemma tokenizer built offline, saved like a diffusers pipeline.

The tokenizer is a real GemmaTokenizer (BPE with byte fallback, "▁" for spaces, BOS added) over a
hand-made vocabulary: characters, byte tokens for everything else, and a few merges so that tokens do
span word boundaries like the real one (the instruction's trailing space merges with the prompt's
first letter, which is why the reference tokenises instruction + prompt as one string).
"""

from __future__ import annotations

import string
from pathlib import Path

import torch
from transformers import Gemma2Config, Gemma2Model, GemmaTokenizer

HIDDEN_SIZE = 32
_MERGES = [("▁", "a"), ("▁", "t"), ("t", "h"), ("▁t", "h"), ("e", "r"), ("i", "n"), ("a", "n"), ("o", "n")]


def tiny_tokenizer() -> GemmaTokenizer:
    tokens = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    tokens += [f"<0x{b:02X}>" for b in range(256)]  # byte fallback: capitals, digits, anything unlisted
    tokens += list(string.ascii_lowercase + ".,:;'-\n▁")
    tokens += [a + b for a, b in _MERGES]
    return GemmaTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=_MERGES, add_bos_token=True)


def tiny_gemma2(vocab_size: int, seed: int = 0) -> Gemma2Model:
    config = Gemma2Config(
        vocab_size=vocab_size,
        hidden_size=HIDDEN_SIZE,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=2048,
        sliding_window=64,  # shorter than the sequences, so the sliding-window layers do mask something
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )
    torch.manual_seed(seed)
    return Gemma2Model(config).eval()


def save_tiny_text_pipeline(folder: str | Path) -> tuple[GemmaTokenizer, Gemma2Model]:
    """Write folder/tokenizer and folder/text_encoder; returns the in-memory originals."""
    folder = Path(folder)
    tokenizer = tiny_tokenizer()
    model = tiny_gemma2(len(tokenizer))
    tokenizer.save_pretrained(folder / "tokenizer")
    model.save_pretrained(folder / "text_encoder")
    return tokenizer, model
