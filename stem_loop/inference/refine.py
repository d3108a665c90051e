"""Thickness refinement: the fast forward model checks the networks' thickness reading.

The networks read thickness mostly from what is inside the disks. Where the contents at two
thicknesses look alike they can read the wrong one: SrTiO3 [001] at 80 kV, 80 nm thick,
strained (+0.2, +1.4, +1.6) % and seen with small disks looks much like 41 nm, and the
shipped ensemble reads it at 44.5 nm. The counts themselves tell the two apart (Poisson
deviance 6,400 between the two at 10^5 electrons).

:class:`ThicknessRefiner` renders each frame with the fast model
(:class:`sim_devices.cbed_fast.FastCBED`) over a grid of thicknesses, holding the strain and
tilt the networks read and the optical axis the lattice fit found, with pixel-integrated disk
edges, and returns the thickness whose pattern explains the counts best: the least Poisson
deviance, with the pattern scaled to the frame's total counts, so the dose need not be known.
Frames are scanned a chunk at a time (:data:`CHUNK_ENTRIES`):
:meth:`~sim_devices.cbed_fast.FastCBED.disk_pixels` works out their disk geometry together
and reads the stored thicknesses a pass needs for all of them, and :func:`batch_deviance`
scores them (:func:`series_deviance`, one frame's
:meth:`~sim_devices.cbed_fast.FastCBED.thickness_series`, is the form the tests hold it to).
The disk contents are the unstrained library's (no set-up cost; 0.7 to 3.1 ms a frame on 2
CPU cores over the twelve held-out conditions, about 2 on average, against 2.6 to 12.2, about
7, when each frame was scanned alone) or the strained cell's (multislice on a content-strain
grid: closer to exact physics, but each new grid point costs 7 to 11 s on 2 CPU cores, 0.15 s
on a GPU).

:func:`refine_doubtful` is the live step (:class:`stem_loop.agents.inference.InferenceAgent`,
``stem-loop predict``): only the frames whose networks' thickness sigma exceeds
:data:`DOUBTFUL_STD_NM` are refined, with the unstrained contents. On the 96 held-out exact
patterns at 10^5 electrons (five Poisson draws each; 19.2 nm block) that is 12 % of the
frames, and the thickness published is 1.01 nm rms (the networks alone: 4.14 nm; every frame
refined: 0.57 nm unstrained; 0.49 nm with strained-cell contents, one draw on the 12.8 nm set
shipped before).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from sim_devices.cbed_fast import FastCBED, ThicknessSeries
from sim_devices.cbed_library import BeamLibrary, load_or_build, stored_library
from sim_devices.disk_pixels import DiskPixels, compact
from sim_devices.sample import DESCRIPTOR_NAMES

from .conditions import BeamConditions
from .dataset import TrainingRanges
from .predictor import Prediction
from .preprocess import Preprocessor

#: Grid step of the content strain (the training frames' grid).
CONTENT_STEP = 0.005
#: Sub-pixels per side of the rendered disk edges (the pixel's area inside the aperture).
EDGE_SUBPIXELS = 3


def closest_fast_model(
    library: BeamLibrary,
    conditions: BeamConditions,
    offset_px: tuple[float, float],
    *,
    content_step: float,
    content_device: str = "cpu",
    strain_contents: bool = True,
) -> FastCBED:
    """The fast model closest to exact physics: the strained cell's disk contents (multislice,
    on a content-strain grid of ``content_step``) and pixel-integrated disk edges
    (:data:`EDGE_SUBPIXELS`), with the optical axis ``offset_px`` from the frame centre. The
    refiner scans it; the held-out evaluation's fast twin renders it. ``strain_contents=False``
    renders the unstrained library's contents instead (no multislice to set up)."""
    return FastCBED(
        library,
        conditions.beam,
        conditions.detector(offset_px),
        strain_contents=strain_contents,
        content_engine="multislice",
        content_step=content_step,
        content_device=content_device,
        edge_subpixels=EDGE_SUBPIXELS,
    )


#: Disk contents the refiner can render: the strained cell's (multislice, one per new
#: content-strain grid point, 7 to 11 s each on 2 CPU cores) or the unstrained library's
#: (no set-up cost).
CONTENTS = ("multislice", "unstrained")


#: How the refiner searches the thickness grid (see ThicknessRefiner).
SEARCHES = ("coarse-to-fine", "full")


@dataclass
class ThicknessRefinement:
    """Refined thicknesses of a batch of frames.

    Attributes
    ----------
    thickness_nm : ndarray
        ``(N,)`` thickness of the least deviance, between grid points by a parabola through
        the least one and its neighbours (NaN where the frame is out of distribution).
    std_nm : ndarray
        ``(N,)`` its 1-sigma uncertainty. Two parts in quadrature: the statistical one, from
        the deviance's curvature (inflated by the overdispersion, the least deviance per pixel
        the disks reach, where that exceeds 1), and the model's, taken as uniform within one
        stored thickness step of the beam library (the contents are interpolated linearly
        between stored thicknesses; the exact ones are not linear) and one grid step:
        ``sqrt((stored_step**2 + step**2) / 12)``, about 0.57 nm. At 10^5 electrons the
        second dominates.
    network_nm : ndarray
        ``(N,)`` the networks' reading, for comparison.
    deviance : ndarray
        ``(N,)`` Poisson deviance of the counts at the grid thickness of least deviance.
    network_deviance : ndarray
        ``(N,)`` the same at the grid thickness nearest the networks' reading; the difference
        says how much better the refined thickness explains the frame.
    """

    thickness_nm: np.ndarray
    std_nm: np.ndarray
    network_nm: np.ndarray
    deviance: np.ndarray
    network_deviance: np.ndarray


#: Least expected count of a pixel in the deviance (patterns are zero outside the disks).
FLOOR = 1e-3


def poisson_deviance(counts: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """``2 sum(mu - n + n log(n / mu))`` of ``counts`` (pixels) against each row of ``expected``."""
    n = counts.astype(np.float64)
    mu = np.maximum(expected, FLOOR)
    log_term = np.where(n > 0, n * np.log(np.maximum(n, 1.0) / mu), 0.0)
    return 2.0 * (mu - n + log_term).sum(-1)


def series_deviance(counts: np.ndarray, series: ThicknessSeries) -> np.ndarray:
    """:func:`poisson_deviance` of one frame's ``counts`` against each pattern of ``series``,
    scaled to the frame's total counts: the pixels the disks reach are compared one by one,
    the rest (expected :data:`FLOOR` at every thickness) once. The one-frame form of
    :func:`batch_deviance`, which the refiner uses; the tests hold the two together."""
    n = torch.as_tensor(counts.reshape(-1).astype(np.float64))
    on = n[series.pixels]
    values = series.values.to(torch.float64)
    mu = (values * (n.sum() / values.sum(1, keepdim=True))).clamp_(min=FLOOR)
    inside = (mu - on).sum(1) - (on * mu.log()).sum(1)
    outside = (
        FLOOR * (len(n) - len(on)) - (n.sum() - on.sum()) - np.log(FLOOR) * (n.sum() - on.sum())
    )
    positive = n[n > 0]
    constant = (positive * positive.log()).sum()
    return (2.0 * (inside + outside + constant)).numpy()


def _least(
    deviance: np.ndarray, grid: np.ndarray, dof: int, floor: float
) -> tuple[float, float, int]:
    """Thickness of least deviance (a parabola through the grid's least and its neighbours),
    its 1-sigma (the curvature's, inflated by the overdispersion, and ``floor`` in
    quadrature), and the grid index of the least."""
    j = int(np.argmin(deviance))
    if not 0 < j < len(grid) - 1:
        return float(grid[j]), floor, j
    step = float(grid[1] - grid[0])
    left, mid, right = deviance[j - 1 : j + 2]
    bend = left - 2 * mid + right
    if not (np.isfinite(bend) and bend > 0):  # a neighbour outside the searched window
        return float(grid[j]), floor, j
    shift = float(np.clip(0.5 * (left - right) / bend, -0.5, 0.5))
    overdispersion = max(1.0, mid / max(dof, 1))
    curvature_var = step**2 * 2.0 * overdispersion / bend
    return float(grid[j] + shift * step), float(np.sqrt(curvature_var + floor**2)), j


class ThicknessRefiner:
    """Refine the networks' thickness by scanning the fast model (see the module docstring).

    Parameters
    ----------
    conditions : BeamConditions
        Material, beam and calibration of the frames (a material with a beam library).
    thickness_range_nm : tuple of float
        Thicknesses scanned (default: the training range).
    step_nm : float
        Grid step of the scan.
    contents : str
        The disk contents rendered: ``"multislice"`` (the strained cell's, on a grid of
        ``content_step``; the closest to exact physics) or ``"unstrained"`` (the library's; no
        set-up cost, for live use).
    content_step : float
        Grid step of the content strain.
    content_device : str
        Where the strained-cell multislice runs (``"cuda"`` on a GPU machine).
    search : str
        ``"coarse-to-fine"`` (default): the deviance at the library's stored thicknesses first
        (the contents are linear between them; for disks of :data:`THIN_RADIUS_PX` pixels or
        more, on every other row and column only), then on the grid within two stored steps
        of the least of those; ``"full"``: every grid thickness on every pixel
        (``tests/inference/test_refine.py`` checks the two agree).
    build_library : bool
        ``False``: refuse (FileNotFoundError, with the command that builds it) instead of
        building a missing beam library, which takes minutes (the live agent's choice).

    Raises
    ------
    ValueError
        If the range or step make no grid, the range leaves the beam library, or the contents
        or search are unknown.
    FileNotFoundError
        If the beam library is not built and ``build_library`` is False.
    """

    def __init__(
        self,
        conditions: BeamConditions,
        *,
        thickness_range_nm: tuple[float, float] = TrainingRanges().thickness_nm,
        step_nm: float = 0.5,
        contents: str = "multislice",
        content_step: float = CONTENT_STEP,
        content_device: str = "cpu",
        search: str = "coarse-to-fine",
        build_library: bool = True,
    ) -> None:
        lo, hi = (float(t) for t in thickness_range_nm)
        if not (step_nm > 0 and 0 < lo < hi):
            raise ValueError(
                f"need 0 < low < high thickness and a positive step, got {thickness_range_nm} "
                f"and {step_nm}"
            )
        if contents not in CONTENTS:
            raise ValueError(f"contents must be one of {CONTENTS}, got {contents!r}")
        self.conditions = conditions
        spec = conditions.library_spec()
        if not build_library and stored_library(spec) is None:
            raise FileNotFoundError(
                f"no beam library {spec.filename()} (build it: python -m sim_devices "
                f"build-library --material {spec.material} --zone-axis {spec.zone_axis} "
                f"--voltage-kv {spec.voltage_kv:g})"
            )
        self.library = load_or_build(spec)
        stored = self.library.thickness_nm
        if lo < stored[0] or hi > stored[-1]:
            raise ValueError(
                f"thickness range {lo}-{hi} nm leaves the beam library's "
                f"{stored[0]:.1f}-{stored[-1]:.1f} nm"
            )
        self.thickness_nm = np.arange(lo, hi + step_nm / 2, step_nm)
        stored_step = float(np.median(np.diff(stored)))
        #: The model's part of each refined thickness's sigma (see ThicknessRefinement).
        self.model_std_nm = float(np.sqrt((stored_step**2 + step_nm**2) / 12.0))
        if search not in SEARCHES:
            raise ValueError(f"search must be one of {SEARCHES}, got {search!r}")
        self.search = search
        # coarse: the stored thicknesses in range (the contents are linear between them) and
        # the range's ends; fine: the grid within two stored steps of the coarse least
        self._coarse_columns = np.flatnonzero((stored > lo) & (stored < hi))
        self._ends = np.array([lo, hi])
        # large disks: the coarse pass reads every other row and column of the frame (the
        # deviance of those pixels, scaled to their counts), a quarter of the work; the
        # basins it tells apart differ by thousands at 10^5 electrons
        side = conditions.pixels
        radius_px = conditions.convergence_mrad / conditions.mrad_per_pixel
        self._coarse_pixels = (
            torch.as_tensor(np.add.outer(np.arange(side) % 2, np.arange(side) % 2) == 0).reshape(-1)
            if radius_px >= THIN_RADIUS_PX
            else None
        )
        self._window_nm = 2.0 * stored_step
        self.contents = contents
        # one model for every frame: each frame's optical axis is passed at render time
        self.model = closest_fast_model(
            self.library,
            conditions,
            (0.0, 0.0),
            content_step=content_step,
            content_device=content_device,
            strain_contents=contents == "multislice",
        )
        self.front_end = Preprocessor(conditions)
        #: Frames scanned together (:data:`CHUNK_ENTRIES`, :data:`CHUNK_FRAMES`).
        self.chunk = int(np.clip(CHUNK_ENTRIES // disk_entries(self.model), *CHUNK_FRAMES))

    def refine(self, frames: np.ndarray, prediction: Prediction) -> ThicknessRefinement:
        """Refined thickness of each ``(N, rows, cols)`` frame (counts) read as ``prediction``.

        The optical axis is the prediction's ``origin_px`` (the lattice fit's), else fitted
        here. Frames are scanned :attr:`chunk` at a time (:meth:`FastCBED.disk_pixels
        <sim_devices.cbed_fast.FastCBED.disk_pixels>`, :func:`batch_deviance`).

        Raises
        ------
        ValueError
            If the frames and the prediction differ in number.
        """
        frames = np.asarray(frames)
        if frames.ndim == 2:
            frames = frames[None]
        if len(frames) != len(prediction):
            raise ValueError(f"{len(frames)} frames but a prediction of {len(prediction)}")
        origins = prediction.origin_px
        if origins is None:
            with torch.no_grad():
                origins = self.front_end(frames).fit.origin_px.cpu().numpy()
        n = len(frames)
        out = {k: np.full(n, np.nan) for k in ("best", "std", "dev", "net_dev")}
        read = {k: np.asarray(prediction.values[k], dtype=np.float64) for k in DESCRIPTOR_NAMES}
        strain = np.stack([read["exx"], read["eyy"], read["exy"]], axis=1)
        tilt = np.stack([read["tilt_x_mrad"], read["tilt_y_mrad"]], axis=1)
        origins = np.asarray(origins, dtype=np.float64)
        scanned = np.flatnonzero(~prediction.ood)
        if self.model.contents is None:
            groups = {(0, 0, 0): scanned}
        else:  # frames sharing a content-strain grid point share its disk contents
            voxels = self.model.contents.voxels(strain[scanned])
            groups = {}
            for i, voxel in zip(scanned, map(tuple, voxels.tolist()), strict=True):
                groups.setdefault(voxel, []).append(i)
        for voxel, members in groups.items():
            members = np.asarray(members, dtype=np.int64)
            # chunks of even size (nine frames of eight a chunk: five and four, not eight and one)
            for sel in np.array_split(members, -(-len(members) // self.chunk) or 1):
                if not len(sel):
                    continue
                disks = self.model.disk_pixels(strain[sel], tilt[sel], origins[sel], voxel=voxel)
                counts = torch.as_tensor(frames[sel].reshape(len(sel), -1)).to(torch.float32)
                deviance, net_dev = self._scan(disks, counts, read["thickness_nm"][sel])
                out["net_dev"][sel] = net_dev
                for row, i in enumerate(sel):
                    best, std, j = _least(
                        deviance[row],
                        self.thickness_nm,
                        int(disks.mask[row].sum()),
                        self.model_std_nm,
                    )
                    out["best"][i], out["std"][i], out["dev"][i] = best, std, deviance[row, j]
        return ThicknessRefinement(
            thickness_nm=out["best"],
            std_nm=out["std"],
            network_nm=read["thickness_nm"],
            deviance=out["dev"],
            network_deviance=out["net_dev"],
        )

    def _scan(
        self, disks: DiskPixels, counts: torch.Tensor, network_nm: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Deviance of each frame over the grid (inf where not searched), and at the grid
        thickness nearest the networks' reading."""
        grid = self.thickness_nm
        b = len(counts)
        rows = np.arange(b)
        nearest = np.abs(grid[None, :] - network_nm[:, None]).argmin(1)
        every = disks.stored()  # (B, L, T_stored): each pass reads its thicknesses from these
        if self.search == "full":
            deviance = batch_deviance(counts, disks, disks.at(every, np.tile(grid, (b, 1))))
            return deviance, deviance[rows, nearest]
        ends = np.tile(self._ends, (b, 1))
        coarse_disks, coarse_counts, coarse_every = disks, counts, every
        if self._coarse_pixels is not None:
            order, mask = compact(disks.mask & self._coarse_pixels[disks.pixels])
            coarse_disks = disks.entries(order, mask)
            coarse_counts = counts * self._coarse_pixels
            coarse_every = torch.gather(every, 1, order[..., None].expand(-1, -1, every.shape[2]))
        coarse = np.concatenate(
            [
                batch_deviance(coarse_counts, coarse_disks, coarse_every)[:, self._coarse_columns],
                batch_deviance(coarse_counts, coarse_disks, coarse_disks.at(coarse_every, ends)),
            ],
            axis=1,
        )
        coarse_nm = np.concatenate([disks.stored_thickness_nm[self._coarse_columns], self._ends])
        centre = coarse_nm[coarse.argmin(1)]
        window = np.abs(grid[None, :] - centre[:, None]) <= self._window_nm
        at = np.minimum(
            window.argmax(1)[:, None] + np.arange(int(window.sum(1).max())), len(grid) - 1
        )
        # the window's thicknesses and, last, the one nearest the networks' reading
        fine = batch_deviance(
            counts, disks, disks.at(every, np.concatenate([grid[at], grid[nearest][:, None]], 1))
        )
        deviance = np.full((b, len(grid)), np.inf)
        deviance[rows[:, None], at] = np.where(window[rows[:, None], at], fine[:, :-1], np.inf)
        return deviance, fine[:, -1]


#: Disk entries (pixels the disks reach, summed over frames) scanned together: a chunk holds
#: as many frames as fit, within :data:`CHUNK_FRAMES`. Fewer, larger calls pay for small disks
#: and for the live agent's few doubtful frames a batch; beyond about 100,000 entries the
#: entries times the stored thicknesses leave the cache and large disks slow down.
CHUNK_ENTRIES = 100_000
#: Fewest and most frames a chunk holds.
CHUNK_FRAMES = (4, 32)


def disk_entries(model: FastCBED) -> int:
    """Entries of an unstrained, untilted crystal on the optical axis of ``model``'s detector
    (:meth:`~sim_devices.cbed_fast.FastCBED.disk_entries`: the pixels its disks reach; strain,
    tilt and the optical axis move a few in or out), at least 1. No disk contents are fetched."""
    centre = np.array([model.detector.center_px], dtype=np.float64)
    return max(int(model.disk_entries(np.zeros((1, 3)), np.zeros((1, 2)), centre)[0]), 1)


#: Disk radius (pixels) from which the coarse pass reads every other row and column only.
THIN_RADIUS_PX = 5.0


def batch_deviance(counts: torch.Tensor, disks: DiskPixels, values: torch.Tensor) -> np.ndarray:
    """:func:`series_deviance` of a batch of frames at once.

    Parameters
    ----------
    counts : Tensor
        ``(B, rows * cols)`` float32 counts of each frame.
    disks : DiskPixels
        Their disk geometry.
    values : Tensor
        ``(B, L, T)`` float32 patterns on the disks' entries at ``T`` thicknesses per frame
        (:meth:`DiskPixels.stored <sim_devices.disk_pixels.DiskPixels.stored>`,
        :meth:`~sim_devices.disk_pixels.DiskPixels.at`).

    Returns
    -------
    ndarray
        ``(B, T)`` float64 deviances, as :func:`series_deviance` gives each frame (to float32
        rounding of the patterns: ``tests/inference/test_refine.py`` checks it).
    """
    mask = disks.mask
    pixels_all = counts.shape[1]
    total = counts.sum(1, dtype=torch.float64)
    n = torch.gather(counts, 1, disks.pixels) * mask
    on = n.sum(1, dtype=torch.float64)
    # float32 sums (cascaded: ~1e-7 relative) are a tenth of the time of float64 ones
    scale = total[:, None] / values.sum(1).to(torch.float64)  # (B, T)
    # padding entries read 0, so their mu is FLOOR: taken off the sum, and n = 0 there
    mu = values.mul(scale.to(torch.float32)[:, None, :]).clamp_(min=FLOOR)
    mu_sum = mu.sum(1).to(torch.float64) - FLOOR * (~mask).sum(1, keepdim=True)
    # sum n log(mu / n) (n > 0) instead of sum n log mu: its terms are small where the model
    # fits, so float32 holds it (sum n log mu is ~1e6 at 10^5 electrons)
    some = n.clamp(min=1.0)
    n_log_ratio = torch.bmm(n[:, None, :], mu.div_(some[..., None]).log_())
    n_log_n = (n * some.log()).sum(1, dtype=torch.float64)
    inside = mu_sum - on[:, None] - n_log_ratio[:, 0].to(torch.float64) - n_log_n[:, None]
    rest = total - on
    outside = FLOOR * (pixels_all - mask.sum(1)) - rest - np.log(FLOOR) * rest
    constant = (counts * counts.clamp(min=1.0).log()).sum(1, dtype=torch.float64)
    return (2.0 * (inside + (outside + constant)[:, None])).numpy()


#: Networks' thickness sigma (nm) above which the live path refines a frame's thickness: the
#: frames whose reading does not itself claim the 2 nm the model card aims at.
DOUBTFUL_STD_NM = 2.0


@lru_cache(maxsize=8)
def live_refiner(conditions: BeamConditions) -> ThicknessRefiner:
    """The process's refiner for live use under ``conditions`` (unstrained contents, never
    builds a beam library), made once: its fast model keeps what it worked out per incident
    direction, so every agent and run of a session reuses it.

    Raises
    ------
    FileNotFoundError
        If the beam library is not built (the message gives the command that builds it).
    """
    return ThicknessRefiner(conditions, contents="unstrained", build_library=False)


def doubtful_frames(prediction: Prediction, threshold_nm: float) -> np.ndarray:
    """``(N,)`` bool: the frames in distribution whose networks' thickness sigma exceeds
    ``threshold_nm`` (or is missing), those :func:`refine_doubtful` refines."""
    return ~prediction.ood & ~(prediction.std["thickness_nm"] <= threshold_nm)


def refine_doubtful(
    refiner: ThicknessRefiner,
    frames: np.ndarray,
    prediction: Prediction,
    threshold_nm: float = DOUBTFUL_STD_NM,
) -> tuple[Prediction, np.ndarray]:
    """The prediction with the thickness of its doubtful frames refined.

    A frame is doubtful when the networks' thickness sigma exceeds ``threshold_nm``; its
    ``thickness_nm`` and sigma become the refiner's. Out-of-distribution frames are left alone.

    Parameters
    ----------
    refiner : ThicknessRefiner
        For the frames' conditions.
    frames : ndarray
        ``(N, rows, cols)`` counts.
    prediction : Prediction
        The networks' reading of ``frames``.
    threshold_nm : float
        Sigma above which a frame is refined (0 refines every frame).

    Returns
    -------
    Prediction, ndarray
        The new prediction (the input is not changed) and the ``(N,)`` bool mask of the frames
        refined.
    """
    if not threshold_nm >= 0:
        raise ValueError(f"threshold_nm must be >= 0, got {threshold_nm}")
    frames = np.asarray(frames)
    if frames.ndim == 2:
        frames = frames[None]
    if len(frames) != len(prediction):
        raise ValueError(f"{len(frames)} frames but a prediction of {len(prediction)}")
    doubtful = doubtful_frames(prediction, threshold_nm)
    values = {k: np.array(v, dtype=float) for k, v in prediction.values.items()}
    std = {k: np.array(v, dtype=float) for k, v in prediction.std.items()}
    if doubtful.any():
        origin = None if prediction.origin_px is None else prediction.origin_px[doubtful]
        subset = Prediction(
            values={k: v[doubtful] for k, v in values.items()},
            std={k: v[doubtful] for k, v in std.items()},
            ood=np.zeros(int(doubtful.sum()), dtype=bool),
            origin_px=origin,
        )
        refined = refiner.refine(frames[doubtful], subset)
        values["thickness_nm"][doubtful] = refined.thickness_nm
        std["thickness_nm"][doubtful] = refined.std_nm
    out = Prediction(
        values=values,
        std=std,
        ood=prediction.ood.copy(),
        reason=list(prediction.reason),
        lattice_residual_px=prediction.lattice_residual_px,
        origin_px=prediction.origin_px,
    )
    return out, doubtful
