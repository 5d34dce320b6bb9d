"""The remote world-model protocol: the msgpack codec, request validation, the per-connection WorldSession
(errors come back, never raise), and RemoteWorldModel against a standalone /ws/world server."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from worldmodel import RemoteWorldModel, WorldEnv, WorldModel
from worldmodel.protocol import ProtocolError, WorldSession, pack, parse_request, serve_world, unpack
from tests.test_worldmodel import SIZE, start_image, tiny_world


@pytest.fixture(scope="module")
def wm(tmp_path_factory) -> WorldModel:
    return WorldModel.from_pretrained(tiny_world(tmp_path_factory.mktemp("world") / "tiny"), dtype=torch.float32)


@pytest.fixture(scope="module")
def server(wm):
    with serve_world(wm.sibling, max_batch_size=4, max_snapshots=3) as running:
        yield running


# ----- codec -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["uint8", "int32", "int64", "float32", "float64", "bool"])
def test_arrays_round_trip_in_any_byte_order(dtype):
    array = (np.arange(24) % 7).astype(dtype).reshape(2, 3, 4)
    for sent in (array, array.astype(array.dtype.newbyteorder(">")), array[:, ::2]):
        back = unpack(pack({"frames": sent, "info": {"n": [1, 2.5, "x"]}}))
        assert back["info"] == {"n": [1, 2.5, "x"]}
        assert back["frames"].dtype == np.dtype(dtype) and np.array_equal(back["frames"], sent)
        back["frames"][...] = 0  # decoded arrays are the receiver's own


def test_bad_frames_are_protocol_errors():
    with pytest.raises(ProtocolError, match="msgpack"):
        unpack(b"\xc1 not msgpack")
    with pytest.raises(ProtocolError, match="do not match"):
        unpack(pack({"shape": [2, 2], "dtype": "uint8", "bytes": b"abc"}))
    with pytest.raises(ProtocolError, match="dtype"):
        unpack(pack({"shape": [1], "dtype": "object", "bytes": b"a"}))
    with pytest.raises(ProtocolError, match="shape"):
        unpack(pack({"shape": [-1], "dtype": "uint8", "bytes": b""}))
    with pytest.raises(ProtocolError, match="float16"):
        pack(np.zeros(2, np.float16))
    with pytest.raises(ProtocolError, match="binary"):
        unpack("text")
    with pytest.raises(ProtocolError, match="max_array_len"):  # containers are capped before they unfold
        unpack(pack([0] * 5000))


@pytest.mark.parametrize("request_, problem", [
    ([1, 2], "must be a map"),
    ({"method": "fly"}, "unknown method 'fly'"),
    ({"method": "step"}, "missing argument.*action"),
    ({"method": "step", "args": {"action": "w", "speed": 2}}, "unknown argument.*speed"),
    ({"method": "reset", "args": {"seed": "12"}}, "seed must be an int"),
    ({"method": "reset", "args": {"image": np.zeros((4, 4), np.uint8)}}, "image must be a uint8 array"),
    ({"method": "reset", "args": {"prompt": "x" * 5000}}, "prompt"),
    ({"method": "reset", "args": {"prompt": ["a", 3]}}, "prompt"),
    ({"method": "reset", "args": {"pose": "up"}}, "pose must be numbers"),
    ({"method": "step", "args": {"action": {"w": 1}}}, "key string"),
    ({"method": "step", "args": {"action": "w" * 100}}, "64 characters"),
    ({"method": "restore", "args": {"handle": 1.5}}, "handle must be an int"),
    ({"method": "open", "id": [1]}, "id must be"),
    ({"method": "open", "extra": 1}, "unknown request field"),
])
def test_requests_are_validated(request_, problem):
    with pytest.raises(ProtocolError, match=problem):
        parse_request(request_)


# ----- the session ------------------------------------------------------------------------------------------------


def test_session_answers_every_request_and_errors_never_raise(wm):
    session = WorldSession(wm.sibling, max_batch_size=2, max_snapshots=1)
    assert "call open first" in session.handle({"id": 1, "method": "step", "args": {"action": "w"}})["error"]
    assert "batch_size must be in [1, 2]" in session.handle({"method": "open", "args": {"batch_size": 5}})["error"]
    info = session.handle({"id": 2, "method": "open"})
    assert info["id"] == 2 and info["result"]["frame_size"] == [SIZE, SIZE] and info["result"]["batch_size"] == 1
    assert "already open" in session.handle({"method": "open"})["error"]

    obs = session.handle({"id": 3, "method": "reset", "args": {"seed": 0, "image": start_image()}})["result"]
    assert obs["frames"].shape == (1, SIZE, SIZE, 3) and obs["info"]["frame_index"] == 0
    snap = session.handle({"method": "snapshot"})["result"]
    assert snap["frame_index"] == 0
    assert "at most 1 snapshots" in session.handle({"method": "snapshot"})["error"]
    first = session.handle({"method": "step", "args": {"action": "w"}})["result"]["frames"]

    bad = session.handle({"id": 4, "method": "step", "args": {"action": "w+q"}})
    assert bad["id"] == 4 and "q" in bad["error"]
    assert "unknown snapshot handle 99" in session.handle({"method": "restore", "args": {"handle": 99}})["error"]
    assert session.handle({"method": "restore", "args": {"handle": snap["handle"]}})["result"] == {}
    assert np.array_equal(session.handle({"method": "step", "args": {"action": "w"}})["result"]["frames"], first)
    assert session.handle({"method": "release", "args": {"handle": snap["handle"]}})["result"] == {}
    assert "unknown snapshot" in session.handle({"method": "restore", "args": {"handle": snap["handle"]}})["error"]

    # frames in, frames out: undecodable bytes are answered too
    assert "msgpack" in unpack(session.handle_message(b"\xc1"))["error"]
    reply = unpack(session.handle_message(pack({"id": "s", "method": "step", "args": {"action": "none"}})))
    assert reply["id"] == "s" and reply["result"]["frames"].dtype == np.uint8


def test_session_reports_internal_failures_as_errors():
    def broken(batch_size: int):
        raise RuntimeError("no model here")

    reply = WorldSession(broken).handle({"id": 1, "method": "open"})
    assert reply == {"id": 1, "error": "internal error (RuntimeError): no model here"}


# ----- over a socket ---------------------------------------------------------------------------------------------


def test_remote_world_matches_the_local_one(wm, server):
    from worldmodel.actions import Pose

    local = wm.sibling()
    start = Pose((1.0, -0.5, 2.0), yaw=0.5)
    target = start.moved(np.array([0.2, 0, 0, 0.1, 0, 0])).matrix()  # a nearby pose to move to (a 4×4 action)
    actions = [np.array([0.1, 0, 0, 0.1, 0, 0], np.float32), [0.1, 0, 0, 0, 0, 0], "w", target.tolist(), "a+w"]
    with RemoteWorldModel(server.url) as remote:
        assert remote.frame_size == (SIZE, SIZE) and remote.batch_size == 1 and remote.fps == 16
        got = remote.reset(seed=5, image=start_image(), pose=start.matrix())
        want = local.reset(seed=5, image=start_image(), pose=start.matrix())
        assert np.array_equal(got.frames, want.frames) and got.info["seed"] == 5
        for a in actions:
            got, want = remote.step(a), local.step(a)
            assert np.array_equal(got.frames, want.frames)
            assert got.info["frame_index"] == want.info["frame_index"] and got.info["round_trip_ms"] > 0


def test_remote_snapshots_bad_input_and_batches(wm, server, tmp_path):
    with RemoteWorldModel(server.url, batch_size=2) as remote, RemoteWorldModel(server.url) as other:
        from PIL import Image

        path = tmp_path / "start.png"
        Image.fromarray(start_image()).save(path)
        assert remote.reset(seed=1, image=[path, start_image(1)]).frames.shape == (2, 1, SIZE, SIZE, 3)
        snap = remote.snapshot()
        first = remote.step(["w", "s"]).frames
        with pytest.raises(ValueError, match="action 1"):
            remote.step(["w", "w+q"])
        with pytest.raises(ValueError, match="2 worlds"):
            remote.step("w")
        remote.restore(snap)
        assert np.array_equal(remote.step(["w", "s"]).frames, first)
        other.reset(seed=1)
        with pytest.raises(ValueError, match="another connection"):
            other.restore(snap)
        remote.release(snap)
        with pytest.raises(ValueError, match="unknown snapshot"):
            remote.restore(snap)
    with pytest.raises(ValueError, match="batch_size must be in"):
        RemoteWorldModel(server.url, batch_size=9)


def test_only_the_world_route_is_served(server):
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus):
        RemoteWorldModel(server.url.replace("/ws/world", "/elsewhere"))


def test_env_over_a_remote_world(server):
    from gymnasium.utils.env_checker import check_env

    env = WorldEnv(RemoteWorldModel(server.url))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*environment not having a spec.*")
        check_env(env)
    obs, _ = env.reset(seed=0, options={"image": start_image()})
    assert obs.shape == (SIZE, SIZE, 3)
    env.close()
