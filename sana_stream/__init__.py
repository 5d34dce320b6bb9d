"""sana-stream: real-time video generation with a block-causal linear-attention video DiT."""

from .model import VARIANTS, SanaTransformer, StreamState, TransformerConfig, load_transformer

__all__ = ["SanaTransformer", "StreamState", "TransformerConfig", "VARIANTS", "load_transformer"]
__version__ = "0.1.0"
