"""A robot-style control loop on the world model, filmed next to the true simulator.

    python examples/world_loop.py                          # the shipped world model, 160 steps -> world_loop.mp4
    python examples/world_loop.py --model PATH --seed 3 --steps 300 -o walk.mp4
    python examples/world_loop.py --remote ws://host:8000/ws/world   # the same loop against a server

Each tick the controller (the simulator's exploring policy, standing in for a robot's planner) picks an action
from what the simulator shows; the world model and the simulator both take it. The MP4 shows the model's
imagined view on the left and the simulator's true view on the right. Both start from the same frame, so the
video shows how long the model's world stays on the real one.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from sana_stream.media import VideoWriter
from worldmodel import RemoteWorldModel, WorldModel
from worldmodel.sim import Simulator, make_policy


def side_by_side(imagined: np.ndarray, real: np.ndarray, scale: int) -> np.ndarray:
    """One video frame: model | 2-pixel gap | simulator, each enlarged `scale`× (nearest neighbour)."""
    gap = np.full((real.shape[0], 2, 3), 255, np.uint8)
    frame = np.concatenate([imagined, gap, real], axis=1)
    return frame.repeat(scale, axis=0).repeat(scale, axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a world folder (default: the shipped world model)")
    parser.add_argument("--remote", help="a server's /ws/world URL: step a remote world model instead")
    parser.add_argument("--action-guidance", type=float, metavar="G",
                        help="override the model's action guidance (1: off; local models only)")
    parser.add_argument("--seed", type=int, default=0, help="the simulated world and the model's noise")
    parser.add_argument("--steps", type=int, default=160)
    parser.add_argument("--scale", type=int, default=4, help="enlarge the video this many times")
    parser.add_argument("-o", "--output", default="world_loop.mp4")
    args = parser.parse_args()

    if args.remote and args.action_guidance is not None:
        parser.error("--action-guidance sets a local model's stepping; a server steps its own")
    wm = (RemoteWorldModel(args.remote) if args.remote
          else WorldModel.from_pretrained(args.model, action_guidance=args.action_guidance))
    sim = Simulator(args.seed)
    controller = make_policy("explore", np.random.default_rng(args.seed))
    if tuple(wm.frame_size) != sim.frame_size:
        raise SystemExit(f"the model makes {tuple(wm.frame_size)} frames, the simulator {sim.frame_size}")
    start = sim.reset()
    wm.reset(seed=args.seed, image=start, prompt=sim.caption, pose=sim.pose)

    latencies = []
    first = side_by_side(start, start, args.scale)
    with VideoWriter(args.output, wm.fps, first.shape[1], first.shape[0]) as video:
        video.write(first)
        for _ in range(args.steps):
            action = controller(sim)  # the robot decides from what it really sees
            real = sim.step(action)
            tick = time.perf_counter()
            obs = wm.step(action)
            latencies.append(1e3 * (time.perf_counter() - tick))
            for imagined in obs.frames:  # all frames the action produced (one per step for the shipped model)
                video.write(side_by_side(imagined, real, args.scale))
    if args.remote:
        wm.close()
    print(f"wrote {video.frames_written} frames to {args.output}: model (left) next to the simulator (right); "
          f"step() {statistics.median(latencies):.1f} ms median, {max(latencies):.1f} ms worst")


if __name__ == "__main__":
    main()
