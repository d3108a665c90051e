"""``stem-loop train``: regenerate the training data and retrain the descriptor network.

Every stage resumes where it stopped: beam libraries are cached, training shards are files,
training checkpoints after each epoch, and held-out runs are kept one file per run.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from ._common import CommandError, add_json_option, emit

#: ``--contents`` choices.
CONTENTS = ("unstrained", "bloch", "multislice", "nodes")


def frame_options(args: argparse.Namespace, ranges, content_device: str) -> dict:
    """What training and calibration shards are generated with (``args``: frames per shard,
    seed, workers), for :func:`~stem_loop.inference.dataset.generate_shards`."""
    return dict(
        frames_per_shard=args.frames_per_shard,
        seed=args.seed,
        workers=args.workers,
        progress=True,
        ranges=ranges,
        content_device=content_device,
    )


def _default_dir() -> Path:
    from sim_devices.cbed_library import cache_dir

    return cache_dir() / "training"


def _start_from(path: Path | None) -> tuple[Path | None, int]:
    """The model directory ``--start-from`` names and its number of members (0 without one)."""
    if path is None:
        return None, 0
    from stem_loop.inference.predictor import SHIPPED_WEIGHTS
    from stem_loop.inference.training import load_model

    path = SHIPPED_WEIGHTS if str(path) == "shipped" else path
    try:
        model, _ = load_model(path)
    except FileNotFoundError as err:
        raise CommandError(f"--start-from: {err}") from None
    return path, len(model.members)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand."""
    parser = subparsers.add_parser(
        "train",
        help="regenerate training data and retrain the descriptor network",
        description="Build the beam libraries (abTEM), generate fast-model training frames, "
        "train the network (resumable), evaluate it on the exact held-out set and, with "
        "--install, replace the shipped weights. Re-running resumes every stage.",
    )
    parser.add_argument(
        "--dir", type=Path, default=None, help="work directory (default: $STEM_LOOP_CACHE/training)"
    )
    parser.add_argument(
        "--shards", type=int, default=192, help="training shards (default: 192, the shipped model)"
    )
    parser.add_argument(
        "--frames-per-shard", type=int, default=2048, help="frames per shard (default: 2048)"
    )
    parser.add_argument("--epochs", type=int, default=14, help="training epochs (default: 14)")
    parser.add_argument("--seed", type=int, default=0, help="data and training seed")
    parser.add_argument(
        "--members",
        type=int,
        default=3,
        help="networks in the ensemble, trained from seeds SEED, SEED+1, ... (default: 3)",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="where the networks train (and, with --contents multislice, the content cells are "
        "computed): cpu (default) or cuda[:N] on a GPU machine",
    )
    parser.add_argument(
        "--contents",
        choices=CONTENTS,
        default="unstrained",
        help="disk contents of the training frames: the library's unstrained ones (default, "
        "the recipe that fits 2 CPU cores), or those of each block's content strain from Bloch "
        "waves, from the strained cell's multislice (the shipped model; runs on --device: "
        "minutes on a GPU, hours on 2 CPU cores) or from that multislice at 27 node strains "
        "per library, interpolated (about 4 minutes per library on 2 CPU cores); the "
        "calibration frames use the same engine (Bloch for unstrained)",
    )
    parser.add_argument(
        "--content-step",
        type=float,
        default=0.005,
        help="grid step of the content strain with --contents bloch|multislice|nodes "
        "(default: 0.005)",
    )
    parser.add_argument(
        "--point-spread",
        type=float,
        nargs=2,
        default=(0.0, 0.0),
        metavar=("LOW", "HIGH"),
        help="Gaussian detector point-spread in pixels, drawn per block in [LOW, HIGH] and "
        "applied before the Poisson counts, in training and calibration frames; the networks "
        "then take it as an input (BeamConditions.point_spread_px) (default: 0 0)",
    )
    parser.add_argument(
        "--start-from",
        type=Path,
        default=None,
        help="fine-tune: a trained model directory (or 'shipped'); member i starts from its "
        "member i (cycling) instead of random weights",
    )
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=None,
        help="peak of the one-cycle learning rate (default: 2e-3; lower to fine-tune)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes writing training shards side by side (default: 1; on a machine with "
        "many cores, about one per core)",
    )
    parser.add_argument(
        "--calibration-shards",
        type=int,
        default=8,
        help="shards of strain-dependent-content frames the ensemble's sigmas are calibrated "
        "on (default: 8, 16,384 frames; 0 calibrates on held-back training frames)",
    )
    parser.add_argument(
        "--heldout",
        action="store_true",
        help="also recompute the exact held-out set (12 abTEM runs on a 19.2 nm block, one "
        "per core at a time; about 70 minutes on 2 cores) and the exact validation set (12 "
        "runs, about 70 minutes)",
    )
    parser.add_argument(
        "--no-exact-calibration",
        action="store_true",
        help="keep the sigmas calibrated on fast-model frames; by default they are widened "
        "where the exact validation set shows larger errors (seconds)",
    )
    parser.add_argument(
        "--install", action="store_true", help="copy the trained weights into the package"
    )
    parser.add_argument(
        "--no-eval", action="store_true", help="skip the evaluation on the held-out set"
    )
    add_json_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the stages and print a summary."""
    from sim_devices.strain_contents import CELL_ENGINES
    from stem_loop.inference.calibration import generate_calibration
    from stem_loop.inference.dataset import TrainingRanges, generate_shards
    from stem_loop.inference.exact_calibration import (
        SHIPPED_VALIDATION,
        blurred_runs,
        calibrate_on_exact,
        plan_validation,
    )
    from stem_loop.inference.heldout import SHIPPED_HELDOUT, build_heldout
    from stem_loop.inference.predictor import SHIPPED_WEIGHTS, Predictor, inference_device
    from stem_loop.inference.training import (
        META_FILE,
        WEIGHTS_FILE,
        TrainingSettings,
        build_ensemble,
        train,
    )

    if (
        args.shards < 1
        or args.frames_per_shard < 256
        or args.epochs < 1
        or args.calibration_shards < 0
        or args.members < 1
        or args.workers < 1
        or not 0 < args.content_step <= 0.02
        or (args.learning_rate is not None and not 0 < args.learning_rate <= 0.1)
    ):
        raise CommandError(
            "--shards, --epochs, --members and --workers must be >= 1, --frames-per-shard "
            ">= 256, --calibration-shards >= 0, 0 < --content-step <= 0.02, "
            "0 < --learning-rate <= 0.1"
        )
    start_from, start_members = _start_from(args.start_from)
    try:
        device = inference_device(args.device)
    except ValueError as err:
        raise CommandError(f"--device: {err}") from None
    with_contents = args.contents != "unstrained"
    try:
        ranges = TrainingRanges(
            strain_contents=with_contents,
            content_engine=args.contents if with_contents else "bloch",
            content_step=args.content_step,
            point_spread_px=tuple(args.point_spread),
        )
    except ValueError as err:
        raise CommandError(f"--point-spread: {err}") from None
    optimiser = {} if args.learning_rate is None else dict(learning_rate=args.learning_rate)
    # the multislice content engines run where the networks train; Bloch waves on the CPU
    content_device = str(device) if args.contents in CELL_ENGINES else "cpu"
    work = args.dir or _default_dir()
    start = time.perf_counter()
    timings = {}
    print(f"training data in {work / 'shards'}", flush=True)
    frames = frame_options(args, ranges, content_device)
    shards = generate_shards(work / "shards", args.shards, **frames)
    timings["data_s"] = time.perf_counter() - start
    model_dir = work / "model"
    member_dirs = []
    for i in range(args.members):
        settings = TrainingSettings(
            epochs=args.epochs,
            seed=args.seed + i,
            point_spread_input=ranges.point_spread_px[1] > 0.0,
            **optimiser,
        )
        init = dict(start_from=start_from, start_member=i % start_members) if start_from else {}
        if args.members == 1:
            meta = train(shards, model_dir, settings, device=device, progress=True, **init)
            break
        print(f"ensemble member {i + 1} of {args.members}", flush=True)
        member_dirs.append(model_dir / f"member{i}")
        train(shards, member_dirs[-1], settings, device=device, progress=True, **init)
    timings["train_s"] = time.perf_counter() - start - timings["data_s"]
    if args.members > 1:
        calibration = None
        if args.calibration_shards:
            print(f"calibration frames in {work / 'calibration'}", flush=True)
            calibration = generate_calibration(
                work / "calibration", args.calibration_shards, **frames
            )
        meta = build_ensemble(member_dirs, shards, model_dir, calibration_paths=calibration)
        timings["calibration_s"] = (
            time.perf_counter() - start - timings["data_s"] - timings["train_s"]
        )
    heldout_path, validation_path = SHIPPED_HELDOUT, SHIPPED_VALIDATION
    if args.heldout:
        heldout_path = build_heldout(work / "heldout_exact.npz", progress=True)
        validation_path = build_heldout(
            work / "validation_exact.npz", plan_validation(), progress=True
        )
    exact = None
    if not args.no_exact_calibration and validation_path.exists():
        began = time.perf_counter()
        exact = calibrate_on_exact(
            model_dir, validation_path, point_spread_px=ranges.point_spread_px, seed=args.seed
        )
        timings["exact_calibration_s"] = time.perf_counter() - began
    result = dict(
        model_dir=str(model_dir),
        frames=len(shards) * args.frames_per_shard,
        members=args.members,
        device=str(device),
        validation_rms=meta["validation_rms"],
        **timings,
    )
    text = f"trained on {result['frames']} frames; model in {model_dir}"
    if exact is not None:
        result["sigma_exact_factors"] = exact["factors"]
        widened = zip(exact["outputs"], exact["factors"], strict=True)
        text += "\nsigmas widened on the exact validation set by " + ", ".join(
            f"{name} {factor:.2f}" for name, factor in widened
        )
    if not args.no_eval and heldout_path.exists():
        from stem_loop.inference.evaluation import load_heldout, report

        predictor = Predictor(model_dir, device=device)
        # blurred like the detector the model was trained for, its sigma stated to the model
        heldout = blurred_runs(
            load_heldout(heldout_path),
            ranges.point_spread_px,
            args.seed + 1,
            stated=predictor.takes_point_spread,
        )
        rep = report(predictor, heldout=heldout)
        result["heldout"] = rep["summary"]
        text += "\n" + rep["text"]
    if args.install:
        SHIPPED_WEIGHTS.mkdir(parents=True, exist_ok=True)
        for name in (WEIGHTS_FILE, META_FILE):
            shutil.copy2(model_dir / name, SHIPPED_WEIGHTS / name)
        if args.heldout:
            shutil.copy2(heldout_path, SHIPPED_HELDOUT)
            shutil.copy2(validation_path, SHIPPED_VALIDATION)
        text += f"\ninstalled into {SHIPPED_WEIGHTS}"
    result["wall_s"] = time.perf_counter() - start
    emit(result, text, as_json=args.json)
    return 0
