"""The Sana / SANA-Video transformer and its streaming state."""

from .checkpoint import build_transformer, load_transformer
from .config import VARIANTS, TransformerConfig, resolve_config
from .state import StateBatch, StreamState
from .transformer import SanaTransformer

__all__ = ["SanaTransformer", "StateBatch", "StreamState", "TransformerConfig", "VARIANTS", "build_transformer",
           "load_transformer", "resolve_config"]
