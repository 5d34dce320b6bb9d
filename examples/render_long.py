"""Render a minute-long (or longer) video from a prompt schedule, one chunk in memory at a time.

    python examples/render_long.py                                   # embedded demo model, schedules/minute.jsonl
    python examples/render_long.py --model PATH --schedule my.jsonl -o long.mp4 --seed 3

A schedule is JSON Lines: {"prompt": ..., "seconds": ...} per line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import sana_stream as ss
from sana_stream.engine.render import read_schedule, render_schedule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a pipeline folder (default: the embedded demo model)")
    parser.add_argument("--schedule", default=str(Path(__file__).parent / "schedules" / "minute.jsonl"))
    parser.add_argument("-o", "--output", default="long.mp4")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    pipe = ss.load_pipeline(args.model)
    stats = render_schedule(pipe, read_schedule(args.schedule), args.output, seed=args.seed)
    print(f"wrote {stats['frames_written']} frames to {args.output} in {stats['wall_seconds']:.1f} s "
          f"({stats['render_fps']:.1f} frames/s, {stats['recaches']} prompt switches, "
          f"state {stats['state_bytes'] / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
