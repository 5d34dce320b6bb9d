"""Prompt -> (embeddings, mask), as the reference SANA pipelines compute them.

Recipe (SANA paper §3.1 and the reference pipelines):
1. clean the prompt (lowercase + strip), optionally prepend the instruction (CHI) text;
2. tokenise with right padding to a fixed length: 300 without an instruction, or the instruction's own
   token count + 298 with one, so the user prompt still gets ~299 tokens after the long prefix;
3. run the language model and take its last hidden state (after the final norm);
4. keep position 0 (BOS) and the last 299 positions: this drops the instruction's own positions while
   its influence stays in the hidden states of the user tokens that follow it (a causal LM).
The attention mask is sliced the same way, so the DiT's cross-attention ignores padding.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from .cache import LRUCache
from .prompts import as_prompt_list, prepare_prompt

MAX_SEQUENCE_LENGTH = 300


class TextEncoder:
    """A tokenizer + language model pair that turns prompts into DiT conditioning, with an LRU cache.

    Returned tensors are always fresh copies: the cache keeps its own, so a caller scaling or editing
    embeddings in place (prompt weighting, interpolation between prompts) can never poison a later hit.
    A copy of (300, 2304) values is negligible next to any DiT step, and torch has no read-only tensors.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel, *, cache_size: int = 32):
        self.tokenizer = tokenizer
        # The recipe keeps the *last* positions; that only lines up with the reference when padding is
        # at the end. Gemma tokenizers default to left padding, so this is set once here.
        self.tokenizer.padding_side = "right"
        self.model = model.eval()
        self.cache: LRUCache[tuple[torch.Tensor, torch.Tensor]] = LRUCache(cache_size)

    @classmethod
    def from_pretrained(
        cls,
        text_encoder_folder: str | Path,
        tokenizer_folder: str | Path | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        *,
        cache_size: int = 32,
    ) -> TextEncoder:
        """Load from local folders: a diffusers pipeline's text_encoder/ and tokenizer/, or one model
        folder holding both (tokenizer_folder=None). Never touches the network.

        dtype=None keeps the dtype the checkpoint was saved in.
        """
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_folder or text_encoder_folder), local_files_only=True)
        model = AutoModel.from_pretrained(str(text_encoder_folder), local_files_only=True, dtype=dtype or "auto")
        # .to() also covers transformers versions that ignore `dtype` in from_pretrained.
        return cls(tokenizer, model.to(device=device, dtype=dtype), cache_size=cache_size)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def encode(
        self,
        prompt: str | list[str],
        *,
        instruction: str | None = None,
        motion_score: int | None = None,
        max_sequence_length: int = MAX_SEQUENCE_LENGTH,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings (B, max_sequence_length, hidden) in the model's dtype and the 0/1 int64 mask
        (B, max_sequence_length), both on the model's device.

        instruction: text prepended to each cleaned prompt (IMAGE_INSTRUCTION / VIDEO_INSTRUCTION for the
            reference pipelines' defaults); None or "" for none, as for negative prompts.
        motion_score: appends " motion score: N." to each prompt (video models); None appends nothing,
            which is what SanaVideoPipeline does unless the caller adds it.
        """
        if instruction is not None and not isinstance(instruction, str):
            raise ValueError(f"instruction must be a string or None, got {type(instruction).__name__}")
        instruction = instruction or ""
        keys = [(instruction, prepare_prompt(p, motion_score), max_sequence_length) for p in as_prompt_list(prompt)]

        # Results are gathered in a local dict, not read back from the cache: one batch may hold more
        # distinct prompts than the cache does.
        found = {key: self.cache.get(key) for key in keys}
        missing = [key for key, value in found.items() if value is None]
        if missing:
            with torch.no_grad():
                embeds, mask = self.embed([text for _, text, _ in missing], instruction, max_sequence_length)
            for key, e, m in zip(missing, embeds, mask):
                # Cloned so each entry owns its memory instead of pinning the whole batch's storage.
                found[key] = (e.clone(), m.clone())
                self.cache.put(key, found[key])

        rows = [found[key] for key in keys]
        return torch.stack([e for e, _ in rows]), torch.stack([m for _, m in rows])  # stack copies

    def encode_with_negative(
        self,
        prompt: str | list[str],
        negative_prompt: str | list[str] = "",
        *,
        instruction: str | None = None,
        motion_score: int | None = None,
        max_sequence_length: int = MAX_SEQUENCE_LENGTH,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(embeds, mask, negative_embeds, negative_mask) for classifier-free guidance.

        The negative prompt is cleaned the same way but gets neither the instruction nor the motion
        sentence, as in the reference; a single negative string is shared by every prompt in the batch.
        """
        batch_size = len(as_prompt_list(prompt))
        negatives = as_prompt_list(negative_prompt)
        if isinstance(negative_prompt, str):
            negatives = negatives * batch_size
        elif len(negatives) != batch_size:
            raise ValueError(f"got {len(negatives)} negative prompts for {batch_size} prompts")
        embeds, mask = self.encode(
            prompt, instruction=instruction, motion_score=motion_score, max_sequence_length=max_sequence_length
        )
        return (embeds, mask, *self.encode(negatives, max_sequence_length=max_sequence_length))

    def embed(self, texts: list[str], instruction: str, max_sequence_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The uncached recipe on prepared texts, differentiable (training the encoder jointly uses it)."""
        if instruction:
            texts = [instruction + text for text in texts]
            # The instruction's tokens (with BOS) on top of the prompt budget, minus 2: the reference's
            # arithmetic, kept exactly since the positions kept below depend on it.
            max_length = len(self.tokenizer.encode(instruction)) + max_sequence_length - 2
        else:
            max_length = max_sequence_length
        tokens = self.tokenizer(
            texts,
            padding="max_length",
            max_length=max_length,
            truncation=True,
            add_special_tokens=True,
            return_tensors="pt",
        )
        ids = tokens.input_ids.to(self.device)
        mask = tokens.attention_mask.to(self.device)
        hidden = self.model(ids, attention_mask=mask)[0]  # last hidden state, after the final norm
        keep = [0, *range(1 - max_sequence_length, 0)]  # BOS + the last (max_sequence_length - 1) positions
        return hidden[:, keep], mask[:, keep]
