"""Inference throughput (frames/s for 128 x 128 frames) and the accuracy report.

Run ``stem-loop bench inference --help``. Figures printed, on this machine's CPU cores:

* ``front_end``: the physics front end alone (lattice registration, disk crops);
* ``network``: the trained network alone on pre-computed inputs;
* ``end_to_end``: frames read from an HDF5 file (uint16, chunked as the detector writes them)
  + front end + network, in batches, i.e. ``Predictor.predict`` on what was read;
* ``agent``: the same file through :class:`~stem_loop.agents.inference.InferenceAgent`
  (StreamResource/StreamDatum documents in, ``descriptors`` event pages out), with the live
  thickness refinement of the frames whose networks' sigma exceeds
  ``--refine-thickness-above`` (the fraction refined is printed);
* ``refiner``: the thickness refiner alone (:class:`~stem_loop.inference.refine.ThicknessRefiner`,
  unstrained contents) on every frame, what refining all of them would cost.

With a CUDA device (never required; ``--device``) a :class:`~stem_loop.inference.Predictor` on
that device is measured as well, in batches of ``--device-batch`` frames: the front end and the
network on data already there, host memory to descriptors, the HDF5 file end to end (one
reader thread a batch ahead) and the agent. ``--no-cpu`` skips the CPU figures.

The frames are simulated with the fast model on the built-in sample at the default dose (a few
hundred distinct frames, repeated). ``--save-frames F.npz`` keeps them with their beam
conditions and ``--frames-file F.npz`` measures on them instead, e.g. on a GPU machine without
the beam libraries (or on frames of a real detector saved the same way). Then, unless
``--no-accuracy``, the accuracy report of the shipped network on the held-out exact-physics
set (``stem_loop.inference.evaluation.report``), when that module exists.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from stem_loop.cli._common import add_reading_options

#: Distinct simulated frames; longer runs repeat them.
MAX_DISTINCT_FRAMES = 256
#: Dataset path and chunking of the detector's HDF5 files.
DATASET = "/entry/data/data"
#: Frames per HDF5 chunk, as the detector writes them (``stem_loop.devices.FILE_CHUNK_FRAMES``,
#: not imported: the bench runs on machines without the Ophyd stack).
FILE_CHUNK_FRAMES = 16
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
    """Write frames as the detector does: ``/entry/data/data``, its chunks, SWMR."""
    import h5py

    with h5py.File(path, "w", libver="latest") as file:
        file.create_dataset(
            DATASET,
            data=frames,
            chunks=(min(FILE_CHUNK_FRAMES, len(frames)), *frames.shape[1:]),
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
    predictor,
    frames,
    conditions,
    path: Path,
    batch: int,
    repeats: int,
    workers: int = 1,
    refine_above: float | None = None,
) -> dict:
    import h5py

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
    network_s = timed("network", lambda: _network_pass(predictor, inputs))

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
    refined: list[int] = []
    agent_s = timed(
        "agent",
        lambda: refined.append(
            _through_agent(predictor, conditions, path, n, batch, workers, refine_above)
        ),
    )
    refiner_s, refiner_n = _refiner_alone(predictor, frames, conditions, repeats)
    per_cpu_s["refiner"] = _rate(refiner_n, _LAST_CPU_S[0]) if refiner_n else float("nan")
    return {
        "read_hdf5": _rate(n, read_s),
        "front_end": _rate(n, front_s),
        "network": _rate(n, network_s),
        "end_to_end": _rate(n, end_s),
        "agent": _rate(n, agent_s),
        "agent_thickness_refined_fraction": refined[-1] / n,
        "refiner": _rate(refiner_n, refiner_s) if refiner_n else float("nan"),
        "per_cpu_second": per_cpu_s,
    }


#: Frames the refiner-alone figure refines (it runs at tens of frames/s on a CPU).
REFINER_FRAMES = 64


def _refiner_alone(predictor, frames, conditions, repeats: int) -> tuple[float, int]:
    """Best wall time to refine the thickness of the first frames, and how many (none where
    the conditions' beam library is not built: building it takes minutes)."""
    from stem_loop.inference.refine import live_refiner

    try:
        refiner = live_refiner(conditions)  # the agent's
    except FileNotFoundError:
        return float("nan"), 0
    part = frames[:REFINER_FRAMES]
    reading = predictor.predict(part, conditions)
    refiner.refine(part[:1], predictor.predict(part[:1], conditions))  # warm-up
    return _best_of(repeats, lambda: refiner.refine(part, reading)), len(part)


def _through_agent(
    predictor,
    conditions,
    path: Path,
    n: int,
    batch: int,
    workers: int = 1,
    refine_above: float | None = None,
) -> int:
    """Feed the file to an InferenceAgent as a run's documents (no positions); return how many
    frames had their thickness refined.

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
        refine_thickness_above=refine_above,
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
    return agent.frames_refined


def _network_pass(predictor, inputs) -> None:
    """The network alone (in the predictor's precision) on pre-computed front-end outputs
    (``NetworkInput`` list)."""
    import torch

    with torch.no_grad():
        for x in inputs:
            predictor.network(x.crops, x.side)


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _read_ahead_and_predict(predictor, conditions, path: Path, n: int, batch: int) -> None:
    """Predict the file's frames batch by batch while a thread reads the next batch."""
    import h5py

    slices = _batches(n, batch)
    with (
        h5py.File(path, "r", swmr=True, libver="latest") as file,
        ThreadPoolExecutor(1) as reader,
    ):
        dataset = file[DATASET]
        pending = reader.submit(dataset.__getitem__, slices[0])
        for k in range(len(slices)):
            chunk = pending.result()
            if k + 1 < len(slices):
                pending = reader.submit(dataset.__getitem__, slices[k + 1])
            predictor.predict(chunk, conditions)


def _device_figures(
    frames: np.ndarray,
    conditions,
    batch: int,
    repeats: int,
    device: str = "cuda",
    path: Path | None = None,
    workers: int = 1,
    mirror: bool | int | str = "auto",
    precision: str = "auto",
) -> dict:
    """Front end, network and end to end with a :class:`Predictor` on ``device``.

    ``front_end``: the front end on frames already on the device; ``network``: the network on
    inputs already there; ``from_memory``: uint16 frames in host memory to descriptors back in
    host memory (``Predictor.predict``: copy there, front end, network, copy back, OOD
    checks). With ``path`` (the frames' HDF5 file) also ``end_to_end`` (read the file, one
    reader thread a batch ahead, and predict) and ``agent`` (the inference agent with that
    predictor).
    """
    import torch

    from stem_loop.inference import Predictor

    predictor = Predictor(batch=batch, device=device, mirror=mirror, precision=precision)
    device = predictor.device
    n = len(frames)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)
    out: dict[str, Any] = {
        "device": name,
        "batch": batch,
        "precision": predictor.precision,
        "mirror_views": len(predictor.views),
    }
    pre = predictor.preprocessor(conditions)
    on_device = torch.from_numpy(np.ascontiguousarray(frames)).to(device)
    inputs = [pre(on_device[s]) for s in _batches(n, batch)]

    def network() -> None:
        _network_pass(predictor, inputs)
        _sync(device)

    def front_end() -> None:
        for s in _batches(n, batch):
            pre(on_device[s])
        _sync(device)

    def from_memory() -> None:
        for s in _batches(n, batch):
            predictor.predict(frames[s], conditions)

    stages = {"network": network, "front_end": front_end, "from_memory": from_memory}
    if path is not None:
        stages["end_to_end"] = lambda: _read_ahead_and_predict(
            predictor, conditions, path, n, batch
        )
        # without the live thickness refinement: it runs on the CPU (see the CPU figures)
        stages["agent"] = lambda: _through_agent(predictor, conditions, path, n, batch, workers)
    for stage, function in stages.items():
        function()  # warm-up: kernels, cuDNN plans, allocator
        out[stage] = _rate(n, _best_of(repeats, function))
    if device.type == "cuda":
        out["peak_memory_gb"] = round(torch.cuda.max_memory_allocated(device) / 1e9, 2)
    return out


def _accuracy(
    predictor,
    doses: tuple[float, ...] | None,
    refine_thickness: bool = False,
    draws: int | None = None,
) -> dict | None:
    """The held-out accuracy report (``stem_loop.inference.evaluation.report``), if present."""
    try:
        evaluation = importlib.import_module("stem_loop.inference.evaluation")
    except ImportError:
        return None
    kwargs = {} if doses is None else {"doses": doses}
    if draws is not None:
        kwargs["draws"] = draws
    return evaluation.report(predictor, refine_thickness=refine_thickness, **kwargs)


def save_frames(path: str | Path, frames: np.ndarray, conditions) -> Path:
    """Write frames and their beam conditions to an ``.npz`` that ``--frames`` reads back."""
    path = Path(path)
    np.savez_compressed(path, frames=frames, conditions=json.dumps(conditions.as_dict()))
    return path


def load_frames(path: str | Path, n: int) -> tuple[np.ndarray, Any]:
    """``n`` frames (repeated if the file has fewer) and their conditions from :func:`save_frames`.

    Raises
    ------
    ValueError
        If the file lacks ``frames`` or ``conditions``, or the frames are not ``(N, rows, cols)``
        uint16 counts.
    """
    from stem_loop.inference import BeamConditions

    with np.load(path, allow_pickle=False) as data:
        missing = {"frames", "conditions"} - set(data.files)
        if missing:
            raise ValueError(f"{path}: no {', '.join(sorted(missing))} (see --save-frames)")
        stored, conditions = data["frames"], BeamConditions(**json.loads(str(data["conditions"])))
    if stored.ndim != 3 or stored.dtype != np.uint16 or not len(stored):
        raise ValueError(
            f"{path}: frames must be (N, rows, cols) uint16, got {stored.dtype} {stored.shape}"
        )
    return stored[np.arange(n) % len(stored)], conditions


def run_inference_bench(
    frames: int = 2048,
    *,
    threads: int | None = None,
    batch: int = 256,
    repeats: int = 2,
    workers: int | None = None,
    gpu: bool = True,
    cpu: bool = True,
    device: str = "cuda",
    device_batch: int = GPU_BATCH,
    frames_file: str | Path | None = None,
    save_frames_to: str | Path | None = None,
    accuracy: bool = True,
    doses: tuple[float, ...] | None = None,
    draws: int | None = None,
    refine_thickness: bool = False,
    refine_thickness_above: float | None = None,
    live_refinement: bool = True,
    mirror: bool | int | str = "auto",
    precision: str = "auto",
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
        Frames per batch (read, front end, network) on the CPU.
    repeats : int
        Each figure is the best of this many runs.
    workers : int, optional
        Batches the agent infers at once (its ``workers``; default the agent's,
        :data:`stem_loop.agents.inference.DEFAULT_WORKERS`).
    gpu : bool
        Also measure on ``device`` if this machine has it.
    cpu : bool
        Measure on the CPU.
    device : str
        The accelerator (``"cuda"``, ``"cuda:1"``).
    device_batch : int
        Frames per batch on the accelerator (at most ``frames``).
    frames_file : str or Path, optional
        Frames and conditions saved by :func:`save_frames` (default: simulate them here).
    save_frames_to : str or Path, optional
        Save the frames used (and their conditions) there, for ``frames_file`` elsewhere.
    accuracy : bool
        Append the held-out accuracy report (``stem_loop.inference.evaluation.report``).
    doses : tuple of float, optional
        Doses of the accuracy report (default: the report's own).
    draws : int, optional
        Poisson draws of each held-out pattern pooled into the accuracy report's rms
        (default: the report's own, :data:`stem_loop.inference.evaluation.DRAWS`).
    refine_thickness : bool
        Add the held-out thickness of every frame refined by the fast model
        (:class:`stem_loop.inference.refine.ThicknessRefiner`, unstrained contents; seconds).
    refine_thickness_above : float, optional
        The agent's live refinement threshold (its ``refine_thickness_above``; default: the
        agent's default, :data:`stem_loop.inference.refine.DOUBTFUL_STD_NM`).
    live_refinement : bool
        ``False``: the agent publishes the networks' thickness only.
    mirror : bool, int or "auto"
        Read every frame in mirror views (``Predictor(mirror=...)``: ``True`` or 4, 2, or
        ``False`` / 1 once; ``"auto"``, the live agent's reading: 2 where the networks run in
        bfloat16, else 1): the end-to-end, agent and accuracy figures are those of that
        reading; the front end and network figures stay one pass's.
    precision : {"auto", "float32", "bfloat16"}
        The networks' arithmetic on each device (``Predictor(precision=...)``,
        :mod:`stem_loop.inference.precision`).
    seed : int
        Seed of the simulated frames.
    verbose : bool
        Print the figures.

    Returns
    -------
    dict
        ``cpu`` (frames/s: ``read_hdf5``, ``front_end``, ``network``, ``end_to_end``,
        ``agent``, ``refiner``; and the same per CPU-second of this process in
        ``per_cpu_second``; ``agent_thickness_refined_fraction``; None when skipped),
        ``gpu`` (see :func:`_device_figures`; None without a device), ``accuracy`` (the
        report's ``rows``, or None), and the settings and machine load they were measured
        under.
    """
    import torch

    from stem_loop.agents.inference import DEFAULT_WORKERS
    from stem_loop.inference import Predictor
    from stem_loop.inference.refine import DOUBTFUL_STD_NM

    workers = DEFAULT_WORKERS if workers is None else workers
    if not live_refinement:
        refine_thickness_above = None
    elif refine_thickness_above is None:
        refine_thickness_above = DOUBTFUL_STD_NM
    if frames < 1:
        raise ValueError(f"frames must be at least 1, got {frames}")
    if threads is not None:
        torch.set_num_threads(threads)
    load_before = os.getloadavg()
    if frames_file is not None:
        data, conditions = load_frames(frames_file, frames)
    else:
        data, conditions = simulate_frames(frames, seed)
    if save_frames_to is not None:
        save_frames(save_frames_to, data[:MAX_DISTINCT_FRAMES], conditions)
    predictor = Predictor(mirror=mirror, precision=precision) if cpu or accuracy else None
    cpu_figures = gpu_figures = None
    with tempfile.TemporaryDirectory(prefix="stem-loop-bench-") as tmp:
        path = write_frames(Path(tmp) / "frames.h5", data)
        if cpu:
            cpu_figures = _cpu_figures(
                predictor,
                data,
                conditions,
                path,
                batch,
                repeats,
                workers,
                refine_thickness_above,
            )
        if gpu and _has_device(device):
            gpu_figures = _device_figures(
                data,
                conditions,
                min(device_batch, frames),
                repeats,
                device,
                path,
                workers,
                mirror,
                precision,
            )
    result: dict[str, Any] = {
        "frames": frames,
        "frame_shape": list(data.shape[1:]),
        "batch": batch,
        "agent_workers": workers,
        "mirror": mirror,
        # the CPU predictor's reading, else the device's (a GPU-only run makes no CPU one)
        "mirror_views": (
            len(predictor.views)
            if predictor is not None
            else (gpu_figures or {}).get("mirror_views")
        ),
        "precision": (
            predictor.precision
            if predictor is not None
            else (gpu_figures or {}).get("precision", precision)
        ),
        "refine_thickness_above": refine_thickness_above,
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get(OMP_ENV, "").lower() or "default (active)",
        "cpu_count": os.cpu_count(),
        "load_average": [round(v, 2) for v in (*load_before, *os.getloadavg())],
        "cpu": cpu_figures,
        "gpu": gpu_figures,
        "accuracy": None,
    }
    if verbose:
        print(_text(result), flush=True)
    if accuracy:
        report = _accuracy(predictor, doses, refine_thickness, draws)
        if report is not None:
            result["accuracy"] = report["rows"]
            if refine_thickness:
                result["thickness_refined_nm_rms"] = report["summary"]["thickness_refined_nm_rms"]
            if verbose:
                print(report["text"], flush=True)
        elif verbose:
            print("accuracy: stem_loop.inference.evaluation is not available", flush=True)
    return result


def _has_device(device: str) -> bool:
    from stem_loop.inference.predictor import inference_device

    try:
        return inference_device(device).type != "cpu"
    except ValueError:
        return False


def _text(result: dict[str, Any]) -> str:
    load = result["load_average"]
    lines = [
        f"inference throughput, {result['frames']} frames of "
        f"{result['frame_shape'][0]}x{result['frame_shape'][1]}, batch {result['batch']}, "
        f"{result['threads']} torch threads on {result['cpu_count']} cores, "
        f"OpenMP wait policy {result['omp_wait_policy']} "
        f"(load average {load[0]:.1f} before, {load[3]:.1f} after), "
        f"networks in {result.get('precision', 'float32')}",
    ]
    views = result.get("mirror_views") or 1  # None: nothing was measured
    if views > 1:
        lines.append(
            f"  {views} mirror views averaged: end to end, agent and accuracy run the front end "
            f"once and the networks {views}x per frame"
        )
    names = {
        "read_hdf5": "read HDF5 only",
        "front_end": "front end alone",
        "network": "network alone",
        "end_to_end": "end to end (read + front end + network)",
        "agent": f"inference agent, {result['agent_workers']} worker(s) (documents in, pages out)",
        "refiner": "thickness refiner alone, every frame (unstrained contents)",
    }
    if result["cpu"]:
        lines.append(f"  {'':<61}{'frames/s':>10}{'frames/CPU-s':>14}")
        per_cpu = result["cpu"]["per_cpu_second"]
        for key, label in names.items():
            lines.append(f"  CPU  {label:<56}{result['cpu'][key]:>10.0f}{per_cpu[key]:>14.0f}")
        above = result["refine_thickness_above"]
        lines.append(
            f"  (agent: thickness refined live for "
            f"{100 * result['cpu']['agent_thickness_refined_fraction']:.1f}% of frames, "
            + ("off)" if above is None else f"those with the networks' sigma > {above:g} nm)")
        )
        lines.append(
            "  (frames/CPU-s: frames per second of this process's CPU time, all threads; "
            "less sensitive to other jobs' load than wall-clock frames/s)"
        )
    gpu = result["gpu"]
    if gpu:
        lines.append(
            f"  GPU: {gpu['device']}, batch {gpu['batch']}, networks in "
            f"{gpu.get('precision', 'float32')}, {gpu.get('mirror_views', 1)} view(s) a frame"
        )
        device_names = {
            "front_end": "front end alone (frames on the device)",
            "network": "network alone (inputs on the device)",
            "from_memory": "host memory to descriptors (copy, front end, network, back)",
            "end_to_end": "end to end (HDF5 read a batch ahead + the above)",
            "agent": names["agent"],
        }
        device_names["agent"] += ", no live refinement"
        for key, label in device_names.items():
            if key in gpu:
                lines.append(f"  GPU  {label:<56}{gpu[key]:>10.0f}")
    else:
        lines.append("  GPU: none measured")
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
        "--workers",
        type=int,
        default=None,
        help="batches the agent infers at once (threads; default: the agent's, 2)",
    )
    parser.add_argument("--no-gpu", action="store_true", help="skip the CUDA device")
    parser.add_argument("--no-cpu", action="store_true", help="skip the CPU figures")
    parser.add_argument(
        "--device", default="cuda", help="the accelerator to measure (default: cuda)"
    )
    parser.add_argument(
        "--device-batch",
        type=int,
        default=GPU_BATCH,
        help=f"frames per batch on the accelerator (default: {GPU_BATCH})",
    )
    parser.add_argument(
        "--frames-file",
        type=Path,
        default=None,
        help="frames and conditions saved with --save-frames (default: simulate them)",
    )
    parser.add_argument(
        "--save-frames",
        type=Path,
        default=None,
        help="save the distinct frames and their conditions (.npz) for --frames-file elsewhere",
    )
    parser.add_argument(
        "--no-accuracy", action="store_true", help="skip the held-out accuracy report"
    )
    parser.add_argument(
        "--doses", type=str, default=None, help="comma-separated doses of the accuracy report"
    )
    parser.add_argument(
        "--draws",
        type=int,
        default=None,
        help="Poisson draws of each held-out pattern pooled into the accuracy report (default: 5)",
    )
    parser.add_argument(
        "--refine-thickness",
        action="store_true",
        help="add the held-out thickness of every frame refined by the fast model (seconds)",
    )
    parser.add_argument(
        "--refine-thickness-above",
        type=float,
        default=None,
        metavar="NM",
        help="the agent refines the thickness of frames whose networks' sigma exceeds this "
        "(default: the agent's, 2 nm; 0: every frame)",
    )
    parser.add_argument(
        "--no-live-refinement",
        action="store_true",
        help="the agent publishes the networks' thickness only",
    )
    add_reading_options(parser)
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
    for name in ("frames", "batch", "repeats", "threads", "workers", "device_batch", "draws"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.refine_thickness_above is not None and not args.refine_thickness_above >= 0:
        parser.error("--refine-thickness-above must be >= 0 nm")
    if args.frames_file is not None and not args.frames_file.is_file():
        parser.error(f"--frames-file {args.frames_file}: no such file")
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
        cpu=not args.no_cpu,
        device=args.device,
        device_batch=args.device_batch,
        frames_file=args.frames_file,
        save_frames_to=args.save_frames,
        accuracy=not args.no_accuracy,
        doses=doses,
        draws=args.draws,
        refine_thickness=args.refine_thickness,
        refine_thickness_above=args.refine_thickness_above,
        live_refinement=not args.no_live_refinement,
        mirror=args.mirror,
        precision=args.precision,
        seed=args.seed,
    )
    if args.json:
        print(json.dumps(result, default=float), flush=True)


if __name__ == "__main__":
    main()
