"""Thickness refinement: the fast forward model checks the networks' thickness reading.

The networks read thickness mostly from what is inside the disks. Where the contents at two
thicknesses look alike they can read the wrong one: SrTiO3 [001] at 80 kV, 80 nm thick,
strained (+0.2, +1.4, +1.6) % and seen with small disks looks much like 41 nm, and the
shipped ensemble reads it at 44.5 nm. The counts themselves tell the two apart (Poisson
deviance 6,400 between the two at 10^5 electrons).

:class:`ThicknessRefiner` renders each frame with the fast model
(:class:`sim_devices.cbed_fast.FastCBED`) over a grid of thicknesses, holding the strain and
tilt the networks read and the optical axis the lattice fit found, with the disk contents of
the strained cell (multislice, :mod:`sim_devices.cell_multislice`, on a content-strain grid)
and pixel-integrated disk edges, and returns the thickness whose pattern explains the counts
best: the least Poisson deviance, with the pattern scaled to the frame's total counts, so the
dose need not be known. It is an offline step, not part of the live path: each new content
cell costs about 15 to 60 s on 2 CPU cores (0.15 s on a GPU with ``content_device="cuda"``),
each frame a scan of 151 renders (0.12 to 0.3 s once its cell is in memory). On the 96
held-out exact patterns at 10^5 electrons it reads thickness to 0.49 nm rms, against 3.84 nm
for the networks (the worst crystal, 80 nm: 79 nm refined, 44.5 nm read).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sim_devices.cbed_fast import FastCBED
from sim_devices.cbed_library import BeamLibrary, LibrarySpec, load_or_build
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
) -> FastCBED:
    """The fast model closest to exact physics: the strained cell's disk contents (multislice,
    on a content-strain grid of ``content_step``) and pixel-integrated disk edges
    (:data:`EDGE_SUBPIXELS`), with the optical axis ``offset_px`` from the frame centre. The
    refiner scans it; the held-out evaluation's fast twin renders it."""
    return FastCBED(
        library,
        conditions.beam,
        conditions.detector(offset_px),
        content_engine="multislice",
        content_step=content_step,
        content_device=content_device,
        edge_subpixels=EDGE_SUBPIXELS,
    )


@dataclass
class ThicknessRefinement:
    """Refined thicknesses of a batch of frames.

    Attributes
    ----------
    thickness_nm : ndarray
        ``(N,)`` thickness of the least deviance (NaN where the frame is out of distribution).
    network_nm : ndarray
        ``(N,)`` the networks' reading, for comparison.
    deviance : ndarray
        ``(N,)`` Poisson deviance of the counts at the refined thickness.
    network_deviance : ndarray
        ``(N,)`` the same at the grid thickness nearest the networks' reading; the difference
        says how much better the refined thickness explains the frame.
    """

    thickness_nm: np.ndarray
    network_nm: np.ndarray
    deviance: np.ndarray
    network_deviance: np.ndarray


def poisson_deviance(counts: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """``2 sum(mu - n + n log(n / mu))`` of ``counts`` (pixels) against each row of ``expected``."""
    n = counts.astype(np.float64)
    mu = np.maximum(expected, 1e-3)
    log_term = np.where(n > 0, n * np.log(np.maximum(n, 1.0) / mu), 0.0)
    return 2.0 * (mu - n + log_term).sum(-1)


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
    content_step : float
        Grid step of the content strain.
    content_device : str
        Where the strained-cell multislice runs (``"cuda"`` on a GPU machine).

    Raises
    ------
    ValueError
        If the range or step make no grid, or the range leaves the beam library.
    """

    def __init__(
        self,
        conditions: BeamConditions,
        *,
        thickness_range_nm: tuple[float, float] = TrainingRanges().thickness_nm,
        step_nm: float = 0.5,
        content_step: float = CONTENT_STEP,
        content_device: str = "cpu",
    ) -> None:
        lo, hi = (float(t) for t in thickness_range_nm)
        if not (step_nm > 0 and 0 < lo < hi):
            raise ValueError(
                f"need 0 < low < high thickness and a positive step, got {thickness_range_nm} "
                f"and {step_nm}"
            )
        self.conditions = conditions
        self.library = load_or_build(
            LibrarySpec(
                material=conditions.material,
                zone_axis=conditions.zone_axis,
                voltage_kv=conditions.voltage_kv,
            )
        )
        stored = self.library.thickness_nm
        if lo < stored[0] or hi > stored[-1]:
            raise ValueError(
                f"thickness range {lo}-{hi} nm leaves the beam library's "
                f"{stored[0]:.1f}-{stored[-1]:.1f} nm"
            )
        self.thickness_nm = np.arange(lo, hi + step_nm / 2, step_nm)
        self.content_step = content_step
        self.content_device = content_device
        self.front_end = Preprocessor(conditions)

    def _model(self, origin_px: np.ndarray) -> FastCBED:
        centre = (self.conditions.pixels - 1) / 2
        offset = tuple(float(v) for v in np.round(origin_px - centre, 2))
        return closest_fast_model(
            self.library,
            self.conditions,
            offset,
            content_step=self.content_step,
            content_device=self.content_device,
        )

    def refine(self, frames: np.ndarray, prediction: Prediction) -> ThicknessRefinement:
        """Refined thickness of each ``(N, rows, cols)`` frame (counts) read as ``prediction``.

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
        with torch.no_grad():
            origins = self.front_end(frames).fit.origin_px.cpu().numpy()
        n = len(frames)
        out = {k: np.full(n, np.nan) for k in ("best", "dev", "net_dev")}
        grid = self.thickness_nm
        for i in np.flatnonzero(~prediction.ood):
            read = {k: np.full(len(grid), float(prediction.values[k][i])) for k in DESCRIPTOR_NAMES}
            read["thickness_nm"] = grid
            patterns = self._model(origins[i]).patterns(read).reshape(len(grid), -1)
            counts = frames[i].reshape(-1)
            expected = patterns * (counts.sum() / patterns.sum(1, keepdims=True))
            deviance = poisson_deviance(counts, expected)
            best = int(np.argmin(deviance))
            nearest = int(np.argmin(np.abs(grid - prediction.values["thickness_nm"][i])))
            out["best"][i], out["dev"][i] = grid[best], deviance[best]
            out["net_dev"][i] = deviance[nearest]
        return ThicknessRefinement(
            thickness_nm=out["best"],
            network_nm=np.asarray(prediction.values["thickness_nm"], float),
            deviance=out["dev"],
            network_deviance=out["net_dev"],
        )
