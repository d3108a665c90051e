"""The beam libraries of every trained condition, built ahead of time.

The live thickness refiner, the held-out evaluation (its live thickness, fast twin and
shot-noise bound) and the tests that hold them load the fast model's beam library of each
material and voltage the networks were trained on (:data:`~.conditions.MATERIALS` x
:data:`~.conditions.TRAINING_VOLTAGES_KV`, abTEM's). Each takes 2.5 to 7 minutes to build on
2 CPU cores, once; they are cached (:func:`sim_devices.cbed_library.cache_dir`). Built inside a
test, they ran past the suite's 900 s per-test limit on a fresh machine, so the suite
(``tests/conftest.py``, at session start) builds the missing ones first; by hand::

   python -m stem_loop.inference.libraries            # build what is missing
   python -m stem_loop.inference.libraries --list     # say what is built and where
"""

from __future__ import annotations

import argparse
import time

from sim_devices.cbed_library import LibrarySpec, load_or_build, stored_library

from .conditions import MATERIALS, TRAINING_VOLTAGES_KV


def trained_library_specs() -> list[LibrarySpec]:
    """The (abTEM) beam library of every trained material and voltage."""
    return [
        LibrarySpec(material=material, zone_axis=zone_axis, voltage_kv=voltage_kv)
        for material, zone_axis in MATERIALS
        for voltage_kv in TRAINING_VOLTAGES_KV
    ]


def missing_libraries(specs: list[LibrarySpec] | None = None) -> list[LibrarySpec]:
    """Those of ``specs`` (default: :func:`trained_library_specs`) not built yet."""
    specs = trained_library_specs() if specs is None else specs
    return [spec for spec in specs if stored_library(spec) is None]


def build_missing(
    specs: list[LibrarySpec] | None = None, *, progress: bool = True
) -> list[tuple[LibrarySpec, float]]:
    """Build the missing libraries of ``specs`` (default: every trained condition).

    Returns
    -------
    list of (LibrarySpec, float)
        Each library built and the seconds it took (empty when all were there).
    """
    built = []
    todo = missing_libraries(specs)
    for number, spec in enumerate(todo, 1):
        if progress:
            print(
                f"beam library {number}/{len(todo)}: {spec.material} [{spec.zone_axis}] "
                f"{spec.voltage_kv:g} kV (once; minutes on 2 cores)",
                flush=True,
            )
        start = time.perf_counter()
        load_or_build(spec, progress=progress)
        built.append((spec, time.perf_counter() - start))
    return built


def main(argv: list[str] | None = None) -> None:
    """``python -m stem_loop.inference.libraries [--list]``."""
    parser = argparse.ArgumentParser(
        prog="python -m stem_loop.inference.libraries",
        description="Build the fast model's beam library of every trained material and "
        "voltage that is not built yet (2.5 to 7 minutes each on 2 cores, once).",
    )
    parser.add_argument("--list", action="store_true", help="only say what is built and where")
    args = parser.parse_args(argv)
    if args.list:
        for spec in trained_library_specs():
            where = stored_library(spec) or "missing"
            print(f"{spec.material} [{spec.zone_axis}] {spec.voltage_kv:g} kV: {where}")
        return
    built = build_missing()
    if not built:
        print("beam libraries: all trained conditions built")
    for spec, seconds in built:
        print(f"built {spec.filename()} in {seconds:.0f} s")


if __name__ == "__main__":
    main()
