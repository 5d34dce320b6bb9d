"""sana-stream: real-time video generation with a block-causal linear-attention video DiT.

The public names load on first use (PEP 562), so `import sana_stream.data` or the CLI's --help do not pay for
torch, transformers and every model module up front.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "SanaTransformer": ".model",
    "StreamState": ".model",
    "TransformerConfig": ".model",
    "VARIANTS": ".model",
    "load_transformer": ".model",
    "Pipeline": ".pipeline",
    "load_pipeline": ".pipeline",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .model import VARIANTS, SanaTransformer, StreamState, TransformerConfig, load_transformer
    from .pipeline import Pipeline, load_pipeline


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sana_stream' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value
