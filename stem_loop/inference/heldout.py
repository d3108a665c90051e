"""The held-out test set: exact (abTEM multislice) patterns only, never seen in training.

One multislice run per random crystal gives a thickness series (exit planes), so each run
contributes eight patterns (10-80 nm). Patterns are stored noise-free, as expected counts at
10^5 electrons per frame (float16); evaluation draws Poisson counts at any dose from them.

The shipped sets are computed on a 19.2 nm crystal block (:data:`REFERENCE_SETTINGS`), larger
than the exact model's default 12.8 nm. For an Si [110] crystal at 80 nm the lattice-fit disk
positions move by 0.118 px from 8 to 19.2 nm and by 0.044 px from 12.8 to 19.2 nm, the front
end's strain read from them by up to 0.28 % and 0.08 %; from 19.2 to 25.6 nm the patterns move
half as much as from 12.8 to 19.2 nm. Part of what the 12.8 nm sets shipped until December 2026
counted as the networks' strain error was their own (model card); they are kept in
``benchmarks/data/heldout_box12.8``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from sim_devices.cbed_exact import ExactCBED, MultisliceSettings
from sim_devices.sample import DESCRIPTOR_NAMES

from .conditions import (
    CONVERGENCE_RANGE_MRAD,
    MATERIALS,
    TRAINING_VOLTAGES_KV,
    BeamConditions,
    max_convergence_mrad,
    standard_mrad_per_pixel,
)

#: Thicknesses of every held-out series (exit planes of one run).
HELDOUT_THICKNESSES_NM = (10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0)
#: Counts scale of the stored patterns.
STORED_DOSE = 1e5
#: Numerical settings of the shipped exact sets (held-out and validation): a 19.2 nm block.
REFERENCE_SETTINGS = MultisliceSettings(box_nm=19.2)
#: Shipped held-out set.
SHIPPED_HELDOUT = Path(__file__).parent / "data" / "heldout_exact.npz"
#: Seed of the shipped held-out set's crystals (:func:`plan_heldout`'s default).
HELDOUT_SEED = 20261124
#: A second shipped held-out set: twelve more crystals (:data:`SECOND_HELDOUT_SEED`; never
#: used in training, calibration or validation), to pool with the first where twelve crystals
#: leave the rms too uncertain (``benchmarks/heldout_pooled.py``).
SECOND_HELDOUT = Path(__file__).parent / "data" / "heldout_exact_b.npz"
#: Seed of its crystals (:func:`plan_heldout` with two runs per material and voltage).
SECOND_HELDOUT_SEED = 20261129


@dataclass(frozen=True)
class HeldoutRun:
    """One exact multislice run of the held-out set."""

    conditions: BeamConditions
    strain: tuple[float, float, float]
    tilt_mrad: tuple[float, float]
    center_offset_px: tuple[float, float]


def plan_heldout(runs_per_condition: int = 2, seed: int = HELDOUT_SEED) -> list[HeldoutRun]:
    """Random crystals for every material and training voltage (seeded)."""
    rng = np.random.default_rng(seed)
    runs = []
    for material, zone_axis in MATERIALS:
        for voltage in TRAINING_VOLTAGES_KV:
            top = max_convergence_mrad(material, zone_axis, voltage)
            for _ in range(runs_per_condition):
                conditions = BeamConditions(
                    material,
                    zone_axis,
                    voltage,
                    round(float(rng.uniform(CONVERGENCE_RANGE_MRAD[0], top)), 2),
                    standard_mrad_per_pixel(voltage),
                )
                strain = tuple(float(v) for v in rng.uniform(-0.02, 0.02, 3))
                tilt = rng.uniform(-3.0, 3.0, 2)
                while np.hypot(*tilt) > 3.0:
                    tilt = rng.uniform(-3.0, 3.0, 2)
                offset = tuple(float(v) for v in rng.uniform(-2.0, 2.0, 2))
                runs.append(HeldoutRun(conditions, strain, tuple(map(float, tilt)), offset))
    return runs


def compute_run(
    run: HeldoutRun,
    settings: MultisliceSettings,
    pixel_subsamples: Sequence[int] = (0,),
    soft_aperture: bool = True,
) -> list[np.ndarray]:
    """Noise-free expected counts ``(8, rows, cols)`` of one run at :data:`STORED_DOSE`.

    One multislice run (the probe's aperture soft, abTEM's default, or hard), detected once per
    entry of ``pixel_subsamples`` (see :class:`~sim_devices.cbed_exact.ExactCBED`: 0 rebins the
    FFT, ``n`` integrates every pixel on ``n x n`` points); one array per entry, in that order.
    """
    c = run.conditions
    detector = c.detector(run.center_offset_px)
    exact = ExactCBED(
        c.material, c.zone_axis, c.beam, detector, settings, soft_aperture=soft_aperture
    )
    waves, sampling = exact.exit_waves(run.strain, run.tilt_mrad, HELDOUT_THICKNESSES_NM)
    return [exact.detect(waves, sampling, n) * STORED_DOSE for n in pixel_subsamples]


def _variant(pixel_subsamples: int, soft_aperture: bool) -> str:
    return ("" if soft_aperture else "-hard") + (
        f"-px{pixel_subsamples}" if pixel_subsamples else ""
    )


def parts_folder(
    path: Path,
    settings: MultisliceSettings,
    pixel_subsamples: int = 0,
    soft_aperture: bool = True,
) -> Path:
    """Where the runs of the set at ``path`` computed with these settings are kept.

    Runs computed with other numerical settings, aperture or detection are kept apart (never
    mixed).
    """
    variant = _variant(pixel_subsamples, soft_aperture)
    return path.with_suffix(f".box{settings.box_nm:g}nm-{settings.sampling_a:g}A{variant}.parts")


def detection_path(path: Path, pixel_subsamples: int, soft_aperture: bool = True) -> Path:
    """The assembled set of detection ``pixel_subsamples`` and that aperture (``path`` itself
    for the FFT rebinned, soft aperture)."""
    variant = _variant(pixel_subsamples, soft_aperture)
    return path.with_name(f"{path.stem}{variant}.npz") if variant else path


def _compute_part(
    run: HeldoutRun, settings: MultisliceSettings, parts: dict[int, Path], soft_aperture: bool
) -> float:
    """Compute one run into ``parts`` (one file per detection; temporary names, then renamed)."""
    start = time.perf_counter()
    counts_list = compute_run(run, settings, tuple(parts), soft_aperture)
    for part, counts in zip(parts.values(), counts_list, strict=True):
        tmp = part.with_name(part.stem + ".tmp.npy")
        np.save(tmp, counts.astype(np.float16))
        tmp.rename(part)
    return time.perf_counter() - start


def build_heldout(
    path: str | Path,
    runs: list[HeldoutRun] | None = None,
    *,
    settings: MultisliceSettings | None = None,
    progress: bool = False,
    partial: bool = False,
    workers: int | None = None,
    pixel_subsamples: Sequence[int] = (0,),
    soft_aperture: bool = True,
) -> Path:
    """Compute the held-out set into ``path`` (resumable: finished runs are kept beside it).

    ``settings`` default to :data:`REFERENCE_SETTINGS`, those of the shipped sets.

    Runs are computed one condition at a time round-robin (the first run of every material and
    voltage, then the second ...), so an interrupted build covers every condition early.
    With ``partial``, only runs already computed are assembled (nothing new is computed).
    ``workers`` processes (default: one per core) run the multislices in parallel; abTEM runs
    each on one thread.

    Each multislice run is detected once per entry of ``pixel_subsamples`` (0: the FFT
    rebinned, ``n``: every pixel integrated on ``n x n`` points); each detection is kept in its
    own folder (:func:`parts_folder`) and assembled into :func:`detection_path`. A run is
    computed again only if a detection lacks it. Returns the first detection's set.
    ``soft_aperture=False`` gives the probe a hard aperture (kept apart likewise).
    """
    path = Path(path)
    runs = plan_heldout() if runs is None else runs
    settings = settings or REFERENCE_SETTINGS
    detections = tuple(dict.fromkeys(int(n) for n in pixel_subsamples))
    if not detections or min(detections) < 0:
        raise ValueError(f"pixel_subsamples must be 0 or more, got {pixel_subsamples}")
    folders = {n: parts_folder(path, settings, n, soft_aperture) for n in detections}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)

    def missing_parts(i: int) -> dict[int, Path]:
        parts = {n: folder / f"run{i:03d}.npy" for n, folder in folders.items()}
        return {n: part for n, part in parts.items() if not part.exists()}

    groups: dict[tuple, list[int]] = {}
    for i, run in enumerate(runs):
        groups.setdefault((run.conditions.material, run.conditions.voltage_kv), []).append(i)
    order = [
        i for rank in range(len(runs)) for g in groups.values() if rank < len(g) for i in [g[rank]]
    ]
    todo = [] if partial else [i for i in order if missing_parts(i)]
    if todo:
        pool = ProcessPoolExecutor(
            max_workers=min(workers or os.cpu_count() or 1, len(todo)),
            mp_context=get_context("spawn"),
        )
        with pool:
            futures = {
                pool.submit(_compute_part, runs[i], settings, missing_parts(i), soft_aperture): i
                for i in todo
            }
            for future in as_completed(futures):
                seconds = future.result()
                if progress:
                    print(f"  held-out run {futures[future] + 1}/{len(runs)}: {seconds:.0f} s")
    for n, folder in folders.items():
        if n == detections[0] or any(folder.glob("run*[0-9].npy")):
            _assemble(
                detection_path(path, n, soft_aperture), folder, runs, settings, n, soft_aperture
            )
    return detection_path(path, detections[0], soft_aperture)


def _assemble(
    path: Path,
    parts: Path,
    runs: list[HeldoutRun],
    settings: MultisliceSettings,
    pixel_subsamples: int,
    soft_aperture: bool,
) -> None:
    """Write the finished runs in ``parts`` into the held-out file ``path``."""
    done = [i for i in range(len(runs)) if (parts / f"run{i:03d}.npy").exists()]
    if not done:
        raise FileNotFoundError(f"no held-out runs computed in {parts}")
    counts = np.concatenate([np.load(parts / f"run{i:03d}.npy") for i in done])
    kept = [runs[i] for i in done]
    n_t = len(HELDOUT_THICKNESSES_NM)
    table: dict[str, list[float]] = {name: [] for name in DESCRIPTOR_NAMES}
    for run in kept:
        values = dict(
            exx=run.strain[0],
            eyy=run.strain[1],
            exy=run.strain[2],
            tilt_x_mrad=run.tilt_mrad[0],
            tilt_y_mrad=run.tilt_mrad[1],
        )
        for name in DESCRIPTOR_NAMES:
            if name == "thickness_nm":
                table[name].extend(HELDOUT_THICKNESSES_NM)
            else:
                table[name].extend([values[name]] * n_t)
    meta = dict(
        runs=[
            dict(
                conditions=r.conditions.as_dict(),
                strain=list(r.strain),
                tilt_mrad=list(r.tilt_mrad),
                center_offset_px=list(r.center_offset_px),
            )
            for r in kept
        ],
        thicknesses_nm=list(HELDOUT_THICKNESSES_NM),
        stored_dose=STORED_DOSE,
        settings=asdict(settings),
        pixel_subsamples=pixel_subsamples,
        soft_aperture=soft_aperture,
    )
    np.savez_compressed(
        path,
        counts=counts,
        run_index=np.repeat(np.arange(len(kept)), n_t),
        meta=np.array(json.dumps(meta)),
        **{name: np.asarray(v, dtype=np.float32) for name, v in table.items()},
    )
