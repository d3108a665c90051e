"""Sigma calibration on frames with the microscope's physics (strain-dependent disk contents).

Networks trained on the beam library's unstrained disk contents err more on real crystals
(and the exact held-out set), whose contents change with strain, most of all on thickness; so
sigmas calibrated on held-back *training* frames come out too small (such an ensemble before
this calibration: thickness 1-sigma coverage 54 % on held-out exact physics, 59 % on
strain-dependent-content frames at 5x10^4 to 10^5 e/frame). Networks trained on
strain-dependent contents (the shipped ones) are calibrated the same way, on frames they never
saw.

The calibration frames are a separate set: the training ranges with
``TrainingRanges(strain_contents=True)`` and the training's content engine (Bloch waves when
the training frames have unstrained contents), each block sharing one cell of the
content-strain grid, their own seed, smaller blocks than training so that more content cells
are seen. Each
output's sigma scale is the 68.27 % quantile of the normalised errors ``|z|``: the predicted
1-sigma interval then covers 68.27 % of those frames' errors, which is what a 1-sigma interval
promises (a variance match, ``sqrt(mean z**2)``, gives the heavy tails too much weight and
intervals that cover more).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from .dataset import TrainingRanges, generate_shards

#: Added to the training seed: the calibration frames never repeat a training shard's stream.
SEED_OFFSET = 1_000_000
#: Frames per block of the calibration set (one content-strain cell, one Bloch-wave
#: correction each; smaller than training blocks to see more cells).
BLOCK_FRAMES = 128
#: Fraction of the normalised errors inside the calibrated 1-sigma interval.
ONE_SIGMA_COVERAGE = 0.6827


def calibration_ranges(ranges: TrainingRanges | None = None) -> TrainingRanges:
    """The training ranges with strain-dependent disk contents."""
    return replace(ranges or TrainingRanges(), strain_contents=True)


def generate_calibration(
    out: str | Path,
    shards: int,
    *,
    seed: int = 0,
    ranges: TrainingRanges | None = None,
    frames_per_shard: int = 2048,
    workers: int = 1,
    progress: bool = False,
    **selection,
) -> list[Path]:
    """Write the calibration shards (resumable, like training shards).

    Parameters
    ----------
    out : str or Path
        Directory of the shards.
    shards : int
        Number of shards.
    seed : int
        The *training* seed; the calibration stream is ``seed + SEED_OFFSET``.
    ranges : TrainingRanges, optional
        The training ranges (strain-dependent contents are switched on here).
    frames_per_shard, workers, progress
        As in :func:`~stem_loop.inference.dataset.generate_shards`.
    **selection
        ``materials``, ``voltages`` and ``content_device``, as in
        :func:`~stem_loop.inference.dataset.generate_shards`.
    """
    return generate_shards(
        out,
        shards,
        frames_per_shard=frames_per_shard,
        block=min(BLOCK_FRAMES, frames_per_shard),
        seed=seed + SEED_OFFSET,
        ranges=calibration_ranges(ranges),
        workers=workers,
        progress=progress,
        **selection,
    )


def coverage_scales(normalised_errors: torch.Tensor) -> torch.Tensor:
    """Per-output sigma scales from ``(N, outputs)`` errors divided by the predicted sigma.

    Returns the :data:`ONE_SIGMA_COVERAGE` quantile of ``|z|`` per output; dividing ``z`` by
    it puts that fraction of the frames inside one sigma.

    Raises
    ------
    ValueError
        If there are no errors, or any is not finite.
    """
    z = normalised_errors.abs().double()
    if z.ndim != 2 or len(z) == 0:
        raise ValueError(f"need (N, outputs) normalised errors, got shape {tuple(z.shape)}")
    if not torch.isfinite(z).all():
        raise ValueError("normalised errors contain NaN or infinity")
    return torch.quantile(z, ONE_SIGMA_COVERAGE, dim=0).float()
