"""``stem-loop predict``: simulate frames on a sample and read their descriptors with the network.

Frames are simulated at random (seeded) positions with the microscope's default (fast) forward
model and counting noise, then run through the shipped network; as in the live agent, the
frames whose thickness the networks read with a sigma above ``--refine-thickness-above`` (2 nm)
get it refined by the fast model (:func:`stem_loop.inference.refine.refine_doubtful`).
As the live agent does, every frame is read in the mirror pair where the networks run in
bfloat16 (``--mirror auto``, the default); ``--mirror 1`` reads it once, ``--mirror`` in all
four mirror views (:mod:`stem_loop.inference.mirror`: a network pass per view); ``--precision
sets the networks' arithmetic (:mod:`stem_loop.inference.precision`).
``P.npz`` holds ``x_nm``, ``y_nm``, one array per descriptor name and ``<name>_std``, ``ood``,
``reason``, ``thickness_refined`` and ``thickness_network_nm``, and the sample's true
descriptors as ``true_<name>``.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path
from typing import Any

from ._common import CommandError, add_json_option, add_reading_options, emit

#: Names accepted for the sample ``stem-loop demo`` uses (the default built-in sample).
DEMO_NAMES = ("demo", "default")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``predict`` subcommand."""
    parser = subparsers.add_parser(
        "predict",
        help="simulate frames on a sample and read their descriptors with the network",
        description="Simulate CBED frames at N random positions of a sample with the "
        "microscope's default (fast) forward model and Poisson noise, run the shipped "
        "network, write the descriptors (and the sample's true ones, as true_<name>) to an "
        ".npz and print frames/s, the rms error against the truth and the OOD count.",
    )
    parser.add_argument(
        "--sample",
        required=True,
        metavar="S.npz|NAME",
        help="sample .npz file or built-in sample name ('demo' is the default built-in)",
    )
    parser.add_argument(
        "--positions", type=int, required=True, metavar="N", help="number of probe positions"
    )
    parser.add_argument("--seed", type=int, default=0, metavar="K", help="positions and noise seed")
    parser.add_argument(
        "--dose",
        type=float,
        default=None,
        metavar="E",
        help="electrons per frame (default: the microscope's default dose)",
    )
    parser.add_argument(
        "--refine-thickness-above",
        type=float,
        default=None,
        metavar="NM",
        help="refine the thickness of frames whose networks' sigma exceeds this, as the live "
        "agent does (default: the agent's, 2 nm; 0: every frame)",
    )
    parser.add_argument("--no-refinement", action="store_true", help="the networks' thickness only")
    add_reading_options(parser)
    parser.add_argument("--out", type=Path, required=True, metavar="P.npz", help="output .npz")
    add_json_option(parser)
    parser.set_defaults(func=run)


def _check_out(path: Path) -> Path:
    path = path.expanduser()
    if path.is_dir():
        raise CommandError(f"--out {path} is a directory, not a file")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise CommandError(f"--out {path}: {parent} is not an existing directory")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise CommandError(f"--out {path} is not writable")
    return path


def _load_sample(name: str):
    from sim_devices import SampleFileError, builtin_sample
    from stem_loop.session import load_sample

    if name in DEMO_NAMES:
        return builtin_sample()
    path = Path(name).expanduser()
    if path.suffix == ".npz" and not path.is_file():
        raise CommandError(f"--sample {name}: no such file")
    try:
        return load_sample(name)
    except (FileNotFoundError, SampleFileError, ValueError, KeyError, OSError) as err:
        raise CommandError(f"--sample {name}: {err}") from None


def errors_against_truth(values, std, truth, ood) -> tuple[dict[str, float], dict[str, float]]:
    """RMS error of each descriptor against the truth and the fraction of errors within the
    published 1 sigma, over the frames not flagged ``ood`` (NaN where all are)."""
    import numpy as np

    keep = ~ood
    rms, coverage = {}, {}
    for name, value in values.items():
        if not keep.any():
            rms[name] = coverage[name] = math.nan
            continue
        err = value[keep] - truth[name][keep]
        rms[name] = float(np.sqrt(np.mean(err**2)))
        coverage[name] = float(np.mean(np.abs(err) <= std[name][keep]))
    return rms, coverage


def predict_sample(
    sample: Any,
    positions: int,
    *,
    seed: int = 0,
    dose: float | None = None,
    refine_thickness_above: float | None = None,
    refinement: bool = True,
    mirror: bool | int | str = "auto",
    precision: str = "auto",
) -> dict[str, Any]:
    """Simulate frames at random positions of ``sample`` and predict their descriptors.

    Parameters
    ----------
    sample : sim_devices.Sample
        The specimen.
    positions : int
        Number of random probe positions (uniform over the field of view, seeded).
    seed : int
        Seed of the positions and the counting noise.
    dose : float, optional
        Electrons per frame (default: the microscope's default dose).
    refine_thickness_above : float, optional
        Networks' thickness sigma (nm) above which the thickness is refined by the fast model
        (default :data:`stem_loop.inference.refine.DOUBTFUL_STD_NM`).
    refinement : bool
        ``False``: the networks' thickness only.
    mirror : bool, int or "auto"
        Average mirror views of every frame (``Predictor(mirror=...)``: ``True`` or 4 views,
        2, ``False`` or 1 for one reading; ``"auto"``, the live agent's: 2 where the networks
        run in bfloat16, else 1).
    precision : {"auto", "float32", "bfloat16"}
        The networks' arithmetic (``Predictor(precision=...)``).

    Returns
    -------
    dict
        ``arrays`` (what ``P.npz`` holds) and ``summary`` (JSON-ready figures).
    """
    import dataclasses

    import numpy as np

    from sim_devices import Microscope
    from sim_devices.optics import Detector
    from stem_loop.inference import BeamConditions, Predictor
    from stem_loop.inference.refine import DOUBTFUL_STD_NM, ThicknessRefiner, refine_doubtful

    detector = Detector() if dose is None else dataclasses.replace(Detector(), dose=dose)
    microscope = Microscope(sample, detector=detector, forward="fast", seed=seed)
    conditions = BeamConditions.from_devices(
        sample.material, sample.zone_axis, microscope.beam, microscope.detector
    )
    predictor = Predictor(mirror=mirror, precision=precision)
    rng = np.random.default_rng(seed)
    width, height = microscope.field_of_view_nm
    x, y = rng.uniform(0, width, positions), rng.uniform(0, height, positions)
    started = time.perf_counter()
    frames = microscope.acquire(x, y)
    simulate_s = time.perf_counter() - started
    truth = microscope.descriptors_at(x, y)
    predictor.predict(frames[:1], conditions)  # warm-up: caches and lazy initialisation
    threshold = refine_thickness_above if refine_thickness_above is not None else DOUBTFUL_STD_NM
    refiner = ThicknessRefiner(conditions, contents="unstrained") if refinement else None
    started = time.perf_counter()
    network = predictor.predict(frames, conditions)
    predict_s = time.perf_counter() - started
    prediction, refined = network, np.zeros(positions, dtype=bool)
    if refiner is not None:
        prediction, refined = refine_doubtful(refiner, frames, network, threshold)
    refine_s = time.perf_counter() - started - predict_s
    rms, coverage = errors_against_truth(prediction.values, prediction.std, truth, prediction.ood)
    arrays: dict[str, np.ndarray] = {"x_nm": x, "y_nm": y}
    arrays.update(prediction.values)
    arrays.update({f"{k}_std": v for k, v in prediction.std.items()})
    arrays["ood"] = prediction.ood
    arrays["reason"] = np.asarray(prediction.reason, dtype=str)
    arrays["thickness_refined"] = refined
    arrays["thickness_network_nm"] = network.values["thickness_nm"]
    arrays.update({f"true_{k}": np.asarray(v, float) for k, v in truth.items()})
    summary = {
        "sample": getattr(sample, "name", None),
        "material": sample.material,
        "zone_axis": sample.zone_axis,
        "positions": positions,
        "seed": seed,
        "mirror": mirror,
        "mirror_views": len(predictor.views),
        "precision": predictor.precision,
        "dose": float(microscope.detector.dose),
        "conditions": conditions.as_dict(),
        "simulate_s": round(simulate_s, 3),
        "predict_s": round(predict_s, 3),
        "frames_per_s": round(positions / predict_s, 1) if predict_s > 0 else math.inf,
        "refine_thickness_above": threshold if refiner is not None else None,
        "thickness_refined": int(refined.sum()),
        "refine_s": round(refine_s, 3),
        "ood": int(prediction.ood.sum()),
        "rms_error": rms,
        "coverage_1sigma": coverage,
    }
    return {"arrays": arrays, "summary": summary}


def _text(summary: dict[str, Any], out: Path) -> str:
    lines = [
        f"{summary['positions']} frames of {summary['material']} [{summary['zone_axis']}] at "
        f"{summary['dose']:.3g} e-/frame: simulated in {summary['simulate_s']:.2f} s, "
        f"predicted in {summary['predict_s']:.2f} s ({summary['frames_per_s']:.0f} frames/s)",
        f"out of distribution: {summary['ood']} of {summary['positions']}",
        (
            "thickness: the networks' reading (no refinement)"
            if summary["refine_thickness_above"] is None
            else f"thickness refined by the fast model for {summary['thickness_refined']} of "
            f"{summary['positions']} frames (networks' sigma > "
            f"{summary['refine_thickness_above']:g} nm) in {summary['refine_s']:.2f} s"
        ),
        f"{'descriptor':<14}{'rms error':>12}{'within 1 sigma':>16}",
    ]
    for name, rms in summary["rms_error"].items():
        scale, unit = (100.0, "%") if name in ("exx", "eyy", "exy") else (1.0, "")
        unit = unit or name.rsplit("_", 1)[-1]
        if math.isnan(rms):
            lines.append(f"{name:<14}{'n/a':>9} {unit:<3}{'n/a':>15}  (every frame flagged)")
            continue
        lines.append(
            f"{name:<14}{rms * scale:>9.3g} {unit:<3}{summary['coverage_1sigma'][name]:>15.0%}"
        )
    lines.append(f"wrote {out}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Simulate, predict, write ``--out`` and print the summary."""
    import numpy as np

    if args.positions < 1:
        raise CommandError(f"--positions must be at least 1, got {args.positions}")
    if args.dose is not None and not (args.dose > 0 and math.isfinite(args.dose)):
        raise CommandError(f"--dose must be positive (electrons per frame), got {args.dose}")
    above = args.refine_thickness_above
    if above is not None and not (above >= 0 and math.isfinite(above)):
        raise CommandError(f"--refine-thickness-above must be >= 0 nm, got {above}")
    out = _check_out(args.out)
    sample = _load_sample(args.sample)
    try:
        result = predict_sample(
            sample,
            args.positions,
            seed=args.seed,
            dose=args.dose,
            refine_thickness_above=above,
            refinement=not args.no_refinement,
            mirror=args.mirror,
            precision=args.precision,
        )
    except (FileNotFoundError, ValueError) as err:  # no weights; a material the network lacks
        raise CommandError(str(err)) from None
    try:
        with out.open("wb") as file:
            np.savez(file, **result["arrays"])
    except OSError as err:
        raise CommandError(f"cannot write {out}: {err}") from None
    summary = {**result["summary"], "out": str(out)}
    emit(summary, _text(summary, out), as_json=args.json)
    return 0
