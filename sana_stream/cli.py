"""Command-line entry point: `sana-stream <command>`."""

from __future__ import annotations

import argparse
import sys


def _demo(_args: argparse.Namespace) -> int:
    # The embedded demo model is trained by issue 5; until it ships, say so plainly instead of faking output.
    print(
        "sana-stream demo: the embedded demo model is not built yet (it arrives with the demo-model work); "
        "what works today is the transformer: see README 'Using the transformer'.",
        file=sys.stderr,
    )
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sana-stream",
        description="Real-time video generation with a block-causal linear-attention video DiT.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("demo", help="stream the embedded demo model (not built yet)").set_defaults(run=_demo)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
