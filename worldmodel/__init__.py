"""The world-model SDK: step an action-conditioned video model like a simulator.

    from worldmodel import WorldModel
    wm = WorldModel.from_pretrained()
    obs = wm.reset(seed=0, image=start_frame)
    obs = wm.step("w+a")

Names load on first use (PEP 562): `import worldmodel` alone does not pay for torch, gymnasium or websockets.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "WorldModel": ".model",
    "Observation": ".model",
    "Snapshot": ".model",
    "WorldConfig": ".model",
    "WorldEnv": ".env",
    "RemoteWorldModel": ".remote",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .env import WorldEnv
    from .model import Observation, Snapshot, WorldConfig, WorldModel
    from .remote import RemoteWorldModel


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'worldmodel' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value
