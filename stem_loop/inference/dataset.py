"""Training data: fast-model frames (validated against exact multislice) over the training ranges.

Frames are made in blocks that share one material, voltage, convergence angle and detector
(calibration error and centre shift); inside a block every frame has its own strain,
thickness, tilt and dose. With ``TrainingRanges.strain_contents`` a block also shares one cell
of the fast model's content-strain grid (:mod:`sim_devices.strain_contents`: the
strain-dependent disk contents are computed once per block) and its strains lie in that cell;
over many blocks the strains are uniform in the training range either way. Each block is
registered by the physics front end at once and stored as network inputs (float16 disk
stacks, side features) with the true descriptors, in shards of a few thousand frames, so
generation resumes where it stopped.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

from sim_devices.cbed_fast import FastCBED
from sim_devices.cbed_library import BeamLibrary, LibrarySpec, load_or_build
from sim_devices.content_nodes import NODE_SPAN
from sim_devices.point_spread import MAX_SIGMA_PX, blur_patterns
from sim_devices.strain_contents import CELL_ENGINES, DEFAULT_STEP, StrainContents

from .conditions import (
    CONVERGENCE_RANGE_MRAD,
    MATERIALS,
    TRAINING_VOLTAGES_KV,
    BeamConditions,
    max_convergence_mrad,
    standard_mrad_per_pixel,
)
from .preprocess import Preprocessor


@dataclass(frozen=True)
class TrainingRanges:
    """What the training data spans (the model card quotes these).

    A camera-length error scales the whole pattern exactly like an isotropic strain; only the
    disk radius tells them apart, and not to 0.1 %. Trained with +-2 % camera-length errors in
    half of the blocks, the network's isotropic strain error at correct calibration was 0.44 %
    rms (deviatoric 0.14 %). So the default data keep the camera length at its calibrated value
    (``miscalibrated_fraction = 0``) and the predictor takes the calibration as an input;
    isotropic strain is measured relative to that calibration (reference-region practice).
    Centre shifts are always included.

    ``strain_contents`` renders the disk contents of each block's content-strain cell
    (:mod:`sim_devices.strain_contents`) instead of the unstrained ones. The shipped weights
    were trained with it and ``content_engine="multislice"`` (one strained-cell multislice per
    256-frame block, on a GPU), and read held-out exact physics better than the same recipe on
    unstrained contents (one Poisson draw: 0.095 / 0.102 / 0.063 % strain, 3.84 nm thickness,
    against 0.101 / 0.095 / 0.075 % and 4.28 nm); with Bloch-wave contents a single network
    did worse (see the model card). It defaults to off, the recipe that fits 2 CPU cores;
    ``content_engine="nodes"`` reads the strained cell's multislice from 27 node strains per
    beam library (:mod:`sim_devices.content_nodes`, computed once before the shards, about 4
    minutes per library on 2 cores), strained contents that fit 2 cores too.

    ``edge_subpixels`` integrates each pixel's area inside the aperture over that many
    sub-pixels per side (:class:`sim_devices.cbed_fast.FastCBED`). 3 is closer to the exact
    held-out patterns than the one-pixel ramp (median chi^2 2,900 against 3,900 at 10^5
    electrons), but an ensemble trained on it did not read them better (0.108 / 0.097 / 0.073 %
    strain and 4.43 nm thickness, against 0.101 / 0.095 / 0.075 % and 4.28 nm; see the model
    card), so the shipped weights keep 1.

    ``point_spread_px`` blurs each block's expected patterns by a Gaussian point-spread of
    ``sigma`` pixels, drawn uniformly in that range per block, before the Poisson counts
    (:mod:`sim_devices.point_spread`: a detector's charge or light spread). The shipped
    networks, trained on sharp frames, read a 0.5 px blur of the exact held-out patterns as
    +0.24 % isotropic strain, as their lattice fit moves (``benchmarks/edge_blur.py``). Fine-
    tuned on blurs of 0 to 1 px they stop moving (at most +0.10 % at 1 px) but read the sharp
    exact patterns 0.18 % compressed; fine-tuned on one fixed blur they read exact patterns
    blurred by it to 0.14 / 0.16 % rms (see the model card). So the shipped weights keep
    ``(0, 0)``, and a detector whose point-spread is known is best served by a fine-tune at
    that value.
    The blur is drawn from the block's own noise seed, so the truths, doses and conditions are
    those of the same seed without blur; ``(0, 0)`` (the default) makes the sharp frames of
    earlier recipes, unchanged. Each frame's sigma is stored with it (``point_spread_px``), the
    input of a network trained with ``TrainingSettings.point_spread_input`` (``stem-loop train
    --point-spread`` sets it).
    """

    strain: float = 0.02
    thickness_nm: tuple[float, float] = (10.0, 85.0)
    tilt_mrad: float = 3.0
    dose: tuple[float, float] = (1e3, 1e5)
    centre_shift_px: float = 2.0
    camera_length_error: float = 0.02
    miscalibrated_fraction: float = 0.0
    strain_contents: bool = False
    edge_subpixels: int = 1
    content_engine: str = "bloch"
    content_step: float = DEFAULT_STEP
    point_spread_px: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        low, high = self.point_spread_px
        if not 0.0 <= low <= high <= MAX_SIGMA_PX:
            raise ValueError(
                f"point_spread_px must be (low, high) with 0 <= low <= high <= {MAX_SIGMA_PX:g} "
                f"pixels, got {self.point_spread_px}"
            )


def library_source(ranges: TrainingRanges) -> str:
    """What computes the beam libraries of frames made with ``ranges``.

    With strained-cell contents (either multislice engine) every content strain but zero comes
    from the strained cell, so zero does too: the cell's library (about 40 s to build on 2 cores
    against minutes with abTEM; :mod:`sim_devices.cbed_library`). Otherwise abTEM's.
    """
    if ranges.strain_contents and ranges.content_engine in CELL_ENGINES:
        return "cell"
    return "abtem"


def _libraries(
    materials: tuple[tuple[str, str], ...], voltages: tuple[float, ...], source: str
) -> dict[tuple[str, str, float], BeamLibrary]:
    return {
        (m, z, v): load_or_build(LibrarySpec(material=m, zone_axis=z, voltage_kv=v, source=source))
        for m, z in materials
        for v in voltages
    }


def _block_strains(
    rng: np.random.Generator, frames: int, limit: float, fast: FastCBED
) -> np.ndarray:
    """Strains uniform in ``+-limit`` overall, all in one content-strain cell per block.

    The cell is that of a strain drawn uniformly in the range, so cells cut by the range's
    edge are drawn in proportion to the part inside, and the frames fill the part inside.
    """
    if fast.contents is None:
        return rng.uniform(-limit, limit, (frames, 3))
    anchor = rng.uniform(-limit, limit, 3)
    step = fast.contents.step
    centre = fast.contents.voxels(anchor[None])[0] * step
    low = np.maximum(centre - step / 2, -limit)
    high = np.minimum(centre + step / 2, limit)
    return rng.uniform(low, high, (frames, 3))


def generate_block(
    rng: np.random.Generator,
    libraries: dict[tuple[str, str, float], BeamLibrary],
    frames: int,
    ranges: TrainingRanges,
    content_device: str = "cpu",
) -> dict[str, np.ndarray]:
    """One block of network inputs and targets (see the module docstring)."""
    material, zone_axis, voltage = list(libraries)[rng.integers(len(libraries))]
    alpha = rng.uniform(
        CONVERGENCE_RANGE_MRAD[0], max_convergence_mrad(material, zone_axis, voltage)
    )
    nominal = standard_mrad_per_pixel(voltage)
    error = 0.0
    if rng.random() < ranges.miscalibrated_fraction:
        error = rng.uniform(-ranges.camera_length_error, ranges.camera_length_error)
    shift = tuple(rng.uniform(-ranges.centre_shift_px, ranges.centre_shift_px, 2))
    conditions = BeamConditions(material, zone_axis, voltage, float(alpha), nominal)
    detector = conditions.detector(shift, error)
    fast = FastCBED(
        libraries[(material, zone_axis, voltage)],
        conditions.beam,
        detector,
        strain_contents=ranges.strain_contents,
        content_step=ranges.content_step,
        content_engine=ranges.content_engine,
        content_device=content_device,
        edge_subpixels=ranges.edge_subpixels,
    )

    strain = _block_strains(rng, frames, ranges.strain, fast)
    tilt = rng.uniform(-ranges.tilt_mrad, ranges.tilt_mrad, (frames, 2))
    too_far = np.hypot(*tilt.T) > fast.k_margin
    while too_far.any():  # the library covers |tilt| <= k_margin for this aperture
        tilt[too_far] = rng.uniform(-ranges.tilt_mrad, ranges.tilt_mrad, (too_far.sum(), 2))
        too_far = np.hypot(*tilt.T) > fast.k_margin
    thickness = rng.uniform(*ranges.thickness_nm, frames)
    dose = 10 ** rng.uniform(*np.log10(ranges.dose), frames)
    patterns = fast.patterns(
        dict(
            exx=strain[:, 0],
            eyy=strain[:, 1],
            exy=strain[:, 2],
            thickness_nm=thickness,
            tilt_x_mrad=tilt[:, 0],
            tilt_y_mrad=tilt[:, 1],
        )
    )
    noise_seed = int(rng.integers(2**63 - 1))
    sigma = 0.0
    if ranges.point_spread_px[1] > 0.0:
        # drawn from the block's noise seed, not ``rng``: the truth stays that of the sharp data
        sigma = float(np.random.default_rng([noise_seed, 1]).uniform(*ranges.point_spread_px))
        patterns = blur_patterns(patterns, sigma)
    generator = torch.Generator().manual_seed(noise_seed)
    rate = torch.as_tensor(patterns) * torch.as_tensor(dose, dtype=torch.float32)[:, None, None]
    counts = torch.poisson(rate, generator=generator).clamp_(max=65535.0)
    inputs = Preprocessor(conditions)(counts)
    return dict(
        crops=inputs.crops.numpy().astype(np.float16),
        side=inputs.side.numpy(),
        lattice_strain=inputs.fit.strain.numpy(),
        residual_px=inputs.fit.residual_px.numpy(),
        peak=inputs.fit.peak.numpy(),
        descriptors=np.column_stack([strain, thickness, tilt]).astype(np.float32),
        dose=dose.astype(np.float32),
        material=np.full(frames, conditions.material_index(), dtype=np.int8),
        voltage_kv=np.full(frames, voltage, dtype=np.float32),
        convergence_mrad=np.full(frames, alpha, dtype=np.float32),
        camera_length_error=np.full(frames, error, dtype=np.float32),
        point_spread_px=np.full(frames, sigma, dtype=np.float32),
    )


def generate_shards(
    out: str | Path,
    shards: int,
    *,
    frames_per_shard: int = 2048,
    block: int = 256,
    seed: int = 0,
    ranges: TrainingRanges | None = None,
    materials: tuple[tuple[str, str], ...] = MATERIALS,
    voltages: tuple[float, ...] = TRAINING_VOLTAGES_KV,
    workers: int = 1,
    progress: bool = False,
    content_device: str = "cpu",
) -> list[Path]:
    """Write ``shards`` shard files into ``out`` (existing ones are kept: generation resumes).

    Shard ``i`` is seeded with ``(seed, i)``, so a resumed, partial or parallel run makes the
    same data. ``materials`` and ``voltages`` select the beam libraries (each is built once,
    minutes). ``workers`` > 1 writes shards side by side in that many processes, one torch
    thread each (for machines with many cores; the libraries are built first, here).
    ``content_device`` is where the multislice content engine runs (``"cuda"``: every worker
    shares the GPU).
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ranges = ranges or TrainingRanges()
    (out / "ranges.json").write_text(json.dumps(asdict(ranges), indent=1))
    paths = [out / f"shard{i:04d}.npz" for i in range(shards)]
    todo = [i for i, p in enumerate(paths) if not p.exists()]
    if not todo:
        return paths
    with_nodes = ranges.strain_contents and ranges.content_engine == "nodes"
    if with_nodes and ranges.strain > NODE_SPAN:
        raise ValueError(
            f"the content nodes span +-{NODE_SPAN:g} per strain component, the training range "
            f"+-{ranges.strain:g}: use the multislice content engine"
        )
    # missing libraries (and content nodes) are built once, here, before any worker needs one
    key = (materials, voltages, library_source(ranges))
    _LOADED[key] = _libraries(*key)
    if with_nodes:
        for library in _LOADED[key].values():
            StrainContents(library, ranges.content_step, "nodes", content_device).nodes(progress)
    job = dict(
        seed=seed,
        frames=frames_per_shard,
        block=block,
        ranges=ranges,
        materials=materials,
        voltages=voltages,
        content_device=str(content_device),
    )
    if workers == 1:
        done = ((i, _write_shard(paths[i], i, **job)) for i in todo)
        _report(done, shards, frames_per_shard, progress)
        return paths
    with ProcessPoolExecutor(min(workers, len(todo)), mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(_write_shard, paths[i], i, threads=1, **job): i for i in todo}
        done = ((futures[f], f.result()) for f in as_completed(futures))
        _report(done, shards, frames_per_shard, progress)
    return paths


def _report(done, shards: int, frames: int, progress: bool) -> None:
    """Wait for every shard of ``done`` (``(index, seconds)`` pairs), printing a line each."""
    for count, (i, seconds) in enumerate(done, 1):
        if progress:
            print(
                f"  shard {i + 1}/{shards} ({count} written): {frames / seconds:.0f} frames/s",
                flush=True,
            )


#: Beam libraries loaded in this process (worker processes load them once each).
_LOADED: dict[tuple, dict[tuple[str, str, float], BeamLibrary]] = {}


def _write_shard(
    path: Path,
    index: int,
    *,
    seed: int,
    frames: int,
    block: int,
    ranges: TrainingRanges,
    materials: tuple[tuple[str, str], ...],
    voltages: tuple[float, ...],
    content_device: str = "cpu",
    threads: int | None = None,
) -> float:
    """Generate shard ``index`` into ``path`` (atomically); returns the seconds it took."""
    start = time.perf_counter()
    if threads is not None:
        torch.set_num_threads(threads)
    key = (materials, voltages, library_source(ranges))
    if key not in _LOADED:
        _LOADED[key] = _libraries(*key)
    rng = np.random.default_rng([seed, index])
    blocks = [
        generate_block(rng, _LOADED[key], block, ranges, content_device)
        for _ in range(frames // block)
    ]
    data = {k: np.concatenate([b[k] for b in blocks]) for k in blocks[0]}
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **data)
    tmp.rename(path)
    return time.perf_counter() - start


def load_shards(paths: list[Path]) -> dict[str, np.ndarray]:
    """Concatenate shards into one dict of arrays."""
    parts = [dict(np.load(p)) for p in paths]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
