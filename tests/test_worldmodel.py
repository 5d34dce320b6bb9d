"""The world-model SDK on a tiny random world model: reset/step, determinism, batched worlds, snapshot/restore,
bad input (rejected without changing the world) and the gymnasium wrapper."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from sana_stream.pipeline.pipeline import can_compile
from worldmodel import Observation, WorldEnv, WorldModel
from worldmodel.actions import ACTION_DIM, KEYS
from worldmodel.env import key_combos
from worldmodel.sim import Simulator

SIZE = 32
PROMPT = "a small room"


def tiny_world(folder: Path, copy_gate: bool = False, **world: object) -> Path:
    """A world folder of tiny random components in the real formats: a pipeline folder (per-frame DC-AE, tiny
    Gemma-2, a video transformer that takes actions, with a copy gate if asked) plus world.json (`world` overrides
    its fields)."""
    from diffusers import AutoencoderDC

    from sana_stream.model import SanaTransformer, TransformerConfig
    from tests.tiny_pipelines import TINY_DCAE
    from tests.tiny_text import HIDDEN_SIZE, save_tiny_text_pipeline
    from tests.tiny_transformers import TINY_VIDEO, _perturb

    folder.mkdir(parents=True)
    torch.manual_seed(0)
    config = TransformerConfig(**{**TINY_VIDEO, "in_channels": 8, "out_channels": 8,
                                  "caption_channels": HIDDEN_SIZE, "action_dim": ACTION_DIM, "copy_gate": copy_gate})
    # Perturbed: zero-initialised parts (temporal conv, action input) must matter in these tests.
    _perturb(SanaTransformer(config), seed=1).save_pretrained(folder / "transformer")
    torch.manual_seed(2)
    AutoencoderDC(**TINY_DCAE).save_pretrained(folder / "vae")
    save_tiny_text_pipeline(folder)
    (folder / "scheduler").mkdir()
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(
        {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 1.0}))
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "SanaVideoPipeline", "transformer": ["diffusers", "SanaVideoTransformer3DModel"],
        "vae": ["diffusers", "AutoencoderDC"], "text_encoder": ["transformers", "Gemma2Model"],
        "tokenizer": ["transformers", "GemmaTokenizer"],
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"]}))
    (folder / "sana_stream.json").write_text(json.dumps({"causal": True, "generate": {
        "instruction": "", "negative_prompt": "", "motion_score": None, "text_length": 16,
        "height": SIZE, "width": SIZE}}))
    spec = {"action_dim": ACTION_DIM, "keys": list(KEYS), "frame_size": [SIZE, SIZE], "fps": 16,
            "frames_per_step": 1, "timesteps": [1000.0, 750.0, 500.0], "window": 3, "prompt": PROMPT,
            "context_frames": 2, **world}
    (folder / "world.json").write_text(json.dumps(spec))
    return folder


def start_image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


def rollout(wm: WorldModel, actions: list, seed: int = 0, image: np.ndarray | None = None) -> np.ndarray:
    wm.reset(seed=seed, image=start_image() if image is None else image)
    return np.stack([wm.step(a).frames for a in actions])


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tiny_world(tmp_path_factory.mktemp("world") / "tiny")


@pytest.fixture(scope="module")
def gated_folder(tmp_path_factory) -> Path:
    return tiny_world(tmp_path_factory.mktemp("world") / "gated", copy_gate=True)


@pytest.fixture(scope="module")
def wm(folder) -> WorldModel:
    # fp32 keeps batched and single rows bit-identical; bf16 (the default) is exercised in test_bf16_default.
    return WorldModel.from_pretrained(folder, dtype=torch.float32)


def test_reset_and_step_give_frames_and_info(wm):
    obs = wm.reset(seed=0, image=start_image())
    assert isinstance(obs, Observation)
    assert obs.frames.shape == (1, SIZE, SIZE, 3) and obs.frames.dtype == np.uint8
    assert obs.info["frame_index"] == 0 and obs.info["step"] == 0 and obs.info["seed"] == 0
    for step in (1, 2):
        obs = wm.step("w+a")
        assert obs.frames.shape == (1, SIZE, SIZE, 3) and obs.frames.dtype == np.uint8
        assert obs.info["frame_index"] == step and obs.info["step"] == step
        assert set(obs.info["timings_ms"]) == {"generate", "decode", "total"}
    assert np.array_equal(wm.frame, obs.frame)
    # code written for batches may pass one world's action in a sequence of one
    snap = wm.snapshot()
    expected = wm.step("w").frames
    wm.restore(snap)
    assert np.array_equal(wm.step(["w"]).frames, expected)


def test_same_seed_and_actions_same_frames_and_every_input_matters(wm):
    actions = ["w", "a+w", "none", [0.1, 0, 0, 0, 0.05, 0], "l"]
    first = rollout(wm, actions)
    assert np.array_equal(first, rollout(wm, actions))
    assert not np.array_equal(first, rollout(wm, actions, seed=1))
    assert not np.array_equal(first, rollout(wm, ["s", *actions[1:]]))
    assert not np.array_equal(first, rollout(wm, actions, image=start_image(1)))
    # the prompt conditions the world too
    wm.reset(seed=0, image=start_image(), prompt="a long corridor")
    assert not np.array_equal(first[0], wm.step(actions[0]).frames)


@pytest.mark.parametrize("guidance, timesteps, gated", [(1.0, None, False), (2.5, None, False),
                                                       (2.5, [1000.0], False), (1.0, None, True), (2.5, None, True)])
def test_steps_equal_appending_each_frame_before_denoising_the_next(request, guidance, timesteps, gated):
    # step() folds each frame's t = 0 append into the next step's first pass, and runs an action-guided pass's
    # two predictions in one batch. The frames must be those of the plain order, written out here from the public
    # pieces: append the start frames, then per action denoise a frame against the history (guided: v_none +
    # g·(v_action − v_none), both on that history) and append it with its own action; past the window too. A
    # one-pass schedule (from_pretrained(timesteps=)) has only the pass that also appends the previous frame. A
    # model with a copy gate gets the newest frame (the start frame, then each step's) as `previous`.
    from sana_stream.pipeline.pipeline import to_uint8, to_unit
    from sana_stream.sampling import make_sampler
    from worldmodel.actions import encode_action

    folder = request.getfixturevalue("gated_folder" if gated else "folder")
    wm = WorldModel.from_pretrained(folder, dtype=torch.float32)
    stepped = wm if guidance == 1 else WorldModel.from_pretrained(folder, dtype=torch.float32,
                                                                   action_guidance=guidance, timesteps=timesteps)
    assert stepped.config.timesteps == tuple(timesteps or wm.config.timesteps)
    actions = ["w", "a", "i+l", "none", "s", "d", "w"]
    got = rollout(stepped, actions, seed=3)[:, 0]
    pipe, model, cfg = wm.pipeline, wm.pipeline.transformer, stepped.config
    emb, mask = pipe.encode_prompt(PROMPT)
    gen = torch.Generator().manual_seed(3)
    sampler = make_sampler("longsana", timesteps=cfg.timesteps)
    state = model.new_state(1, window=cfg.window)
    with torch.no_grad():
        start = wm._encode_images(start_image()).repeat(1, 1, cfg.context_frames, 1, 1)
        model.append_state(state, start, emb, mask, action=torch.zeros(1, cfg.context_frames, ACTION_DIM))
        previous = start[:, :, -1:] if gated else None
        want = []
        for a in actions:
            action = torch.from_numpy(encode_action(a))[None, None]
            x = torch.randn((1, model.config.in_channels, 1, *start.shape[-2:]), generator=gen)
            for i, t in enumerate(sampler.timesteps):
                v = model(x, t[None], emb, mask, state=state, action=action, previous=previous)
                if guidance != 1:
                    none = model(x, t[None], emb, mask, state=state, action=torch.zeros_like(action),
                                 previous=previous)
                    v = none + guidance * (v - none)
                x = sampler.step(v, i, x, generator=gen)
            model.append_state(state, x, emb, mask, action=action)
            previous = x if gated else None
            pixels = pipe.vae.decode(pipe.vae.denormalize_latents(x))[:, :, 0]
            want.append(to_uint8(to_unit(pixels).permute(0, 2, 3, 1))[0])
    assert np.abs(got.astype(int) - np.stack(want).astype(int)).max() <= 1  # fp32 rounding only
    if guidance != 1 and timesteps is None:
        assert not np.array_equal(got, rollout(wm, actions, seed=3)[:, 0])  # guidance changes the frames
    if gated:  # the gate matters: closed, the same weights make other frames
        gate = stepped.pipeline.transformer.copy_gate
        trained = {k: v.clone() for k, v in gate.state_dict().items()}
        with torch.no_grad():
            gate.weight.zero_()
            gate.bias.zero_()
        try:
            assert not np.array_equal(got, rollout(stepped, actions, seed=3)[:, 0])
        finally:
            gate.load_state_dict(trained)


@pytest.mark.skipif(not can_compile(),
                    reason="torch.compile's CPU backend needs a C++ compiler")
def test_compiled_world_model_steps_like_the_eager_one(folder, wm):
    # compile=True compiles the transformer blocks and the decoder: the same frames (fp32: rounding only), for
    # every shape a rollout passes through (reset, the first step, the fused append and past the window).
    compiled = WorldModel.from_pretrained(folder, dtype=torch.float32, compile=True)
    actions = ["w", "a", "i+l", "none", "s"]
    got, want = rollout(compiled, actions, seed=5), rollout(wm, actions, seed=5)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    assert compiled.pipeline.transformer.transformer_blocks[0]._compiled_call_impl is not None


def test_reset_without_image_imagines_a_start(wm):
    a = wm.reset(seed=4).frames
    b = wm.reset(seed=4).frames
    assert a.shape == (1, SIZE, SIZE, 3) and np.array_equal(a, b)
    assert not np.array_equal(a, wm.reset(seed=5).frames)


@pytest.mark.parametrize("gated", [False, True])
def test_snapshot_restore_rewinds_exactly_and_stays_small(request, gated):
    # a copy gate's newest frame is part of the snapshot
    wm = WorldModel.from_pretrained(request.getfixturevalue("gated_folder" if gated else "folder"),
                                    dtype=torch.float32)
    wm.reset(seed=2, image=start_image())
    for a in ("w", "d"):
        wm.step(a)
    snap, now = wm.snapshot(), wm.frame
    future = ["w", "i", "j+w", "none"]
    first = [wm.step(a).frames for a in future]
    for _ in range(2):  # a snapshot can be restored any number of times
        wm.restore(snap)
        assert snap.frame_index == 2 and np.array_equal(wm.frame, now)
        again = [wm.step(a).frames for a in future]
        assert all(np.array_equal(x, y) for x, y in zip(first, again))
    # a fork: another future from the same point differs
    wm.restore(snap)
    assert not np.array_equal(wm.step("s").frames, first[0])
    # constant size: the state does not grow with the steps taken
    for _ in range(6):
        wm.step("w")
    assert wm.snapshot().nbytes == snap.nbytes > 0


def test_snapshot_from_another_model_or_batch_size_is_refused(wm, folder):
    wm.reset(seed=0, image=start_image())
    snap = wm.snapshot()
    other = WorldModel.from_pretrained(folder, dtype=torch.float32)
    other.reset(seed=0)
    with pytest.raises(ValueError, match="another world model"):
        other.restore(snap)
    pair = wm.sibling(batch_size=2)
    pair.reset(seed=0)
    with pytest.raises(ValueError, match="holds 1 world"):
        pair.restore(snap)
    with pytest.raises(ValueError, match="Snapshot"):
        wm.restore("not a snapshot")
    twin = wm.sibling()  # same weights, same batch size: snapshots move between them
    twin.restore(snap)
    assert np.array_equal(twin.step("w").frames, wm.step("w").frames)


def test_batched_worlds_step_together_and_independently(wm):
    trio = wm.sibling(batch_size=3)
    images = [start_image(i) for i in range(3)]
    obs = trio.reset(seed=0, image=images)
    assert obs.frames.shape == (3, 1, SIZE, SIZE, 3)
    a = trio.step(["w", "a", "none"])
    assert a.frames.shape == (3, 1, SIZE, SIZE, 3) and a.frame.shape == (3, SIZE, SIZE, 3)
    trio.reset(seed=0, image=images)
    b = trio.step(["w", "a", "s"])
    # worlds do not see each other: changing world 2's action leaves worlds 0 and 1 as they were
    assert np.array_equal(a.frames[:2], b.frames[:2]) and not np.array_equal(a.frames[2], b.frames[2])
    # each world can have its own prompt
    trio.reset(seed=0, image=images, prompt=[PROMPT, PROMPT, "a long corridor"])
    c = trio.step(["w", "a", "none"])
    assert np.array_equal(a.frames[:2], c.frames[:2]) and not np.array_equal(a.frames[2], c.frames[2])
    with pytest.raises(ValueError, match="2 prompts for 3"):
        trio.reset(seed=0, prompt=[PROMPT, PROMPT])
    # one start image serves every world; an array of shape (B, H, W, 3) gives one each
    assert trio.reset(seed=0, image=images[0]).frames.shape == (3, 1, SIZE, SIZE, 3)
    assert trio.reset(seed=0, image=np.stack(images)).frames.shape == (3, 1, SIZE, SIZE, 3)


@pytest.mark.parametrize("action, problem", [
    ("w+q", "q"),
    ([float("nan"), 0, 0, 0, 0, 0], "NaN"),
    ([1e6, 0, 0, 0, 0, 0], "range"),
    (np.eye(3), "shape"),
    (3, "action"),
])
def test_bad_actions_are_rejected_and_change_nothing(wm, action, problem):
    wm.reset(seed=3, image=start_image())
    wm.step("w")
    snap = wm.snapshot()
    expected = wm.step("a").frames
    wm.restore(snap)
    with pytest.raises(ValueError, match=problem):
        wm.step(action)
    assert np.array_equal(wm.step("a").frames, expected)


def test_poses_track_the_commanded_camera_and_targets_are_relative_to_it(wm):
    from worldmodel.actions import MOVE_STEP, Pose

    start = Pose((2.0, -0.5, 3.0), yaw=0.3).matrix()
    wm.reset(seed=0, image=start_image(), pose=start)
    assert np.allclose(wm.pose, start)
    wm.step("w")
    moved = Pose.from_matrix(start).moved(np.array([MOVE_STEP, 0, 0, 0, 0, 0])).matrix()
    assert np.allclose(wm.pose, moved)
    target = Pose.from_matrix(moved).moved(np.array([0.1, 0.0, 0.0, 0.2, 0.0, 0.0])).matrix()
    wm.step(target)  # a 4×4 action is the pose to move to
    assert np.allclose(wm.pose, target)
    snap = wm.snapshot()
    with pytest.raises(ValueError, match="out of range"):
        wm.step(Pose((50.0, 0.0, 0.0)).matrix())  # far away: refused, not teleported
    assert np.allclose(wm.pose, target) and wm.snapshot().frame_index == snap.frame_index
    with pytest.raises(ValueError, match="pose"):
        wm.reset(seed=0, pose=np.eye(3))
    pair = wm.sibling(batch_size=2)
    pair.reset(seed=0, pose=np.stack([start, np.eye(4)]))
    assert pair.pose.shape == (2, 4, 4) and np.allclose(pair.pose[1], np.eye(4))


def test_bad_batches_and_resets_are_rejected_and_change_nothing(wm):
    pair = wm.sibling(batch_size=2)
    pair.reset(seed=0, image=start_image())
    snap = pair.snapshot()
    expected = pair.step(["w", "s"]).frames
    pair.restore(snap)
    with pytest.raises(ValueError, match="2 worlds: got 3"):
        pair.step(["w", "s", "a"])
    with pytest.raises(ValueError, match="sequence of 2"):
        pair.step("w")
    with pytest.raises(ValueError, match="sequence of 2"):
        pair.step(np.array(1.0))
    with pytest.raises(ValueError, match="action 1: .*z"):
        pair.step(["w", "z"])
    with pytest.raises(ValueError, match="3 start images for 2"):
        pair.reset(seed=1, image=[start_image()] * 3)
    with pytest.raises(ValueError, match="seed"):
        pair.reset(seed=-1)
    with pytest.raises(ValueError, match="start image"):
        pair.reset(seed=1, image=np.zeros((SIZE, SIZE, 3), np.float32))
    with pytest.raises(ValueError, match="prompt"):
        pair.reset(seed=1, prompt=7)
    assert np.array_equal(pair.step(["w", "s"]).frames, expected)


def test_step_before_reset_is_an_error(folder, wm):
    fresh = wm.sibling()
    with pytest.raises(ValueError, match="reset"):
        fresh.step("w")
    with pytest.raises(ValueError, match="reset"):
        fresh.snapshot()


def test_world_folder_problems_are_named(folder, gated_folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="world.json"):
        WorldModel.from_pretrained(tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    for item in folder.iterdir():
        (bad / item.name).symlink_to(item)
    (bad / "world.json").unlink()
    spec = json.loads((folder / "world.json").read_text())
    (bad / "world.json").write_text(json.dumps({k: v for k, v in spec.items() if k != "fps"}))
    with pytest.raises(ValueError, match="fps"):
        WorldModel.from_pretrained(bad)
    (bad / "world.json").write_text(json.dumps({**spec, "action_dim": 6}))
    with pytest.raises(ValueError, match="action_dim"):
        WorldModel.from_pretrained(bad)
    (bad / "world.json").write_text(json.dumps({**spec, "frame_size": [SIZE + 4, SIZE]}))
    with pytest.raises(ValueError, match="frame_size"):
        WorldModel.from_pretrained(bad)
    (bad / "world.json").write_text(json.dumps({**spec, "action_guidance": float("nan")}))
    with pytest.raises(ValueError, match="action_guidance"):
        WorldModel.from_pretrained(bad)
    with pytest.raises(ValueError, match="action_guidance"):
        WorldModel.from_pretrained(folder, action_guidance=-1)
    (bad / "world.json").write_text(json.dumps({**spec, "timesteps": [500.0, 1000.0]}))
    with pytest.raises(ValueError, match="strictly decreasing"):
        WorldModel.from_pretrained(bad)
    for timesteps in ([], [1000.0, "500"], [1500.0]):
        with pytest.raises(ValueError, match="timesteps"):
            WorldModel.from_pretrained(folder, timesteps=timesteps)
    gated = tmp_path / "gated"
    gated.mkdir()
    for item in gated_folder.iterdir():
        (gated / item.name).symlink_to(item)
    (gated / "world.json").unlink()
    (gated / "world.json").write_text(json.dumps({**spec, "frames_per_step": 2}))
    with pytest.raises(ValueError, match="copy gate copies the frame before each new one"):
        WorldModel.from_pretrained(gated)


def test_bf16_default_steps(folder):
    wm = WorldModel.from_pretrained(folder)
    assert wm.pipeline.transformer.dtype == torch.bfloat16
    wm.reset(seed=0, image=start_image())
    assert wm.step("w").frames.shape == (1, SIZE, SIZE, 3)


# ----- gymnasium -------------------------------------------------------------------------------------------------


def test_key_combos_pair_keys_of_different_axes():
    combos = key_combos(KEYS)
    assert combos[:9] == ["none", *KEYS]
    assert "w+a" in combos and "w+s" not in combos and "a+d" not in combos
    assert len(combos) == len(set(combos)) == 1 + 8 + 24


@pytest.mark.parametrize("actions", ["keys", "deltas"])
def test_env_passes_gymnasiums_checker(wm, actions):
    from gymnasium.utils.env_checker import check_env

    env = WorldEnv(wm.sibling(), actions=actions)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the checker reports most problems as warnings
        warnings.filterwarnings("ignore", message=".*environment not having a spec.*")
        check_env(env)
    assert env.metadata["render_fps"] == 16 and env.render_mode == "rgb_array"


def test_env_steps_the_world_and_truncates(wm):
    env = WorldEnv(wm.sibling(), max_episode_steps=2)
    obs, info = env.reset(seed=0, options={"image": start_image(), "prompt": PROMPT})
    assert obs.shape == (SIZE, SIZE, 3) and info["frame_index"] == 0
    direct = wm.sibling()
    direct.reset(seed=info["seed"], image=start_image())
    w = env.action_names.index("w")
    obs, reward, terminated, truncated, info = env.step(w)
    assert np.array_equal(obs, direct.step("w").frame) and np.array_equal(env.render(), obs)
    assert (reward, terminated, truncated, info["step"]) == (0.0, False, False, 1)
    with pytest.raises(ValueError, match="action space"):
        env.step(len(env.action_names))
    *_, truncated, _ = env.step(w)
    assert truncated
    with pytest.raises(ValueError, match="reset option"):
        env.reset(options={"colour": "red"})
    with pytest.raises(ValueError, match="one world"):
        WorldEnv(wm.sibling(batch_size=2))
    deltas = WorldEnv(wm.sibling(), actions="deltas")
    deltas.reset(seed=0)
    for bad in ("w", [0.1, 0.0], [9.0, 0, 0, 0, 0, 0]):
        with pytest.raises(ValueError, match="action space"):
            deltas.step(bad)
    assert deltas.step([0.1, 0, 0, 0, 0, 0])[0].shape == (SIZE, SIZE, 3)


def test_shipped_world_model_turns_and_looks_the_way_it_is_told():
    """The shipped model, from true start frames of 16 held-out worlds, one step of each of two opposite actions:
    each prediction must be nearer the simulator's frame for its own action than for the opposite one. Before
    the action stage (worldmodel/train.py, stage 5) this was a coin toss (17/32 for yaw); it now gets yaw and
    pitch right every time (strafe and forward/back, 27 and 21 of 32 with the shipped action guidance, 23 and 19
    without, are not asserted)."""
    wm = WorldModel.from_pretrained(batch_size=16)
    sims = [Simulator(seed) for seed in range(2_000_000, 2_000_016)]
    starts = np.stack([sim.reset() for sim in sims])
    for pair in (("a", "d"), ("i", "k")):
        truth, predicted = {}, {}
        for action in pair:
            truth[action] = np.stack([(sim.reset(), sim.step(action))[1] for sim in sims]).astype(float)
            wm.reset(seed=0, image=starts)
            predicted[action] = wm.step([action] * 16).frames[:, 0].astype(float)
        right = sum(int(np.abs(predicted[a][i] - truth[a][i]).mean() < np.abs(predicted[a][i] - truth[b][i]).mean())
                    for a, b in (pair, pair[::-1]) for i in range(16))
        assert right >= 30, f"{pair}: {right} of 32 predictions nearer their own action's frame"
