"""The streaming-edit server over loopback, driven by the headless Python client (clients/python).

One server process (the real `sana-stream serve`, the embedded demo model) serves the module's tests; waits
are bounded generously because CI machines are slow, and no test asserts a timing.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import msgpack
import numpy as np
import pytest
import websockets
from PIL import Image

from sana_stream.server.protocol import MAX_MESSAGE_BYTES, ProtocolError, parse_message

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "clients" / "python"))
from sana_client import SanaClient, ServerError  # noqa: E402

TOKEN = "test-token-1234"
PROMPT = "a red circle moving right on a blue background"
OTHER_PROMPT = "a white square moving up on a sky over green ground"  # another background kind: the v1 demo model follows kinds, not colours
START_TIMEOUT = 600  # model load on a busy CI machine


class ServerProcess:
    def __init__(self, *args: str):
        # Logs go to a file: a pipe nobody reads would fill up and stall the server.
        self.log = tempfile.NamedTemporaryFile("w+", prefix="sana-serve-", suffix=".log")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sana_stream.cli", "serve", "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = _read_line(self.proc, START_TIMEOUT)
        match = re.search(r"http://([\d.]+):(\d+)/", line)
        if not match:
            log = Path(self.log.name).read_text()[-2000:]
            self.stop()
            pytest.fail(f"the server did not start within {START_TIMEOUT} s: {line!r} {log}")
        self.http = f"http://{match[1]}:{match[2]}"
        self.ws = f"ws://{match[1]}:{match[2]}/ws"

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.http + path, timeout=30) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def metric(self, name: str) -> float:
        status, text = self.get("/metrics")
        assert status == 200
        match = re.search(rf"^sana_stream_{re.escape(name)} (\S+)$", text, re.M)
        return float(match[1]) if match else 0.0

    def stop(self) -> int:
        """SIGTERM, as a service manager would; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=120)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.log.close()


def _read_line(proc: subprocess.Popen, timeout: float) -> str:
    """The first stdout line, or "" if none comes in time (the reading thread is left to the pipe's end)."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return lines[0] if lines else ""


@pytest.fixture(scope="module")
def world_folder(tmp_path_factory) -> Path:
    from tests.test_worldmodel import tiny_world

    return tiny_world(tmp_path_factory.mktemp("world") / "tiny")


@pytest.fixture(scope="module")
def server(world_folder):
    srv = ServerProcess("--token", TOKEN, "--max-sessions", "2", "--world", str(world_folder))
    yield srv
    srv.stop()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 600))


def mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


async def wait_for_metric(server: ServerProcess, name: str, value: float, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while server.metric(name) != value:
        assert time.monotonic() < deadline, f"{name} stayed at {server.metric(name)}, expected {value}"
        await asyncio.sleep(0.5)


# ----- the message checks, without a server ------------------------------------------------------------------


@pytest.mark.parametrize("frame, error", [
    ("{not json", "malformed JSON"),
    (b"\xc1\xc1", "malformed msgpack"),
    ("[1, 2]", "must be an object"),
    ('{"type": "fly"}', "unknown message type"),
    ('{"type": "prompt"}', "needs a 'text' field"),
    ('{"type": "prompt", "text": 5}', "must be a string"),
    (json.dumps({"type": "prompt", "text": "x" * 5000}), "too long"),
    ('{"type": "prompt", "text": "a", "transition": 99}', "must be in [0, 32]"),
    ('{"type": "reset", "seed": -1}', "must be in"),
    ('{"type": "reset", "seed": true}', "must be an integer"),
    ('{"type": "pause", "extra": 1}', "unknown field"),
    ('{"type": "action", "keys": "w; rm -rf"}', "letters joined by '+'"),
    ('{"type": "offer", "sdp": "hello"}', "not an SDP"),
    ('{"type": "offer", "sdp": "v=0", "mode": "dream"}', "mode must be one of"),
    ('{"type": "image", "data": "!!!"}', "not valid base64"),
    ('{"type": "pause", "id": "seven"}', "id must be an integer"),
])
def test_protocol_rejects_bad_messages(frame, error):
    with pytest.raises(ProtocolError, match=re.escape(error)):
        parse_message(frame)


def test_protocol_accepts_json_and_msgpack():
    msg = parse_message('{"type": "prompt", "text": "a boat", "id": 3}')
    assert (msg.type, msg.fields, msg.id) == ("prompt", {"text": "a boat", "transition": None}, 3)
    msg = parse_message(msgpack.packb({"type": "image", "data": b"\x89PNG"}))
    assert msg.fields["data"] == b"\x89PNG"
    assert parse_message('{"type": "action", "keys": "A+W", "t": 12.5}').fields == {"keys": "a+w", "t": 12.5}


# ----- sessions ----------------------------------------------------------------------------------------------


def test_stream_edit_metrics_and_disconnect(server, tmp_path):
    async def scenario():
        recording = tmp_path / "session.mp4"
        async with SanaClient(server.ws, prompt=PROMPT, seed=5, token=TOKEN, record=str(recording)) as client:
            await client.wait_frames(48)
            assert client.stats.first_frame_s is not None
            assert all(f.pixels.shape == (256, 256, 3) for f in client.frames)
            first = client.frame_at(0).pixels
            assert server.metric("sessions") == 1
            assert server.metric("frames_sent_total") >= 48

            # The same seed restarts the same video: the first frame after the reset is the first frame again,
            # while another seed starts another video.
            same = await client.reset(seed=5)
            other = await client.reset(seed=6)
            assert mean_abs(same.frame.pixels, first) < 4
            assert mean_abs(other.frame.pixels, first) > 2 * mean_abs(same.frame.pixels, first) + 3

            # A prompt change reaches the picture within a bounded time; restarted with the first seed, the
            # video now differs from the one the first prompt made.
            switched = await client.set_prompt(OTHER_PROMPT, timeout=120)
            assert switched.latency_s > 0
            renewed = await client.reset(seed=5)
            assert mean_abs(renewed.frame.pixels, first) > 2 * mean_abs(same.frame.pixels, first) + 1

            # An image prompt restarts the video from that picture.
            green = np.zeros((64, 64, 3), np.uint8)
            green[..., 1] = 255
            png = io.BytesIO()
            Image.fromarray(green).save(png, format="PNG")
            pictured = await client.set_image(png.getvalue())
            target = np.broadcast_to(green[:1, :1], first.shape)
            assert mean_abs(pictured.frame.pixels, target) < mean_abs(first, target)

            status, text = server.get("/metrics")
            assert 'sana_stream_edits_total{kind="image"} 1' in text
            assert 'sana_stream_edits_total{kind="prompt"} 1' in text
            assert 'sana_stream_edits_total{kind="reset"} 3' in text
            assert server.metric("edit_to_frame_seconds_count") == 5
            assert server.metric("first_frame_seconds_count") >= 1
            frames = client.frame_count
        await wait_for_metric(server, "sessions", 0)
        return recording, frames

    recording, frames = run(scenario())
    import av

    with av.open(str(recording)) as container:
        decoded = sum(1 for _ in container.decode(video=0))
    assert decoded == frames >= 48


def test_pause_freezes_and_resume_continues(server):
    async def scenario():
        async with SanaClient(server.ws, prompt=PROMPT, token=TOKEN) as client:
            await client.wait_frames(12)
            await client.request("pause")
            await asyncio.sleep(1.0)  # frames already on their way arrive meanwhile
            count = client.frame_count
            await client.wait_frames(count + 8)  # the paused track keeps sending (the last frame again)
            still = [f.pixels for f in list(client.frames)[-4:]]
            assert max(mean_abs(a, still[0]) for a in still) < 2
            generated = client.stats.server.get("frames_generated")
            await client.request("resume")
            await client.wait_frames(client.frame_count + 12)
            await asyncio.sleep(1.5)  # the next stats report
            assert client.stats.server["frames_generated"] > generated

    run(scenario())


def test_health_page_and_unknown_paths(server):
    assert server.get("/health") == (200, "ok\n")
    status, page = server.get("/")
    assert status == 200 and "<video" in page
    assert server.get("/app.js")[0] == 200
    assert server.get("/../pyproject.toml")[0] == 404
    assert server.get("/nothing-here")[0] == 404


# ----- world mode ---------------------------------------------------------------------------------------------


def following(client: SanaClient, frame, count: int = 4) -> np.ndarray:
    """The pixels of the `count` frames received right after `frame`."""
    frames = list(client.frames)
    start = next(i for i, f in enumerate(frames) if f is frame) + 1
    return np.stack([f.pixels for f in frames[start:start + count]])


def test_world_session_moves_with_the_keys(server):
    async def restart(client: SanaClient) -> np.ndarray:
        """Restart the world with seed 3 and return the frames of its first steps."""
        shown = await client.reset(seed=3)
        await client.wait_frames(client.frame_count + 5)
        return following(client, shown.frame)

    async def scenario():
        async with SanaClient(server.ws, mode="world", seed=3, token=TOKEN) as client:
            await client.wait_frames(6)
            assert client.frame_at(0).pixels.shape == (32, 32, 3)
            # The same seed and keys give the same steps; holding another key gives other steps.
            still, again = await restart(client), await restart(client)
            moved = await client.act("w")
            assert moved.latency_s > 0
            forward = await restart(client)
            assert mean_abs(forward, still) > 2 * mean_abs(again, still) + 1
            with pytest.raises(ServerError, match="opposite keys"):
                await client.act("s+w")
            assert client.stats.server.get("prompt")
        status, text = server.get("/metrics")
        assert 'sana_stream_edits_total{kind="action"} 1' in text

    run(scenario())


def test_remote_world_model_over_ws_world(server):
    from worldmodel import RemoteWorldModel

    with RemoteWorldModel(f"{server.ws}/world?token={TOKEN}") as wm:
        obs = wm.reset(seed=0)
        assert obs.frames.shape == (1, 32, 32, 3)
        obs = wm.step("w+a")
        assert obs.frames.dtype == np.uint8 and obs.frames.shape[1:] == (32, 32, 3)
        with pytest.raises(ValueError, match="unknown key"):
            wm.step("q")
    with pytest.raises(Exception):  # the token is checked on /ws/world too
        RemoteWorldModel(f"{server.ws}/world", timeout=30)


# ----- bad input -----------------------------------------------------------------------------------------------


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims `width`×`height` pixels in a few dozen bytes (no pixel data)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


BAD_BEFORE_OFFER = [
    "{not json", "", "null", "[]", '"text"', "{}", '{"type": 7}', '{"type": "fly"}',
    '{"type": "prompt", "text": "a boat"}',  # valid, but there is no session yet
    '{"type": "offer"}', '{"type": "offer", "sdp": 1}', '{"type": "offer", "sdp": "v=0\\r\\nnonsense"}',
    '{"type": "offer", "sdp": "v=0\\r\\n", "mode": "world"}', '{"type": "offer", "sdp": "v=0", "codec": "av1"}',
    json.dumps({"type": "offer", "sdp": "v=0" + "x" * 70000}),
    b"\x00\x01\x02", msgpack.packb([1, 2, 3]), msgpack.packb({"type": "pause", "id": -1}),
    msgpack.packb({"type": b"bytes"}), "{" * 5000 + "}" * 5000,
]
BAD_IN_SESSION = [
    '{"type": "prompt"}', '{"type": "prompt", "text": null}', json.dumps({"type": "prompt", "text": "y" * 3000}),
    '{"type": "prompt", "text": "a", "transition": -1}', '{"type": "reset", "seed": "seven"}',
    '{"type": "reset", "seed": 1e400}', '{"type": "action", "keys": "w"}',  # actions need world mode
    '{"type": "image", "data": "bm90IGFuIGltYWdl"}',  # base64 of "not an image"
    json.dumps({"type": "image", "data": base64.b64encode(_png_header(30000, 30000)).decode()}),
    json.dumps({"type": "image", "data": base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 64).decode()}),
    json.dumps({"type": "image", "data": "A" * (6 * 2**20)}),  # base64 of more than the 4 MiB cap
    msgpack.packb({"type": "image", "data": b"\xff\xd8\xff" + b"\0" * 100}),
    '{"type": "offer", "sdp": "v=0"}',  # a second session on one connection
]


def test_bad_input_answered_to_that_client_only(server):
    async def scenario():
        async with SanaClient(server.ws, prompt=PROMPT, token=TOKEN) as bystander:
            await bystander.wait_frames(8)
            errors_before = server.metric('errors_total{kind="protocol"}')

            # A few hundred bad messages on one connection: each gets its own error, none ends the connection.
            sent = 0
            flooder = SanaClient(server.ws, prompt=PROMPT, token=TOKEN)
            await flooder.open()
            try:
                for _ in range(12):
                    for frame in BAD_BEFORE_OFFER:
                        assert await flooder.expect_error(frame)
                        sent += 1
                # The same connection can still open a session, which then refuses bad edits too.
                await flooder.start()
                await flooder.wait_frames(4)
                for frame in BAD_IN_SESSION * 8:
                    assert await flooder.expect_error(frame)
                    sent += 1
                shown = await flooder.set_prompt(OTHER_PROMPT)  # a good edit still works
                assert shown.latency_s > 0
            finally:
                await flooder.close()
            assert sent >= 300
            assert server.metric('errors_total{kind="protocol"}') - errors_before == sent

            # Connections refused as a whole: a clear message, then the socket is closed.
            for url, origin, reason in ((server.ws, None, "token"), (server.ws + "?token=wrong-token-1", None, "token"),
                                        (server.ws + "?token=" + TOKEN, "http://evil.example", "origin")):
                async with websockets.connect(url, origin=origin) as ws:
                    answer = json.loads(await ws.recv())
                    assert answer["type"] == "error" and answer["code"] == reason
                    with pytest.raises(websockets.ConnectionClosed):
                        await ws.recv()
                    assert ws.close_code == 1008

            # A frame over the size cap closes only that connection (1009: message too big).
            async with websockets.connect(server.ws + "?token=" + TOKEN, max_size=None) as ws:
                await ws.send("x" * (MAX_MESSAGE_BYTES + 1))
                with pytest.raises(websockets.ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 60)
                assert ws.close_code == 1009

            # The bystander never noticed.
            count = bystander.frame_count
            await bystander.wait_frames(count + 16)
            assert not bystander.errors
            assert server.metric("sessions") == 1

    run(scenario())


def test_more_sessions_than_allowed_get_server_full(server):
    async def scenario():
        async with SanaClient(server.ws, prompt=PROMPT, token=TOKEN) as first, \
                SanaClient(server.ws, prompt=OTHER_PROMPT, token=TOKEN) as second:
            with pytest.raises(ServerError, match="server full"):
                async with SanaClient(server.ws, prompt=PROMPT, token=TOKEN):
                    pass
            assert server.metric('rejected_total{reason="full"}') >= 1
            # Both sessions run side by side on the one model.
            await first.wait_frames(8, timeout=300)
            await second.wait_frames(8, timeout=300)
            assert server.metric("sessions") == 2
        await wait_for_metric(server, "sessions", 0)

    run(scenario())


def test_graceful_shutdown_closes_sessions():
    srv = ServerProcess("--max-sessions", "1", "--no-world")

    async def scenario():
        with pytest.raises(ServerError, match="world mode is not available"):
            async with SanaClient(srv.ws, mode="world"):
                pass
        assert srv.get("/ws/world")[0] == 404
        client = SanaClient(srv.ws, prompt=PROMPT)
        await client.connect()
        await client.wait_frames(4)
        code = await asyncio.get_running_loop().run_in_executor(None, srv.stop)
        await asyncio.sleep(0.5)
        closed = client._ws.close_code
        await client.close()
        return code, closed

    code, closed = run(scenario())
    assert code == 0
    assert closed == 1001  # going away


def test_scheduler_batches_waiting_sessions_and_keeps_each_stream_its_own(tmp_path):
    # Sessions' worker threads ask for chunks at once: the scheduler runs whatever is waiting in one batch, and
    # every stream still gets the frames it gets alone.
    import sana_stream as ss
    from sana_stream.server.scheduler import ChunkScheduler
    from tests.tiny_pipelines import save, video_pipeline

    pipe = ss.load_pipeline(save(video_pipeline(), tmp_path / "video"))
    make = lambda: [pipe.stream(p, seed=i, height=32, width=32, chunk_frames=2)  # noqa: E731
                    for i, p in enumerate(["a red ball", "blue sea", "fire", "a wall"])]
    alone, shared = make(), make()
    want = [[s.next_chunk() for _ in range(3)] for s in alone]
    scheduler, got = ChunkScheduler(), [[] for _ in shared]
    start = threading.Barrier(len(shared))

    def session(i: int) -> None:
        start.wait()
        for _ in range(3):
            got[i].append(scheduler.next_chunk(shared[i]))

    threads = [threading.Thread(target=session, args=(i,)) for i in range(len(shared))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert scheduler.batched_chunks == 12 and scheduler.batches < 12  # some chunks shared a pass
    for w, g in zip(want, got):
        for a, b in zip(w, g):
            assert np.abs(np.stack(a).astype(int) - np.stack(b).astype(int)).max() <= 1

    class Broken:  # not an engine stream: runs alone under the lock, and its failure stays its own
        def next_chunk(self):
            raise RuntimeError("broken source")

    with pytest.raises(RuntimeError, match="broken source"):
        scheduler.next_chunk(Broken())
    assert len(scheduler.next_chunk(shared[0])) == 8
