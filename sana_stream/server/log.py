"""Structured logs: one JSON object per line under the `sana_stream.server` logger."""

from __future__ import annotations

import json
import logging
from typing import Any

logger = logging.getLogger("sana_stream.server")


def log_event(event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log `event` with its fields, e.g. log_event("session_start", session="ab12", mode="video")."""
    if logger.isEnabledFor(level):
        logger.log(level, json.dumps({"event": event, **fields}, default=str, ensure_ascii=False))
