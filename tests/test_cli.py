"""`sana-stream generate` end to end on tiny saved pipelines, its one-line errors, and the media writers."""

from __future__ import annotations

import shutil
import subprocess

import av
import numpy as np
import pytest
from PIL import Image

from sana_stream import media
from sana_stream.cli import main
from sana_stream.media import VideoWriter, write_mp4, write_png
from tests.tiny_pipelines import image_pipeline, save, video_pipeline

FAST = ["--steps", "2", "--dtype", "fp32", "--seed", "0"]


@pytest.fixture(scope="module")
def image_model(tmp_path_factory):
    return save(image_pipeline("image"), tmp_path_factory.mktemp("cli") / "sana")


@pytest.fixture(scope="module")
def video_model(tmp_path_factory):
    return save(video_pipeline(), tmp_path_factory.mktemp("cli") / "video")


def decode(path) -> tuple[int, int, np.ndarray]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
        return stream.width, stream.height, frames


def one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("sana-stream: error: ")
    return lines[0]


# ----- generate ---------------------------------------------------------------------------------------------


def test_png_from_image_model(image_model, tmp_path, capsys):
    out = tmp_path / "fox.png"
    assert main(["generate", "--model", str(image_model), "--prompt", "a red fox", "--height", "32",
                 "--width", "64", "-o", str(out), *FAST]) == 0
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size == (64, 32) and img.mode == "RGB"
    assert "wrote" in capsys.readouterr().out


def test_mp4_from_video_model(video_model, tmp_path):
    out = tmp_path / "boat.mp4"
    assert main(["generate", "--model", str(video_model), "--prompt", "a boat", "--negative-prompt", "jitter",
                 "--height", "32", "--width", "48", "--frames", "5", "--motion-score", "4", "--fps", "8",
                 "-o", str(out), *FAST]) == 0
    width, height, frames = decode(out)
    assert (width, height, len(frames)) == (48, 32, 5)


def test_image_to_video_and_png_from_video_model(video_model, tmp_path):
    first = tmp_path / "first.png"
    write_png(first, np.full((40, 40, 3), 200, np.uint8))  # resized to the video size by the pipeline
    out = tmp_path / "i2v.mp4"
    assert main(["generate", "--model", str(video_model), "--prompt", "", "--image", str(first), "--height", "32",
                 "--width", "32", "--frames", "5", "-o", str(out), *FAST]) == 0
    assert len(decode(out)[2]) == 5
    still = tmp_path / "still.png"  # a .png from a video model is its one-frame video
    assert main(["generate", "--model", str(video_model), "--prompt", "a boat", "--height", "32", "--width", "32",
                 "-o", str(still), *FAST]) == 0
    with Image.open(still) as img:
        assert img.size == (32, 32)


def test_console_script(image_model, tmp_path):
    out = tmp_path / "cat.png"
    result = subprocess.run([shutil.which("sana-stream"), "generate", "--model", str(image_model), "--prompt",
                             "a cat", "-o", str(out), "--steps", "2", "--seed", "0"],  # default dtype: bf16
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert out.is_file() and "seed 0" in result.stdout


def test_help_describes_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--model", "--prompt", "--output", "--negative-prompt", "--height", "--width", "--frames",
                   "--steps", "--guidance", "--seed", "--image", "--motion-score", "--fps", "--dtype", "--device",
                   "examples:"):
        assert option in text


def test_every_command_has_help(capsys):
    # argparse %-formats help texts: a literal "%" (the continuation cycles' own-chunk share) must not break one.
    for command in ("generate", "render", "demo", "serve", "train-demo", "train-world"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0, command
    assert "50% of its rows" in " ".join(capsys.readouterr().out.split())


def test_train_world_passes_its_step_counts(monkeypatch, tmp_path):
    import worldmodel.train

    seen = {}

    def train_world(cfg):
        seen["cfg"] = cfg
        return tmp_path

    monkeypatch.setattr(worldmodel.train, "train_world", train_world)
    assert main(["train-world", "--work", str(tmp_path), "--dit-steps", "7", "--action-steps", "9"]) == 0
    cfg = seen["cfg"]
    assert (cfg.work, cfg.dit_steps, cfg.action_steps, cfg.ae_steps) == (str(tmp_path), 7, 9, 900)


# ----- bad input: one line, exit code 2 -----------------------------------------------------------------------


def model_without_vae(image_model, tmp_path):
    broken = shutil.copytree(image_model, tmp_path / "broken")
    shutil.rmtree(broken / "vae")
    return broken


def garbage_image(tmp_path):
    path = tmp_path / "garbage.png"
    path.write_bytes(b"this is not a picture")
    return path


def huge_image(tmp_path):
    path = tmp_path / "huge.png"
    Image.new("1", (5000, 4000)).save(path)  # 20 megapixels, a few kB on disk: refused before decoding
    return path


@pytest.mark.parametrize("case, expected", [
    ("missing component", "missing component(s): vae"),
    ("missing model", "nowhere"),
    ("height not divisible", "multiple of 8"),
    ("zero steps", "--steps"),
    ("missing output folder", "output folder does not exist"),
    ("unsupported suffix", "unsupported output type '.jpg'"),
    ("mp4 from image model", "needs a video model"),
    ("video option on image model", "--frames needs a video model"),
    ("png of many frames", "a .png holds one frame"),
    ("unreadable image", "cannot read image garbage.png"),
    ("huge image", "outside 1.."),
    ("missing prompt", "required: --prompt"),
])
def test_bad_input_is_one_line_and_exit_2(case, expected, image_model, video_model, tmp_path, capsys):
    image, video, out = str(image_model), str(video_model), str(tmp_path / "out.png")
    args = {
        "missing component": ["--model", str(model_without_vae(image_model, tmp_path)), "-o", out],
        "missing model": ["--model", str(tmp_path / "nowhere"), "-o", out],
        "height not divisible": ["--model", image, "--height", "33", "-o", out],
        "zero steps": ["--model", image, "-o", out, "--steps", "0"],
        "missing output folder": ["--model", image, "-o", str(tmp_path / "no" / "out.png")],
        "unsupported suffix": ["--model", image, "-o", str(tmp_path / "out.jpg")],
        "mp4 from image model": ["--model", image, "-o", str(tmp_path / "out.mp4")],
        "video option on image model": ["--model", image, "--frames", "5", "-o", out],
        "png of many frames": ["--model", video, "--frames", "5", "-o", out],
        "unreadable image": ["--model", video, "--image", str(garbage_image(tmp_path)), "-o", out],
        "huge image": ["--model", video, "--image", str(huge_image(tmp_path)), "-o", out],
        "missing prompt": ["--model", image, "-o", out],
    }[case]
    prompt = [] if case == "missing prompt" else ["--prompt", "a cat"]
    assert main(["generate", *prompt, *args]) == 2
    assert expected in one_error_line(capsys)


def test_unexpected_error_is_one_line_exit_1_unless_debugging(image_model, tmp_path, capsys, monkeypatch):
    def broken_loader(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("sana_stream.cli.load_pipeline", broken_loader)
    argv = ["generate", "--model", str(image_model), "--prompt", "a cat", "-o", str(tmp_path / "x.png")]
    assert main(argv) == 1
    assert "RuntimeError: boom" in one_error_line(capsys)
    monkeypatch.setenv("SANA_STREAM_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        main(argv)


# ----- media ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_video_writer_chunks_keep_count_and_colour(codec, tmp_path):
    red = np.zeros((6, 32, 48, 3), np.uint8)
    red[..., 0] = 220
    path = tmp_path / "red.mp4"
    with VideoWriter(path, 16, 48, 32, codec=codec) as out:
        out.write(red[:2])
        out.write(red[2])  # one (H, W, 3) frame
        out.write(red[3:])
        assert out.frames_written == 6
    width, height, frames = decode(path)
    assert (width, height, len(frames)) == (48, 32, 6)
    mean = frames.reshape(-1, 3).mean(0)
    assert mean[0] > 190 and mean[1] < 30 and mean[2] < 30


def test_video_writer_falls_back_when_the_default_codec_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(media, "DEFAULT_CODEC", "libmissing264")
    with VideoWriter(tmp_path / "f.mp4", 16, 32, 32, codec="libmissing264") as out:
        assert out.codec == media.FALLBACK_CODEC
        out.write(np.zeros((2, 32, 32, 3), np.uint8))
    assert len(decode(tmp_path / "f.mp4")[2]) == 2


def test_video_writer_refuses_bad_sizes_and_frames(tmp_path):
    with pytest.raises(ValueError, match="even width"):
        VideoWriter(tmp_path / "odd.mp4", 16, 33, 32)
    with VideoWriter(tmp_path / "v.mp4", 16, 32, 32) as out:
        with pytest.raises(ValueError, match=r"uint8 \(N, 32, 32, 3\)"):
            out.write(np.zeros((1, 32, 16, 3), np.uint8))
        with pytest.raises(ValueError, match="uint8"):
            out.write(np.zeros((1, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="closed"):
        out.write(np.zeros((32, 32, 3), np.uint8))


def test_write_mp4_and_png(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    write_mp4(tmp_path / "a.mp4", frames, fps=24)
    assert decode(tmp_path / "a.mp4")[:2] == (16, 16)
    write_png(tmp_path / "a.png", frames[0])
    with Image.open(tmp_path / "a.png") as img:
        assert np.array_equal(np.asarray(img), frames[0])  # PNG is lossless
    with pytest.raises(ValueError, match="uint8"):
        write_png(tmp_path / "b.png", frames[0].astype(np.float32))


# ----- render / demo --compile --------------------------------------------------------------------------------


def test_render_compile_compiles_and_warms_up_before_the_clock(video_model, tmp_path, capsys, monkeypatch):
    # Pipeline.compile itself is checked against eager frames in tests/test_worldmodel.py; here: the flag is used.
    from sana_stream.pipeline.pipeline import Pipeline

    compiled = []
    monkeypatch.setattr(Pipeline, "compile", lambda self: compiled.append(self) or self)
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    schedule = tmp_path / "s.jsonl"
    schedule.write_text('{"prompt": "a boat", "seconds": 0.5}\n')
    out = tmp_path / "out.mp4"
    assert main(["render", "--schedule", str(schedule), "--model", str(video_model), "-o", str(out), "--height", "32",
                 "--width", "32", "--dtype", "fp32", "--seed", "0", "--compile"]) == 0
    assert len(compiled) == 1
    printed = capsys.readouterr().out
    assert "compiled the transformer blocks and the decoder in" in printed and "wrote" in printed
    assert out.stat().st_size > 0


def test_compile_without_a_cpp_compiler_is_one_line_and_exit_2(video_model, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    out = tmp_path / "out.mp4"
    assert main(["demo", "--model", str(video_model), "-o", str(out), "--compile"]) == 2
    assert "C++ compiler" in one_error_line(capsys)
    assert not out.exists()


def test_train_demo_takes_one_step_count_per_continuation_cycle(tmp_path, capsys, monkeypatch):
    from sana_stream.demo.train import CONTINUATION_CYCLES

    seen = []
    monkeypatch.setattr("sana_stream.demo.train.train_demo", lambda cfg: seen.append(cfg) or tmp_path)
    counts = ",".join(str(n + 1) for n in range(len(CONTINUATION_CYCLES)))
    assert main(["train-demo", "--work", str(tmp_path), "--continuation-steps", counts]) == 0
    assert seen[-1].continuation_cycles == tuple((n + 1, *rest) for n, (_, *rest) in enumerate(CONTINUATION_CYCLES))
    assert main(["train-demo", "--work", str(tmp_path), "--continuation-steps", "0"]) == 0
    assert seen[-1].continuation_cycles == ()
    for wrong in (counts + ",7", "0," + counts, "x", "-3"):
        assert main(["train-demo", "--continuation-steps", wrong]) == 2
        assert "--continuation-steps" in one_error_line(capsys)
    assert len(seen) == 2
