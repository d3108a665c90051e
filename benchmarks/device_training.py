"""Train the descriptor ensemble on a lent GPU machine, with strained-cell multislice contents.

The stages of ``stem-loop train --contents multislice --device cuda`` (same data, seeds and
recipe), arranged for one GPU machine that has torch but not abTEM:

* ``prepare CACHE`` (here, with abTEM): writes into ``CACHE`` the strained-cell states
  (:func:`sim_devices.cell_multislice.strained_cell_multislice`, a few hundred kB each) and
  each beam library's grids without its intensities (the libraries are too large to carry).
* ``run`` (there, ``STEM_LOOP_CACHE=CACHE``): rebuilds each library from its cell at zero
  strain on the library's whole direction grid (abTEM's library to float16 storage, except
  Si's atom plane that abTEM puts one slice late; with multislice contents the library is
  rendered only for the content-strain grid point at zero strain), writes the training shards
  with every block's contents computed on the GPU, trains the members side by side (one
  process each), writes the calibration frames meanwhile, and joins the ensemble.

Ad-hoc device tooling, run by ``benchmarks/device_training.sh``; the product path is
``stem-loop train``.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

import numpy as np

META_PREFIX = "grids-"


def prepare(cache: Path) -> None:
    """Write the cell states and the libraries' grids into ``cache`` (needs abTEM)."""
    from dataclasses import asdict

    from sim_devices.cbed_library import LibrarySpec, load_or_build
    from sim_devices.cell_multislice import cell_filename, strained_cell_multislice
    from stem_loop.inference.conditions import MATERIALS, TRAINING_VOLTAGES_KV

    for material, zone_axis in MATERIALS:
        for voltage in TRAINING_VOLTAGES_KV:
            spec = LibrarySpec(material=material, zone_axis=zone_axis, voltage_kv=voltage)
            library = load_or_build(spec)
            cell = strained_cell_multislice(material, zone_axis, voltage, spec.settings)
            cell.save(cache / cell_filename(material, zone_axis, voltage, spec.settings))
            np.savez(
                cache / (META_PREFIX + spec.filename()),
                spec=np.array(json.dumps(asdict(spec))),
                hk=library.hk,
                g_inv_a=library.g_inv_a,
                k_mrad=library.k_mrad,
                thickness_nm=library.thickness_nm,
            )
            print("prepared", spec.filename(), flush=True)


def libraries_from_cells(device: str) -> dict[str, float]:
    """Build every library whose grids are in the cache and whose intensities are not."""
    from sim_devices.cbed_exact import MultisliceSettings
    from sim_devices.cbed_library import BeamLibrary, LibrarySpec, cache_dir
    from sim_devices.cell_multislice import strained_cell_multislice

    seconds = {}
    for meta in sorted(cache_dir().glob(META_PREFIX + "*.npz")):
        start = time.perf_counter()
        with np.load(meta) as data:
            grids = {k: data[k] for k in data.files}
        raw = json.loads(str(grids.pop("spec")))
        raw["settings"] = MultisliceSettings(**raw["settings"])
        # the name training with strained-cell contents looks for (dataset.library_source)
        spec = replace(LibrarySpec(**raw), source="cell")
        target = cache_dir() / spec.filename()
        if target.exists():
            continue
        cell = strained_cell_multislice(
            spec.material, spec.zone_axis, spec.voltage_kv, spec.settings
        )
        k = grids["k_mrad"]
        kx, ky = np.meshgrid(k, k)  # direction index iy * K + ix: (k_y, k_x) after reshape
        directions = np.stack([kx.ravel(), ky.ravel()], axis=1)
        exits = spec.thickness_step_slices * np.arange(1, len(grids["thickness_nm"]) + 1)
        values = cell.intensities(
            (0.0, 0.0, 0.0), directions, exits, grids["hk"], chunk=len(directions), device=device
        )
        intensity = values.reshape(len(exits), len(grids["hk"]), len(k), len(k))
        BeamLibrary(spec, intensity=intensity, **grids).save(target)
        seconds[target.name] = round(time.perf_counter() - start, 2)
        print(f"library {target.name} from its cell in {seconds[target.name]} s", flush=True)
    return seconds


def _train_member(shards, out, epochs, seed, device) -> float:
    import torch

    from stem_loop.inference.training import TrainingSettings, train

    torch.set_num_threads(2)
    start = time.perf_counter()
    train(shards, out, TrainingSettings(epochs=epochs, seed=seed), device=device, progress=True)
    return time.perf_counter() - start


def run(args: argparse.Namespace) -> dict:
    """All stages; returns the timings."""
    from stem_loop.cli.train import frame_options
    from stem_loop.inference.calibration import generate_calibration
    from stem_loop.inference.dataset import TrainingRanges, generate_shards
    from stem_loop.inference.training import build_ensemble

    timings: dict = {}
    start = time.perf_counter()
    timings["libraries_s"] = libraries_from_cells(args.device)
    ranges = TrainingRanges(
        strain_contents=True, content_engine="multislice", content_step=args.content_step
    )
    frames = frame_options(args, ranges, args.device)  # as stem-loop train makes them
    mark = time.perf_counter()
    shards = generate_shards(args.work / "shards", args.shards, **frames)
    timings["data_s"] = round(time.perf_counter() - mark, 1)
    print(f"data in {timings['data_s']} s", flush=True)

    mark = time.perf_counter()
    model_dir = args.work / "model"
    member_dirs = [model_dir / f"member{i}" for i in range(args.members)]
    with ProcessPoolExecutor(args.members, mp_context=get_context("spawn")) as pool:
        futures = [
            pool.submit(_train_member, shards, d, args.epochs, args.seed + i, args.device)
            for i, d in enumerate(member_dirs)
        ]
        calibration = generate_calibration(
            args.work / "calibration", args.calibration_shards, **frames
        )
        timings["calibration_data_s"] = round(time.perf_counter() - mark, 1)
        timings["member_s"] = [round(f.result(), 1) for f in futures]
    timings["train_s"] = round(time.perf_counter() - mark, 1)
    mark = time.perf_counter()
    meta = build_ensemble(member_dirs, shards, model_dir, calibration_paths=calibration)
    timings["ensemble_s"] = round(time.perf_counter() - mark, 1)
    timings["wall_s"] = round(time.perf_counter() - start, 1)
    timings["validation_rms"] = meta["validation_rms"]
    timings["settings"] = {k: str(v) for k, v in vars(args).items()}
    (model_dir / "device_training.json").write_text(json.dumps(timings, indent=1))
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="stage", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("cache", type=Path)
    r = sub.add_parser("run")
    r.add_argument("--work", type=Path, required=True)
    r.add_argument("--device", default="cuda")
    r.add_argument("--shards", type=int, default=192)
    r.add_argument("--frames-per-shard", type=int, default=2048)
    r.add_argument("--epochs", type=int, default=14)
    r.add_argument("--members", type=int, default=3)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--workers", type=int, default=14)
    r.add_argument("--calibration-shards", type=int, default=8)
    r.add_argument("--content-step", type=float, default=0.005)
    args = parser.parse_args()
    if args.stage == "prepare":
        args.cache.mkdir(parents=True, exist_ok=True)
        prepare(args.cache)
    else:
        print(json.dumps(run(args), indent=1), flush=True)


if __name__ == "__main__":
    main()
