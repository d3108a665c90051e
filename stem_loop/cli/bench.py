"""``stem-loop bench``: run a benchmark and print its figures."""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys

from ._common import CommandError, dumps

# Benchmark name -> (module, entry function). Modules with ``main(argv)`` own their options.
BENCHMARKS: dict[str, tuple[str, str]] = {
    "acquisition": ("stem_loop.bench.acquisition", "run_acquisition_bench"),
    "forward": ("stem_loop.bench.forward", "run_forward_bench"),
    "inference": ("stem_loop.bench.inference", "run_inference_bench"),
    "energetics": ("stem_loop.bench.energetics", "run_energetics_bench"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bench`` subcommand."""
    parser = subparsers.add_parser(
        "bench",
        help="run a benchmark (" + ", ".join(sorted(BENCHMARKS)) + ")",
        description="Run a benchmark and print its figures; options after the benchmark name "
        "go to the benchmark ('stem-loop bench acquisition --help' lists them, "
        "'--json' prints the result as JSON last).",
    )
    parser.add_argument("benchmark", choices=sorted(BENCHMARKS), help="which benchmark")
    parser.add_argument(
        "options", nargs=argparse.REMAINDER, help="benchmark options, e.g. --json, --help"
    )
    parser.set_defaults(func=run)


def _load(name: str):
    module_name, function = BENCHMARKS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise CommandError(f"benchmark {name!r} is not available: {err}") from None
    if not hasattr(module, function) and not hasattr(module, "main"):
        raise CommandError(f"{module_name} defines neither {function}() nor main()")
    return module, getattr(module, function, None)


def run(args: argparse.Namespace) -> int:
    """Dispatch to the benchmark's ``main(argv)``, else call its entry function."""
    module, function = _load(args.benchmark)
    if callable(getattr(module, "main", None)):
        program, sys.argv[0] = sys.argv[0], f"stem-loop bench {args.benchmark}"  # For --help.
        try:
            module.main(list(args.options))  # Prints the table, and JSON last with --json.
        finally:
            sys.argv[0] = program
        return 0
    unknown = [opt for opt in args.options if opt != "--json"]
    if unknown:
        raise CommandError(f"benchmark {args.benchmark!r} takes only --json, not {unknown}")
    accepts_verbose = "verbose" in inspect.signature(function).parameters
    result = function(verbose=True) if accepts_verbose else function()
    if "--json" in args.options:
        print(dumps(result), flush=True)
    return 0
