"""Inference throughput (frames/s for 128 x 128 frames) and the accuracy report.

Run ``stem-loop bench inference --help``. Figures printed, on this machine's CPU cores:

* ``front_end``: the physics front end alone (lattice registration, disk crops);
* ``network``: the trained network alone on pre-computed inputs;
* ``end_to_end``: frames read from an HDF5 file (uint16, one chunk per frame as the detector
  writes them) + front end + network, in batches, i.e. ``Predictor.predict`` on what was read;
* ``agent``: the same file through :class:`~stem_loop.agents.inference.InferenceAgent`
  (StreamResource/StreamDatum documents in, ``descriptors`` event pages out).

With a CUDA device (never required) the network, the front end (if it can run there) and end
to end (frames copied to the device; the front end there, else on the CPU) are measured there
as well, in batches of up to 4096 frames.

The frames are simulated with the fast model on the built-in sample at the default dose (a few
hundred distinct frames, repeated). Then, unless ``--no-accuracy``, the accuracy report of the
shipped network on the held-out exact-physics set (``stem_loop.inference.evaluation.report``),
when that module exists.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

#: Distinct simulated frames; longer runs repeat them.
MAX_DISTINCT_FRAMES = 256
#: Dataset path and chunking of the detector's HDF5 files.
DATASET = "/entry/data/data"
#: Frames per batch on a GPU (small batches leave it idle between kernel launches).
GPU_BATCH = 4096
#: Read by the OpenMP runtime when torch loads.
OMP_ENV = "OMP_WAIT_POLICY"


def simulate_frames(n: int, seed: int = 0) -> tuple[np.ndarray, Any]:
    """``n`` uint16 frames of the built-in sample (fast model, default dose) and their conditions.

    Parameters
    ----------
    n : int
        Frames wanted; at most :data:`MAX_DISTINCT_FRAMES` are distinct, the rest repeat.
    seed : int
        Positions and noise seed.

    Returns
    -------
    frames : ndarray
        ``(n, 128, 128)`` uint16 counts.
    conditions : BeamConditions
    """
    from sim_devices import Microscope, builtin_sample
    from stem_loop.inference import BeamConditions

    microscope = Microscope(builtin_sample(), forward="fast", seed=seed)
    rng = np.random.default_rng(seed)
    width, height = microscope.field_of_view_nm
    k = min(n, MAX_DISTINCT_FRAMES)
    distinct = microscope.acquire(rng.uniform(0, width, k), rng.uniform(0, height, k))
    frames = distinct[np.arange(n) % k]
    sample = microscope.sample
    conditions = BeamConditions.from_devices(
        sample.material, sample.zone_axis, microscope.beam, microscope.detector
    )
    return frames, conditions


def write_frames(path: Path, frames: np.ndarray) -> Path:
    """Write frames as the detector does: ``/entry/data/data``, one chunk per frame, SWMR."""
    import h5py

    with h5py.File(path, "w", libver="latest") as file:
        file.create_dataset(
            DATASET,
            data=frames,
            chunks=(1, *frames.shape[1:]),
            maxshape=(None, *frames.shape[1:]),
        )
    return path


def _rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1) if seconds > 0 else float("inf")


#: CPU seconds (all threads of this process) of the latest `_best_of`'s fastest call.
_LAST_CPU_S: list[float] = [0.0]


def _best_of(repeats: int, function: Callable[[], Any]) -> float:
    """Shortest wall time of ``repeats`` calls (the least disturbed by other jobs).

    The process CPU time of that call is left in ``_LAST_CPU_S[0]``.
    """
    best = float("inf")
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        function()
        wall = time.perf_counter() - start
        if wall < best:
            best, _LAST_CPU_S[0] = wall, time.process_time() - cpu
    return best


def _batches(n: int, batch: int) -> list[slice]:
    return [slice(lo, min(lo + batch, n)) for lo in range(0, n, batch)]


def _cpu_figures(
    predictor, frames, conditions, path: Path, batch: int, repeats: int, workers: int = 1
) -> dict:
    import h5py
    import torch

    n = len(frames)
    per_cpu_s: dict[str, float] = {}

    def timed(name: str, function: Callable[[], Any]) -> float:
        wall = _best_of(repeats, function)
        per_cpu_s[name] = _rate(n, _LAST_CPU_S[0])
        return wall

    pre = predictor.preprocessor(conditions)
    pre(frames[:8])  # warm-up
    front_s = timed("front_end", lambda: [pre(frames[s]) for s in _batches(n, batch)])
    inputs = [pre(frames[s]) for s in _batches(n, batch)]
    model = predictor.model

    def network() -> None:
        with torch.no_grad():
            for x in inputs:
                model(x.crops, x.side)

    network_s = timed("network", network)

    def end_to_end() -> None:
        with h5py.File(path, "r", swmr=True, libver="latest") as file:
            dataset = file[DATASET]
            for s in _batches(n, batch):
                predictor.predict(dataset[s], conditions)

    end_s = timed("end_to_end", end_to_end)

    def read_only() -> None:
        with h5py.File(path, "r", swmr=True, libver="latest") as file:
            dataset = file[DATASET]
            for s in _batches(n, batch):
                dataset[s]

    read_s = timed("read_hdf5", read_only)
    agent_s = timed("agent", lambda: _through_agent(predictor, conditions, path, n, batch, workers))
    return {
        "read_hdf5": _rate(n, read_s),
        "front_end": _rate(n, front_s),
        "network": _rate(n, network_s),
        "end_to_end": _rate(n, end_s),
        "agent": _rate(n, agent_s),
        "per_cpu_second": per_cpu_s,
    }


def _through_agent(predictor, conditions, path: Path, n: int, batch: int, workers: int = 1) -> None:
    """Feed the file to an InferenceAgent as a run's documents (no positions).

    One worker: inline, in the callback. More: on the agent's threads (the stop waits).
    """
    from event_model import compose_run

    from stem_loop.agents.inference import InferenceAgent

    pages: list[int] = []

    def count(name: str, doc: dict) -> None:
        if name == "event_page":
            pages.append(len(doc["seq_num"]))

    agent = InferenceAgent(
        predictor,
        conditions,
        downstream=[count],
        batch_size=batch,
        background=workers > 1,
        workers=workers,
        max_latency_s=0.0,
    )
    run = compose_run()
    agent("start", run.start_doc)
    key = {
        "source": "bench",
        "shape": [conditions.pixels, conditions.pixels],
        "dtype": "array",
        "dtype_numpy": "<u2",
        "external": "STREAM:",
    }
    desc = run.compose_descriptor(name="primary", data_keys={"det-image": key})
    agent("descriptor", desc.descriptor_doc)
    resource = run.compose_stream_resource(
        mimetype="application/x-hdf5",
        uri=f"file://localhost{path.resolve()}",
        data_key="det-image",
        parameters={"dataset": DATASET, "chunk_shape": [1, conditions.pixels, conditions.pixels]},
    )
    agent("stream_resource", resource.stream_resource_doc)
    for s in _batches(n, batch):
        datum = resource.compose_stream_datum(
            indices={"start": s.start, "stop": s.stop},
            seq_nums={"start": s.start + 1, "stop": s.stop + 1},
            descriptor=desc.descriptor_doc,
        )
        agent("stream_datum", datum)
    agent("stop", run.compose_stop())
    agent.close()
    if sum(pages) != n:
        raise RuntimeError(f"the agent published {sum(pages)} of {n} frames")


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device_figures(
    predictor, frames, conditions, batch: int, repeats: int, device: str = "cuda"
) -> dict:
    """Network, front end and end to end on ``device`` (where the code allows).

    ``network``: the network on inputs already on the device. ``front_end``: the front end on
    frames already on the device (None, with ``front_end_error``, if it cannot run there).
    ``end_to_end``: frames copied to the device, front end there (else on the CPU), network
    there, results back on the CPU.
    """
    import torch

    device = torch.device(device)
    n = len(frames)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)
    out: dict[str, Any] = {"device": name, "batch": batch}
    model = predictor.model.to(device)
    pre = predictor.preprocessor(conditions)
    try:
        cpu_inputs = [pre(frames[s]) for s in _batches(n, batch)]
        inputs = [(x.crops.to(device), x.side.to(device)) for x in cpu_inputs]

        def network() -> None:
            with torch.no_grad():
                for crops, side in inputs:
                    model(crops, side)
            _sync(device)

        network()  # warm-up
        out["network"] = _rate(n, _best_of(repeats, network))
        front_on_device = True
        try:
            on_device = torch.as_tensor(frames.astype(np.int32)).to(device)
            pre(on_device[:8])

            def front_end() -> None:
                for s in _batches(n, batch):
                    pre(on_device[s])
                _sync(device)

            out["front_end"] = _rate(n, _best_of(repeats, front_end))
        except Exception as err:  # the front end keeps some tensors on the CPU
            front_on_device = False
            out["front_end"] = None
            out["front_end_error"] = f"{type(err).__name__}: {err}"

        def end_to_end() -> None:
            with torch.no_grad():
                for s in _batches(n, batch):
                    chunk = torch.as_tensor(frames[s].astype(np.int32))
                    if front_on_device:
                        x = pre(chunk.to(device))
                        crops, side = x.crops, x.side
                    else:
                        x = pre(chunk)
                        crops, side = x.crops.to(device), x.side.to(device)
                    mean, log_var = model(crops, side)
                    mean.cpu(), log_var.cpu()

        out["end_to_end"] = _rate(n, _best_of(repeats, end_to_end))
    finally:
        predictor.model.to("cpu")
    return out


def _accuracy(predictor, doses: tuple[float, ...] | None) -> dict | None:
    """The held-out accuracy report (``stem_loop.inference.evaluation.report``), if present."""
    try:
        evaluation = importlib.import_module("stem_loop.inference.evaluation")
    except ImportError:
        return None
    kwargs = {} if doses is None else {"doses": doses}
    return evaluation.report(predictor, **kwargs)


def run_inference_bench(
    frames: int = 2048,
    *,
    threads: int | None = None,
    batch: int = 256,
    repeats: int = 2,
    workers: int = 1,
    gpu: bool = True,
    accuracy: bool = True,
    doses: tuple[float, ...] | None = None,
    seed: int = 0,
    verbose: bool = True,
) -> dict[str, Any]:
    """Measure inference throughput (and report accuracy); return the figures as a dict.

    Parameters
    ----------
    frames : int
        Frames per measurement.
    threads : int, optional
        Torch CPU threads (default: torch's choice, the machine's cores).
    batch : int
        Frames per batch (read, front end, network).
    repeats : int
        Each figure is the best of this many runs.
    workers : int
        Batches the agent infers at once (its ``workers``).
    gpu : bool
        Also measure on a CUDA device if one is available.
    accuracy : bool
        Append the held-out accuracy report (``stem_loop.inference.evaluation.report``).
    doses : tuple of float, optional
        Doses of the accuracy report (default: the report's own).
    seed : int
        Seed of the simulated frames.
    verbose : bool
        Print the figures.

    Returns
    -------
    dict
        ``cpu`` (frames/s: ``read_hdf5``, ``front_end``, ``network``, ``end_to_end``,
        ``agent``; and the same per CPU-second of this process in ``per_cpu_second``),
        ``gpu`` (or None), ``accuracy`` (the report's ``rows``, or None), and the
        settings and machine load they were measured under.
    """
    import torch

    from stem_loop.inference import Predictor

    if frames < 1:
        raise ValueError(f"frames must be at least 1, got {frames}")
    if threads is not None:
        torch.set_num_threads(threads)
    predictor = Predictor()
    load_before = os.getloadavg()
    data, conditions = simulate_frames(frames, seed)
    with tempfile.TemporaryDirectory(prefix="stem-loop-bench-") as tmp:
        path = write_frames(Path(tmp) / "frames.h5", data)
        cpu = _cpu_figures(predictor, data, conditions, path, batch, repeats, workers)
    gpu_figures = None
    if gpu and torch.cuda.is_available():
        gpu_batch = max(batch, min(frames, GPU_BATCH))
        gpu_figures = _device_figures(predictor, data, conditions, gpu_batch, repeats, "cuda")
    result: dict[str, Any] = {
        "frames": frames,
        "frame_shape": list(data.shape[1:]),
        "batch": batch,
        "agent_workers": workers,
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get(OMP_ENV, "").lower() or "default (active)",
        "cpu_count": os.cpu_count(),
        "load_average": [round(v, 2) for v in (*load_before, *os.getloadavg())],
        "cpu": cpu,
        "gpu": gpu_figures,
        "accuracy": None,
    }
    if verbose:
        print(_text(result), flush=True)
    if accuracy:
        report = _accuracy(predictor, doses)
        if report is not None:
            result["accuracy"] = report["rows"]
            if verbose:
                print(report["text"], flush=True)
        elif verbose:
            print("accuracy: stem_loop.inference.evaluation is not available", flush=True)
    return result


def _text(result: dict[str, Any]) -> str:
    load = result["load_average"]
    lines = [
        f"inference throughput, {result['frames']} frames of "
        f"{result['frame_shape'][0]}x{result['frame_shape'][1]}, batch {result['batch']}, "
        f"{result['threads']} torch threads on {result['cpu_count']} cores, "
        f"OpenMP wait policy {result['omp_wait_policy']} "
        f"(load average {load[0]:.1f} before, {load[3]:.1f} after)",
    ]
    names = {
        "read_hdf5": "read HDF5 only",
        "front_end": "front end alone",
        "network": "network alone",
        "end_to_end": "end to end (read + front end + network)",
        "agent": f"inference agent, {result['agent_workers']} worker(s) (documents in, pages out)",
    }
    lines.append(f"  {'':<61}{'frames/s':>10}{'frames/CPU-s':>14}")
    per_cpu = result["cpu"]["per_cpu_second"]
    for key, label in names.items():
        lines.append(f"  CPU  {label:<56}{result['cpu'][key]:>10.0f}{per_cpu[key]:>14.0f}")
    lines.append(
        "  (frames/CPU-s: frames per second of this process's CPU time, all threads; "
        "less sensitive to other jobs' load than wall-clock frames/s)"
    )
    gpu = result["gpu"]
    if gpu:
        lines.append(f"  GPU: {gpu['device']}, batch {gpu['batch']}")
        for key in ("front_end", "network", "end_to_end"):
            value = gpu.get(key)
            shown = f"{value:>10.0f}" if value else f"  n/a ({gpu.get(key + '_error')})"
            lines.append(f"  GPU  {names[key]:<56}{shown}")
    else:
        lines.append("  GPU: no CUDA device")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry (``stem-loop bench inference``)."""
    parser = argparse.ArgumentParser(
        prog="stem-loop bench inference",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--frames", type=int, default=2048, help="frames per measurement")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--batch", type=int, default=256, help="frames per batch")
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs")
    parser.add_argument(
        "--workers", type=int, default=1, help="batches the agent infers at once (threads)"
    )
    parser.add_argument("--no-gpu", action="store_true", help="skip the CUDA device")
    parser.add_argument(
        "--no-accuracy", action="store_true", help="skip the held-out accuracy report"
    )
    parser.add_argument(
        "--doses", type=str, default=None, help="comma-separated doses of the accuracy report"
    )
    parser.add_argument(
        "--omp-wait-policy",
        choices=("active", "passive"),
        default=None,
        help="OpenMP threads spin (active) or sleep (passive) while waiting; passive is much "
        "faster on a machine busy with other jobs (default: $OMP_WAIT_POLICY, else active)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the result as JSON (last line)")
    args = parser.parse_args(argv)
    if args.omp_wait_policy is not None:
        if "torch" in sys.modules and os.environ.get(OMP_ENV, "").lower() != args.omp_wait_policy:
            parser.error("--omp-wait-policy must be set before torch is imported; use the env")
        os.environ[OMP_ENV] = args.omp_wait_policy.upper()
    for name in ("frames", "batch", "repeats", "threads", "workers"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be at least 1")
    doses = None
    if args.doses:
        try:
            doses = tuple(float(d) for d in args.doses.split(","))
        except ValueError:
            parser.error(f"--doses must be comma-separated numbers, got {args.doses!r}")
    result = run_inference_bench(
        args.frames,
        threads=args.threads,
        batch=args.batch,
        repeats=args.repeats,
        workers=args.workers,
        gpu=not args.no_gpu,
        accuracy=not args.no_accuracy,
        doses=doses,
        seed=args.seed,
    )
    if args.json:
        print(json.dumps(result, default=float), flush=True)


if __name__ == "__main__":
    main()
