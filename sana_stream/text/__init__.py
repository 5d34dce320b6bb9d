"""Text conditioning: prompts -> Gemma-2 hidden states + mask, exactly as the reference pipelines."""

from .cache import LRUCache
from .encoder import MAX_SEQUENCE_LENGTH, TextEncoder
from .prompts import IMAGE_INSTRUCTION, VIDEO_INSTRUCTION, VIDEO_NEGATIVE_PROMPT

__all__ = [
    "IMAGE_INSTRUCTION",
    "LRUCache",
    "MAX_SEQUENCE_LENGTH",
    "TextEncoder",
    "VIDEO_INSTRUCTION",
    "VIDEO_NEGATIVE_PROMPT",
]
