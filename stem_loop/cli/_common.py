"""Helpers shared by the subcommands: options, errors and the ``--json`` convention."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


class CommandError(Exception):
    """A failure to report as one line on stderr (exit status 1), without a traceback."""


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--json``: print one JSON object as the last line of stdout."""
    parser.add_argument(
        "--json", action="store_true", help="print the result as one JSON object on the last line"
    )


def _view_count(text: str) -> int | str:
    """``--mirror``'s value: a view count, or ``auto``."""
    return text if text == "auto" else int(text)


def add_reading_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--mirror [1|2|4|auto]`` and ``--precision``: how the networks read each frame
    (``Predictor(mirror=..., precision=...)``)."""
    parser.add_argument(
        "--mirror",
        nargs="?",
        type=_view_count,
        const=4,
        default="auto",
        choices=(1, 2, 4, "auto"),
        metavar="VIEWS",
        help="mirror views of every frame averaged: 1 reads it once, 2 the frame and its "
        "point reflection, 4 (the flag alone) all four; auto (the default, as the live agent): "
        "2 where the networks run in bfloat16, else 1",
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "float32", "bfloat16"),
        default="auto",
        help="the networks' arithmetic (auto: bfloat16 where the chip computes it natively)",
    )


def add_data_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--data DIR`` (default ``$STEM_LOOP_DATA`` or ``./stem-loop-data``)."""
    parser.add_argument(
        "--data",
        metavar="DIR",
        type=Path,
        default=None,
        help="data directory: Tiled catalog, HDF5 files "
        "(default: $STEM_LOOP_DATA or ./stem-loop-data)",
    )


def _to_json(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(result: Any) -> str:
    """One-line JSON, with numpy values and paths converted."""
    return json.dumps(result, default=_to_json)


def emit(result: Any, text: str | None, *, as_json: bool) -> None:
    """Print the human summary ``text``, then with ``as_json`` the JSON last.

    Parameters
    ----------
    result : dict or list
        The machine-readable result.
    text : str, optional
        Human-readable summary, printed first.
    as_json : bool
        Print ``result`` as one JSON line at the end.
    """
    if text:
        print(text, flush=True)
    if as_json:
        print(dumps(result), flush=True)
