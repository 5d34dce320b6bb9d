"""The streaming server over loopback: latency, frames/s per session and server CPU with 1, 2 and 4 sessions,
against the engine generating alone in one process; and a soak run for memory growth and errors.

    python benchmarks/server.py                        # 1, 2 and 4 sessions, 20 s of measurement each
    python benchmarks/server.py --sessions 1 --seconds 5          # a quick look
    python benchmarks/server.py --soak 10              # soak: 2 sessions for 10 minutes (prompt change every 30 s)

Then one world-mode session (the embedded world model) measures action-to-photon: key edges sent -> the first
frame made under them decoded at the client.

Everything runs on this machine: the real `sana-stream serve` in a child process (embedded demo model, VP8),
headless aiortc clients (clients/python) in this one, which decode every frame. On a 2-core CPU the clients'
decoding and the server's encoding take cores from generation, so frames/s here are lower than the engine's.

Columns:
  first frame       offer sent -> first frame decoded at the client (median over sessions)
  prompt→photon     prompt sent -> first frame made under it decoded at the client (median over sessions)
  fps/session       frames decoded per second per session (mean), during the measurement window
  vs direct         sessions × fps/session ÷ the baseline's frames/s: the share of the engine's own throughput
                    that reaches viewers (1.00 = no loss to serving)
  server CPU        the server process's CPU time ÷ wall time (1.00 = one core busy)
Baseline "direct": `pipe.stream()` iterated in this process with no server (in a worker thread, like the
server's generation), same model, dtype (bf16) and torch threads.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import torch

import sana_stream as ss

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "clients" / "python"))
from sana_client import SanaClient  # noqa: E402

PROMPTS = ("a red circle moving right on a blue background", "a white square moving up on a purple background")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Server:
    """`sana-stream serve` on a free port, logs to a file."""

    def __init__(self, max_sessions: int, world: bool = False):
        self.log = tempfile.NamedTemporaryFile("w+", prefix="sana-bench-", suffix=".log")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sana_stream.cli", "serve", "--port", "0", "--max-sessions", str(max_sessions),
             "--codec", "vp8", *([] if world else ["--no-world"]), "--quiet"], stdout=subprocess.PIPE, stderr=self.log, text=True, cwd=ROOT)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(300)
        match = re.search(r"http://([\d.]+):(\d+)/", lines[0] if lines else "")
        if not match:
            self.stop()
            raise RuntimeError(f"the server did not start: {Path(self.log.name).read_text()[-1000:]}")
        self.http, self.ws = f"http://{match[1]}:{match[2]}", f"ws://{match[1]}:{match[2]}/ws"

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", status)[1]) / 1024

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(self.http + "/metrics", timeout=30) as answer:
            text = answer.read().decode()
        return sum(float(m[1]) for m in re.finditer(rf"^sana_stream_{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def direct_fps(seconds: float) -> float:
    """The baseline: frames/s of the engine alone, iterating pipe.stream() in this process, in a worker thread
    as the server generates (on a loaded 2-core machine, torch's OpenMP team on the main thread was measured
    up to 100× slower than the same work from a worker thread)."""
    stream = ss.load_pipeline(dtype=torch.bfloat16).stream(PROMPTS[0], seed=0)  # the server's default dtype
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(_frames_per_second, stream, seconds).result()


def _frames_per_second(stream: Iterator, seconds: float) -> float:
    for _ in range(6):  # warm-up: first chunks pay for allocations
        next(stream)
    start, frames = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        next(stream)
        frames += 1
    return frames / (time.perf_counter() - start)


async def measure(server: Server, sessions: int, seconds: float) -> dict[str, float]:
    clients = [SanaClient(server.ws, prompt=PROMPTS[0], seed=i) for i in range(sessions)]
    try:
        await asyncio.gather(*(c.connect() for c in clients))
        await asyncio.gather(*(c.wait_frames(12, timeout=300) for c in clients))
        counts = [c.frame_count for c in clients]
        cpu, start = server.cpu_seconds(), time.perf_counter()
        await asyncio.sleep(seconds)
        wall = time.perf_counter() - start
        fps = [(c.frame_count - n) / wall for c, n in zip(clients, counts)]
        cpu = (server.cpu_seconds() - cpu) / wall
        shown = await asyncio.gather(*(c.set_prompt(PROMPTS[1], timeout=300) for c in clients))
        return {"first": statistics.median(c.stats.first_frame_s for c in clients),
                "edit": statistics.median(s.latency_s for s in shown), "fps": statistics.mean(fps), "cpu": cpu}
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


async def action_to_photon(server: Server, presses: int) -> dict[str, float]:
    """One world-mode session: hold w, then release, `presses` times; action sent -> first frame made under it."""
    client = SanaClient(server.ws, seed=0, mode="world")
    try:
        await client.connect()
        await client.wait_frames(8, timeout=300)
        latencies = []
        for i in range(presses):
            shown = await client.act("w" if i % 2 == 0 else "none", timeout=300)
            latencies.append(shown.latency_s)
            await asyncio.sleep(0.5)
        return {"first": client.stats.first_frame_s, "action": statistics.median(latencies)}
    finally:
        await client.close()


async def soak(server: Server, minutes: float) -> None:
    clients = [SanaClient(server.ws, prompt=PROMPTS[0], seed=i) for i in range(2)]
    await asyncio.gather(*(c.connect() for c in clients))
    await asyncio.gather(*(c.wait_frames(12, timeout=300) for c in clients))
    start, rss0, switches = time.perf_counter(), server.rss_mb(), 0
    print(f"{'minute':>6} {'server RSS MB':>13} {'frames':>8} {'errors':>6}")
    try:
        while (elapsed := time.perf_counter() - start) < 60 * minutes:
            await asyncio.sleep(30)
            switches += 1
            await asyncio.gather(*(c.set_prompt(PROMPTS[switches % 2], timeout=300) for c in clients))
            errors = server.metric("errors_total") + sum(len(c.errors) for c in clients)
            print(f"{elapsed / 60:6.1f} {server.rss_mb():13.1f} {sum(c.frame_count for c in clients):8d} "
                  f"{errors:6.0f}", flush=True)
        rss1 = server.rss_mb()
        print(f"\nsoak {minutes:g} min, 2 sessions, {switches} prompt changes each: server RSS {rss0:.1f} -> "
              f"{rss1:.1f} MB ({rss1 - rss0:+.1f} MB), errors {errors:.0f}, "
              f"sessions alive {int(server.metric('sessions'))} of 2")
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", default="1,2,4", help="concurrent session counts (default 1,2,4)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement window per point (default 20)")
    parser.add_argument("--presses", type=int, default=10,
                        help="world-mode key presses for action-to-photon (default 10; 0 skips it)")
    parser.add_argument("--soak", type=float, nargs="?", const=10.0, metavar="MINUTES",
                        help="soak mode: 2 sessions for MINUTES (default 10) instead of the table")
    args = parser.parse_args()

    if args.soak is not None:
        server = Server(max_sessions=2)
        try:
            asyncio.run(soak(server, args.soak))
        finally:
            server.stop()
        return

    points = [int(n) for n in args.sessions.split(",")]
    baseline = direct_fps(args.seconds)
    server = Server(max_sessions=max(points))
    try:
        rows = [(n, asyncio.run(measure(server, n, args.seconds))) for n in points]
    finally:
        server.stop()
    world = None
    if args.presses:
        server = Server(max_sessions=1, world=True)
        try:
            world = asyncio.run(action_to_photon(server, args.presses))
        finally:
            server.stop()
    print(f"\nbaseline 'direct' (pipe.stream, no server): {baseline:.1f} frames/s; load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"{'sessions':>8} {'first frame':>12} {'prompt→photon':>14} {'fps/session':>12} {'vs direct':>10} "
          f"{'server CPU':>11}")
    for n, r in rows:
        print(f"{n:8d} {1e3 * r['first']:10.0f} ms {1e3 * r['edit']:11.0f} ms {r['fps']:12.1f} "
              f"{n * r['fps'] / baseline:10.2f} {r['cpu']:11.2f}")
    if world:
        print(f"world mode, 1 session: first frame {1e3 * world['first']:.0f} ms, action→photon (median of "
              f"{args.presses} key edges) {1e3 * world['action']:.0f} ms")


if __name__ == "__main__":
    main()
