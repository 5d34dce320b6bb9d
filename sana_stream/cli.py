"""Command-line entry point: `sana-stream <command>`.

    sana-stream demo [-o demo.mp4]                       stream the embedded demo model into a 20 s MP4
    sana-stream generate --model PATH --prompt TEXT -o out.png|out.mp4 [options]
    sana-stream render --schedule FILE.jsonl -o out.mp4 [--model PATH]   long videos, prompt by prompt
    sana-stream train-demo [--work runs/demo] [--install]  train the embedded demo model from scratch
    sana-stream train-world [--work runs/world] [--install]  train the embedded world model from scratch
    sana-stream serve [--model PATH] [--host 127.0.0.1] [--port 8000]   the WebRTC streaming-edit server

Bad input ends in one `sana-stream: error: ...` line on stderr and exit code 2; anything unexpected in one line
and exit code 1 (SANA_STREAM_DEBUG=1 re-raises it with its traceback).
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

from .media import write_mp4, write_png
from .pipeline import Pipeline, load_pipeline
from .pipeline.family import FAMILIES
from .pipeline.images import load_image

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
OUTPUT_SUFFIXES = {".png": "image", ".mp4": "video"}
DEBUG_ENV = "SANA_STREAM_DEBUG"


class CommandError(Exception):
    """Bad usage or input found by the CLI itself: reported in one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    # argparse prints the usage block plus a message and exits; one line is easier to read and to grep.
    def error(self, message: str) -> None:  # type: ignore[override]
        raise CommandError(f"{message} (see `{self.prog} --help`)")


def _whole_number(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an int in [low, high)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low or (high is not None and value >= high):
            bound = f"at least {low}" if high is None else f"in [{low}, {high})"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value
    return parse


_positive = _whole_number(1)


def _device(text: str) -> torch.device:
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"not a torch device: {text!r} (try cpu or cuda)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError("cuda was asked for but this torch sees no CUDA GPU")
    return device


def _per_family(field: str) -> str:
    """A family default for help texts, e.g. "20 image / 2 sprint / 50 video", read from the table the
    pipelines use so the help can never disagree with them."""
    return " / ".join(f"{getattr(d, field):g} {name}" for name, d in FAMILIES.items())


GENERATE_EPILOG = """\
The output type follows the suffix of -o: .png writes one image (image and Sprint models, or a video model
with --frames 1), .mp4 writes a video (video models). An option left out takes the default of the model's
family (image, Sprint or video), as listed above. A progress bar shows the denoising steps.

examples:
  sana-stream generate --model ./Sana_600M_1024px_diffusers --prompt "a red fox in snow" -o fox.png
  sana-stream generate --model ./SANA-Video_2B_480p_diffusers --prompt "a boat drifting on a lake" \\
      --frames 33 --steps 30 --seed 7 -o boat.mp4
  sana-stream generate --model ./SANA-Video_2B_480p_diffusers --prompt "the boat sails away" \\
      --image first_frame.jpg -o boat.mp4
"""


def _add_generate(commands: argparse._SubParsersAction) -> None:
    video = FAMILIES["video"]
    gen = commands.add_parser(
        "generate",
        help="make an image (.png) or a video (.mp4) from a text prompt",
        description="Make one image or one video from a text prompt with a Sana model folder in the diffusers\n"
                    "layout (model_index.json with transformer/, vae/, text_encoder/, tokenizer/, scheduler/).",
        epilog=GENERATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    gen.set_defaults(run=_generate)
    gen.add_argument("--model", metavar="PATH",
                     help="folder of a SanaPipeline, SanaSprintPipeline or SanaVideoPipeline "
                          "(default: the embedded demo model)")
    gen.add_argument("--prompt", metavar="TEXT", required=True,
                     help='what to show; --prompt "" generates without a prompt (unconditional)')
    gen.add_argument("-o", "--output", metavar="FILE", required=True,
                     help="where to write: a .png (one image) or an .mp4 (a video); its folder must exist")
    gen.add_argument("--negative-prompt", metavar="TEXT",
                     help="what to steer away from (default: none for images, the SANA-Video "
                          "artefact list for videos)")
    gen.add_argument("--height", type=_positive, metavar="PX",
                     help="image height in pixels, a multiple of the model's latent stride (default: the "
                          f"model's native size; {video.height} for videos)")
    gen.add_argument("--width", type=_positive, metavar="PX",
                     help=f"image width in pixels, likewise (default: native size; {video.width} for videos)")
    gen.add_argument("--frames", type=_positive, metavar="N",
                     help=f"video models: frames to make, 1 + 4k with the Wan VAE (default {video.num_frames}, "
                          f"about 5 s at 16 fps)")
    gen.add_argument("--steps", type=_positive, metavar="N",
                     help="denoising steps: more is slower and usually cleaner "
                          f"(default {_per_family('num_inference_steps')})")
    gen.add_argument("--guidance", type=float, metavar="SCALE",
                     help="how strongly to follow the prompt (classifier-free guidance; for Sprint models the "
                          f"embedded guidance); 1 turns it off (default {_per_family('guidance_scale')})")
    gen.add_argument("--seed", type=_whole_number(0, 2**32), metavar="N",
                     help="random seed: the same seed and options give the same output (default: a random "
                          "seed, printed at the end)")
    gen.add_argument("--image", metavar="FILE",
                     help="video models: a picture to use as the first frame (image-to-video)")
    gen.add_argument("--motion-score", type=int, metavar="N",
                     help=f"video models: how much motion to ask for, higher is more (default {video.motion_score})")
    gen.add_argument("--fps", type=_positive, default=16, metavar="N",
                     help="frame rate written into the .mp4 (default 16, SANA-Video's native rate)")
    gen.add_argument("--dtype", choices=DTYPES, default="bf16",
                     help="precision of the transformer and text encoder: bf16 (default; several times faster "
                          "on CPUs with AVX-512 BF16 and on GPUs) or fp32 (slower, for exact comparisons)")
    gen.add_argument("--device", type=_device, metavar="DEV",
                     default=torch.device("cuda" if torch.cuda.is_available() else "cpu"),
                     help="where to run: cpu, cuda or cuda:N (default: cuda when a GPU is visible, else cpu)")


def _output_kind(output: str) -> str:
    """"image" or "video" from the suffix; the folder must exist so that no generation is wasted."""
    path = Path(output)
    kind = OUTPUT_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise CommandError(f"unsupported output type {path.suffix or '(no suffix)'!r} for {output}: "
                           "use .png for an image or .mp4 for a video")
    if path.is_dir():
        raise CommandError(f"output {output} is a folder: give a file name ending in {path.suffix}")
    if not path.parent.is_dir():
        raise CommandError(f"output folder does not exist: {path.parent}")
    return kind


def _quiet_load(model: str | None, dtype: torch.dtype, device: torch.device) -> Pipeline:
    """load_pipeline without transformers' "Loading weights" bar: stderr is kept for our progress bar, real
    warnings (missing weights), and on bad input the one error line."""
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return load_pipeline(model, dtype=dtype, device=device)
    finally:
        if bar:
            hf_logging.enable_progress_bar()


def _generate(args: argparse.Namespace) -> int:
    kind = _output_kind(args.output)
    # Everything that can be checked without the model is checked first: loading a real model takes a while.
    image = load_image(args.image) if args.image is not None else None
    pipe = _quiet_load(args.model, DTYPES[args.dtype], args.device)

    video_only = [flag for flag, value in (("--frames", args.frames), ("--image", args.image),
                                           ("--motion-score", args.motion_score)) if value is not None]
    if pipe.family != "video" and (kind == "video" or video_only):
        wanted = "an .mp4 output" if kind == "video" else ", ".join(video_only)
        raise CommandError(f"{wanted} needs a video model; {args.model} makes still images ({pipe.family} "
                           "model): write a .png")
    frames = args.frames
    if kind == "image" and pipe.family == "video":
        if frames not in (None, 1):
            raise CommandError(f"a .png holds one frame: use --frames 1 or write an .mp4 (got --frames {frames})")
        frames = 1

    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    options = dict(negative_prompt=args.negative_prompt, height=args.height, width=args.width,
                   num_inference_steps=args.steps, guidance_scale=args.guidance, seed=seed)
    pipe.progress_bar = True
    start = time.perf_counter()
    if pipe.family == "video":
        pixels = pipe.generate_video(args.prompt, num_frames=frames, image=image, motion_score=args.motion_score,
                                     **options)
    else:
        pixels = pipe.generate_image(args.prompt, **options)[None]
    seconds = time.perf_counter() - start

    count, height, width = pixels.shape[:3]
    if kind == "image":
        write_png(args.output, pixels[0])
        print(f"wrote {args.output}: {width}×{height}, seed {seed}, {seconds:.1f} s")
    else:
        write_mp4(args.output, pixels, fps=args.fps)
        print(f"wrote {args.output}: {count} frames {width}×{height} at {args.fps} fps, seed {seed}, {seconds:.1f} s")
    return 0


DEMO_SCHEDULE = [
    ("a red circle moving right on a blue background", 5.0),
    ("a yellow star moving left on a sky over green ground", 5.0),
    ("a white square moving up on a purple background", 5.0),
    ("a green triangle moving down on a black background", 5.0),
]


def _stream_to_mp4(args: argparse.Namespace, schedule: list) -> int:
    from .engine.render import render_schedule

    if _output_kind(args.output) != "video":
        raise CommandError(f"{args.output}: streaming writes video, give an .mp4 file name")
    if args.compile:
        from .pipeline.pipeline import NO_COMPILER, can_compile

        if not can_compile():  # before loading: the one-line error costs nothing
            raise CommandError(f"--compile: {NO_COMPILER}")
    pipe = _quiet_load(args.model, DTYPES[args.dtype], args.device)
    if pipe.family != "video":
        raise CommandError(f"streaming needs a video model; {args.model} is a {pipe.family} model")
    if args.compile:
        from .engine import warm_up

        seconds = warm_up(pipe.compile(), schedule[0].prompt, height=args.height, width=args.width)
        print(f"compiled the transformer blocks and the decoder in {seconds:.1f} s")
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    stats = render_schedule(pipe, schedule, args.output, seed=seed, height=args.height, width=args.width)
    print(f"wrote {args.output}: {stats['frames_written']} frames in {stats['wall_seconds']:.1f} s "
          f"({stats['render_fps']:.1f} frames/s; first frame {stats['first_frame_ms']:.0f} ms; "
          f"{stats['recaches']} prompt switches; state {stats['state_bytes'] / 1e6:.2f} MB; seed {seed})")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .engine.render import Segment

    return _stream_to_mp4(args, [Segment(prompt, seconds) for prompt, seconds in DEMO_SCHEDULE])


def _render(args: argparse.Namespace) -> int:
    from .engine.render import read_schedule

    return _stream_to_mp4(args, read_schedule(args.schedule))


def _train_demo(args: argparse.Namespace) -> int:
    import shutil

    from .demo.train import TrainConfig, train_demo
    from .pipeline.loading import DEMO_MODEL

    fields = {k: getattr(args, k) for k in ("work", "seed", "ae_steps", "clips", "dit_steps", "device")}
    folder = train_demo(TrainConfig(**fields, continuation_cycles=args.continuation_steps))
    if args.install:
        if DEMO_MODEL.exists():
            shutil.rmtree(DEMO_MODEL)
        shutil.copytree(folder, DEMO_MODEL)
        folder = DEMO_MODEL
    print(f"demo model written to {folder}")
    return 0


def _add_streaming(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser(
        "demo", help="stream the embedded demo model into a 20-second MP4",
        description="Stream the embedded demo model (trained here on a procedural world) through four prompts, "
                    "5 s each, into an MP4, and print the measured frames/s and first-frame latency.")
    demo.set_defaults(run=_demo)
    render = commands.add_parser(
        "render", help="render a long video from a prompt schedule (JSON Lines)",
        description="Stream a prompt schedule into an MP4, one chunk in memory at a time. The schedule has one "
                    'JSON object per line: {"prompt": "...", "seconds": 15}. Prompts switch at the next chunk '
                    "boundary, where the engine re-caches the last chunk under the new prompt.",
        epilog="example:\n  sana-stream render --schedule examples/schedules/minute.jsonl -o minute.mp4 --seed 3",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    render.set_defaults(run=_render)
    render.add_argument("--schedule", metavar="FILE", required=True, help="JSON Lines prompt schedule")
    for sub, default in ((demo, "demo.mp4"), (render, None)):
        sub.add_argument("-o", "--output", metavar="FILE", default=default, required=default is None,
                         help=f"the .mp4 to write; its folder must exist{' (default demo.mp4)' if default else ''}")
        sub.add_argument("--model", metavar="PATH", help="a video pipeline folder (default: the embedded demo model)")
        sub.add_argument("--seed", type=_whole_number(0, 2**32), metavar="N", help="random seed (default: random)")
        sub.add_argument("--height", type=_positive, metavar="PX", help="frame height (default: the model's)")
        sub.add_argument("--width", type=_positive, metavar="PX", help="frame width (default: the model's)")
        sub.add_argument("--dtype", choices=DTYPES, default="bf16", help="bf16 (default, fast on CPU) or fp32")
        sub.add_argument("--compile", action="store_true",
                         help="torch.compile the transformer blocks and the decoder before streaming (needs a C++ "
                              "compiler; tens of seconds on first use, then about 1.4-1.7x the frames/s)")
        sub.add_argument("--device", type=_device, metavar="DEV", default=torch.device("cpu"),
                         help="cpu (default), cuda or cuda:N")


def _add_training_arguments(train: argparse.ArgumentParser, d, installs_into: str) -> None:
    """The options train-demo and train-world share; d holds the defaults (a TrainConfig)."""
    train.add_argument("--work", default=d.work, metavar="DIR", help=f"checkpoints and data (default {d.work})")
    train.add_argument("--seed", type=int, default=d.seed, help=f"seed (default {d.seed})")
    train.add_argument("--ae-steps", type=_positive, default=d.ae_steps, help=f"autoencoder steps (default {d.ae_steps})")
    train.add_argument("--clips", type=_positive, default=d.clips, help=f"training clips encoded (default {d.clips})")
    train.add_argument("--dit-steps", type=_positive, default=d.dit_steps,
                       help=f"transformer steps (default {d.dit_steps})")
    train.add_argument("--device", default=d.device, help="cpu (default) or cuda")
    train.add_argument("--install", action="store_true", help=f"copy the trained model into {installs_into}")


def _add_train_demo(commands: argparse._SubParsersAction) -> None:
    from .demo.train import TrainConfig, describe_cycles

    d = TrainConfig()
    train = commands.add_parser(
        "train-demo", help="train the embedded demo model from scratch (hours on a CPU; resumable)",
        description="Train the demo model's autoencoder, text encoder and transformer from scratch on the "
                    "procedural world, seeded. Each stage checkpoints into --work; running the command again "
                    "resumes where it stopped. --install copies the result into the package.")
    train.set_defaults(run=_train_demo)
    _add_training_arguments(train, d, "sana_stream/assets/demo")
    cycles = d.continuation_cycles

    def continuation_steps(text: str) -> tuple[tuple[int, str, float, float], ...]:
        steps = [_whole_number(0)(part) for part in text.split(",")]
        if steps == [0]:
            return ()
        if len(steps) != len(cycles) or 0 in steps:
            raise argparse.ArgumentTypeError(f"expected 0 or {len(cycles)} positive step counts, one per cycle, "
                                             f"got {text!r}")
        return tuple((n, *rest) for n, (_, *rest) in zip(steps, cycles))

    default = ",".join(str(n) for n, *_ in cycles)
    train.add_argument("--continuation-steps", type=continuation_steps, default=cycles, metavar="N,N",
                       help="steps of each continuation cycle, comma-separated, or 0 to skip the stage (default "
                            f"{default}: {describe_cycles(cycles)})".replace("%", "%%"))  # argparse formats help with %


def _train_world(args: argparse.Namespace) -> int:
    from worldmodel.train import install, train_world, world_config

    fields = {k: getattr(args, k) for k in ("work", "seed", "ae_steps", "clips", "dit_steps", "action_steps",
                                            "gate_steps", "device")}
    folder = train_world(world_config(**fields))
    if args.install:
        folder = install(folder)
    print(f"world model written to {folder}")
    return 0


def _add_train_world(commands: argparse._SubParsersAction) -> None:
    from worldmodel.train import world_config

    d = world_config()
    train = commands.add_parser(
        "train-world", help="train the embedded world model from scratch (about 100 min on 2 CPU cores; resumable)",
        description="Render trajectories in the procedural first-person maze (worldmodel.sim), then train the world "
                    "model's autoencoder, text encoder and action-conditioned transformer on them, seeded, and "
                    "evaluate it on held-out worlds. Each stage checkpoints into --work; running the command again "
                    "resumes where it stopped. --install copies the result into the package.")
    train.set_defaults(run=_train_world)
    _add_training_arguments(train, d, "worldmodel/assets/world")
    train.add_argument("--action-steps", type=_positive, default=d.action_steps,
                       help=f"steps of the action stage on branching trajectories (default {d.action_steps})")
    train.add_argument("--gate-steps", type=_whole_number(0), default=d.gate_steps,
                       help=f"steps of the copy-gate stage after it, 0 for a model without the gate "
                            f"(default {d.gate_steps})")


def _serve(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import signal

    from .server import Server, ServerConfig

    origins = tuple(args.allow_origin or ())
    bad = [o for o in origins if not o.startswith(("http://", "https://"))]
    if bad:
        raise CommandError(f"--allow-origin takes origins like http://host:port, got {bad[0]!r}")
    config = ServerConfig(host=args.host, port=args.port, token=args.token, max_sessions=args.max_sessions,
                          allowed_origins=origins, bitrate=args.bitrate * 1000, codec=args.codec)
    config.validate()  # before the model loads
    if args.no_world and args.world is not None:
        raise CommandError("--world and --no-world exclude each other")
    # The server's own events (one JSON object a line) at INFO; the libraries' chatter only from WARNING.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("sana_stream.server").setLevel(logging.WARNING if args.quiet else logging.INFO)
    pipe = _quiet_load(args.model, DTYPES[args.dtype], args.device)
    world = None if args.no_world else _load_world(args.world, DTYPES[args.dtype], args.device)
    server = Server(pipe, config, world)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)  # graceful: sessions closed before exit

        def ready(port: int) -> None:
            modes = "video and world modes" if world is not None else "video mode (no world model)"
            print(f"serving on http://{args.host}:{port}/ with {modes} (Ctrl-C stops)", flush=True)

        await server.run(stop, ready)

    asyncio.run(run())
    return 0


def _load_world(path: str | None, dtype: torch.dtype, device: torch.device):
    """The world model for world mode: `path`, else the shipped one if this install has it, else None."""
    from worldmodel import WorldModel
    from worldmodel.model import DEFAULT_WORLD, WORLD_FILE

    if path is None and not (DEFAULT_WORLD / WORLD_FILE).is_file():
        return None
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return WorldModel.from_pretrained(path, dtype=dtype, device=device)
    finally:
        if bar:
            hf_logging.enable_progress_bar()


def _add_serve(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser(
        "serve", help="serve live, editable video to browsers over WebRTC",
        description="Serve the browser client at / and stream live video over WebRTC; each viewer gets its own "
                    "stream (prompt, seed, state) and edits it live. Sessions share one loaded model.",
        epilog="example:\n  sana-stream serve --port 8000     then open http://127.0.0.1:8000/",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    serve.set_defaults(run=_serve)
    serve.add_argument("--model", metavar="PATH", help="a video pipeline folder (default: the embedded demo model)")
    serve.add_argument("--world", metavar="PATH",
                       help="a world folder for world mode and /ws/world (default: the shipped world model, if "
                            "this install has one)")
    serve.add_argument("--no-world", action="store_true", help="serve video mode only")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 exposes it)")
    serve.add_argument("--port", type=_whole_number(0, 65536), default=8000, help="port (default 8000; 0: any free)")
    serve.add_argument("--token", metavar="TEXT", help="require this token on /ws (?token=...); at least 8 characters")
    serve.add_argument("--max-sessions", type=_positive, default=4, metavar="N",
                       help="concurrent sessions; more are answered 'server full' (default 4)")
    serve.add_argument("--allow-origin", action="append", metavar="ORIGIN",
                       help="a further web origin allowed to connect, e.g. https://example.org (repeatable)")
    serve.add_argument("--bitrate", type=_whole_number(50, 100_001), default=3000, metavar="KBPS",
                       help="video bitrate the encoders start at, in kbit/s; the browser's feedback moves it "
                            "within half to twice that (default 3000)")
    serve.add_argument("--codec", choices=("vp8", "h264"), help="force a codec (default: the browser's choice)")
    serve.add_argument("--quiet", action="store_true", help="no session logs (JSON lines on stderr) below WARNING")
    serve.add_argument("--dtype", choices=DTYPES, default="bf16", help="bf16 (default, fast on CPU) or fp32")
    serve.add_argument("--device", type=_device, metavar="DEV", default=torch.device("cpu"),
                       help="cpu (default), cuda or cuda:N")


def _fail(message: str, code: int) -> int:
    # Library messages may span lines (file lists, nested causes): folded so that the error is one line.
    print(f"sana-stream: error: {' '.join(message.split())}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(
        prog="sana-stream",
        description="Real-time video generation with a block-causal linear-attention video DiT.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_streaming(commands)
    _add_generate(commands)
    _add_train_demo(commands)
    _add_train_world(commands)
    _add_serve(commands)
    debug = os.environ.get(DEBUG_ENV) == "1"
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        return args.run(args)
    except CommandError as err:
        return _fail(str(err), 2)
    except (ValueError, OSError) as err:  # the library's way of saying the input is wrong
        if debug:
            raise
        return _fail(str(err) or type(err).__name__, 2)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except Exception as err:  # a bug, not bad input: still one line, with the way to see more
        if debug:
            raise
        return _fail(f"{type(err).__name__}: {err} (run with {DEBUG_ENV}=1 for the traceback)", 1)


if __name__ == "__main__":
    sys.exit(main())
