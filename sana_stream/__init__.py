"""sana-stream: real-time video generation with a block-causal linear-attention video DiT."""

from .model import VARIANTS, SanaTransformer, StreamState, TransformerConfig, load_transformer
from .pipeline import Pipeline, load_pipeline

__all__ = ["Pipeline", "SanaTransformer", "StreamState", "TransformerConfig", "VARIANTS", "load_pipeline",
           "load_transformer"]
__version__ = "0.1.0"
