"""Offline long renders: a prompt schedule streamed into an MP4, one chunk in memory at a time.

A schedule is JSON Lines, one segment per line: {"prompt": "a red ball bouncing", "seconds": 15}. Prompts switch
at the first chunk boundary at or after each segment's start (the engine's re-cache runs there), so a switch
lands within one chunk of its scheduled time.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..media import VideoWriter

MAX_SCHEDULE_SECONDS = 24 * 3600.0


@dataclass(frozen=True)
class Segment:
    prompt: str
    seconds: float


def parse_schedule(text: str, source: str = "schedule") -> list[Segment]:
    """Segments from JSON Lines text; blank lines and lines starting with # are skipped. A malformed line
    raises ValueError naming `source` and the line number."""
    segments = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source} line {number}"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: not valid JSON ({err.msg})") from None
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected an object like {{\"prompt\": ..., \"seconds\": ...}}")
        unknown = sorted(set(entry) - {"prompt", "seconds"})
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}")
        prompt, seconds = entry.get("prompt"), entry.get("seconds")
        if not isinstance(prompt, str):
            raise ValueError(f"{where}: \"prompt\" must be a string")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= MAX_SCHEDULE_SECONDS:
            raise ValueError(f"{where}: \"seconds\" must be a number in (0, {MAX_SCHEDULE_SECONDS:g}]")
        segments.append(Segment(prompt, float(seconds)))
    if not segments:
        raise ValueError(f"{source}: no segments (one JSON object per line)")
    return segments


def read_schedule(path: str | Path) -> list[Segment]:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ValueError(f"cannot read schedule {path}: {err.strerror}") from None
    return parse_schedule(text, source=str(path))


def render_schedule(
    pipe: Any,
    schedule: list[Segment],
    output: str | Path,
    *,
    seed: int | None = None,
    height: int | None = None,
    width: int | None = None,
    progress: bool = True,
    **stream_options: Any,
) -> dict[str, Any]:
    """Stream `schedule` into an MP4 at `output`; returns the stream's final stats plus wall time."""
    stream = pipe.stream(schedule[0].prompt, seed=seed, height=height, width=width, **stream_options)
    fps = stream.options.fps
    starts, total = [], 0
    for segment in schedule:
        starts.append(total)
        total += max(1, round(segment.seconds * fps))
    next_segment, written = 1, 0
    started = time.perf_counter()
    bar = tqdm(total=total, unit="frame", desc="render", disable=not progress, dynamic_ncols=True)
    with VideoWriter(output, fps, stream.width, stream.height) as writer:
        while written < total:
            if next_segment < len(schedule) and written >= starts[next_segment]:
                stream.set_prompt(schedule[next_segment].prompt)
                next_segment += 1
            frames = stream.next_chunk()[: total - written]
            writer.write(frames)  # the only frames held: this chunk's
            written += len(frames)
            bar.update(len(frames))
            bar.set_postfix(fps=f"{stream.stats['fps']:.1f}")
    bar.close()
    seconds = time.perf_counter() - started
    return {**stream.stats, "frames_written": written, "wall_seconds": seconds,
            "render_fps": written / seconds if seconds > 0 else math.inf, "seed": stream.seed}
