"""Server metrics in the Prometheus text format (`GET /metrics`).

Counters and latency summaries are kept here as the events happen; the live gauges (sessions, frames/s, queue
depth) are read from the sessions when the page is asked for, so they are never stale.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

PREFIX = "sana_stream"


@dataclass
class Summary:
    """A latency summary: Prometheus `_sum` and `_count` (the mean is their ratio), plus the last value."""

    total: float = 0.0
    count: int = 0
    last: float = 0.0

    def observe(self, seconds: float) -> None:
        self.total += seconds
        self.count += 1
        self.last = seconds


@dataclass
class SessionGauges:
    """What one live session contributes to the gauges."""

    fps_sent: float
    fps_generated: float
    queued_frames: int


@dataclass
class Metrics:
    sessions_started: int = 0
    frames_sent: int = 0
    edits: Counter = field(default_factory=Counter)  # applied edits by kind
    errors: Counter = field(default_factory=Counter)  # client errors answered, by kind
    rejected: Counter = field(default_factory=Counter)  # connections or offers refused, by reason
    first_frame: Summary = field(default_factory=Summary)  # offer received -> first frame sent
    edit_to_frame: Summary = field(default_factory=Summary)  # edit received -> first frame showing it sent

    def render(self, sessions: Iterable[SessionGauges], max_sessions: int, batches: int = 0,
               batched_chunks: int = 0) -> str:
        """batches, batched_chunks: the scheduler's counts of generation passes and of the chunks they made."""
        live = list(sessions)
        lines: list[str] = []

        def metric(name: str, kind: str, help_text: str, samples: Iterable[tuple[str, float]]) -> None:
            lines.append(f"# HELP {PREFIX}_{name} {help_text}")
            lines.append(f"# TYPE {PREFIX}_{name} {kind}")
            for suffix, value in samples:
                lines.append(f"{PREFIX}_{name}{suffix} {value:g}")

        def labelled(counter: Counter, label: str) -> list[tuple[str, float]]:
            return [(f'{{{label}="{key}"}}', value) for key, value in sorted(counter.items())]

        metric("sessions", "gauge", "Live streaming sessions.", [("", len(live))])
        metric("sessions_max", "gauge", "Session limit.", [("", max_sessions)])
        metric("sessions_started_total", "counter", "Sessions started.", [("", self.sessions_started)])
        metric("frames_sent_total", "counter", "Video frames handed to the encoders.", [("", self.frames_sent)])
        metric("frames_per_second", "gauge", "Frames/s sent, summed over sessions.",
               [("", round(sum(s.fps_sent for s in live), 3))])
        metric("generated_frames_per_second", "gauge", "Frames/s of the last chunk generated, summed over sessions.",
               [("", round(sum(s.fps_generated for s in live), 3))])
        metric("queue_depth_frames", "gauge", "Frames generated and not yet sent, summed over sessions.",
               [("", sum(s.queued_frames for s in live))])
        metric("generation_batches_total", "counter", "Batched generation passes (one or more sessions' chunks each).",
               [("", batches)])
        metric("generation_chunks_total", "counter", "Chunks made by those passes.", [("", batched_chunks)])
        metric("edits_total", "counter", "Edits that reached the picture, by kind.", labelled(self.edits, "kind"))
        metric("errors_total", "counter", "Errors answered to clients, by kind.", labelled(self.errors, "kind"))
        metric("rejected_total", "counter", "Connections or offers refused, by reason.",
               labelled(self.rejected, "reason"))
        for name, summary, help_text in (
            ("first_frame_seconds", self.first_frame, "Offer received to first frame sent."),
            ("edit_to_frame_seconds", self.edit_to_frame, "Edit received to the first frame showing it sent."),
        ):
            metric(name, "summary", help_text, [("_sum", round(summary.total, 6)), ("_count", summary.count)])
        return "\n".join(lines) + "\n"
