"""The ``stem-loop`` command: one subcommand per module, each registering itself.

Every subcommand has ``--help``; with ``--json`` the last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from stem_loop import __version__

from ._common import CommandError

# Modules of stem_loop.cli that define ``register(subparsers)``. Later: run.
COMMANDS: tuple[str, ...] = ("demo", "serve", "bench", "energy", "train", "predict")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="stem-loop",
        description="Autonomous 4D-STEM with Bluesky, Ophyd and Tiled.",
        epilog="Environment: STEM_LOOP_DATA, STEM_LOOP_SAMPLE, STEM_LOOP_TILED_URI, "
        "TILED_API_KEY. Run 'stem-loop COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``stem-loop`` with ``argv`` (default ``sys.argv[1:]``) and return the exit status."""
    from stem_loop.storage import TiledAuthError, TiledUnreachableError

    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except (CommandError, TiledUnreachableError, TiledAuthError) as err:
        print(f"stem-loop {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
