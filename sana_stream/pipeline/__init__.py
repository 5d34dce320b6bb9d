"""Generation pipelines: text encoder + transformer + sampler + VAE."""

from .loading import load_pipeline
from .pipeline import Pipeline

__all__ = ["Pipeline", "load_pipeline"]
