"""Frames to network inputs: the registered disk stack and the side features."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .conditions import BeamConditions
from .lattice import DiskLattice, LatticeFit
from .network import MAX_DISKS


@dataclass
class NetworkInput:
    """What the network reads for a batch of frames, and the lattice it came from."""

    crops: torch.Tensor  # (N, MAX_DISKS, C, C)
    side: torch.Tensor  # (N, N_SIDE)
    fit: LatticeFit
    total_counts: torch.Tensor  # (N,)
    saturated: torch.Tensor  # (N,) pixels at the detector's maximum count


class Preprocessor:
    """Register the lattice of frames recorded under one set of conditions.

    Parameters
    ----------
    conditions : BeamConditions
        Material, beam and nominal calibration of the frames.
    saturation : float
        Count at which the detector saturates (uint16 maximum by default).
    """

    def __init__(self, conditions: BeamConditions, saturation: float = 65535.0) -> None:
        self.conditions = conditions
        self.lattice = DiskLattice(conditions, MAX_DISKS)
        self.condition_features = torch.as_tensor(conditions.features())
        self.saturation = saturation

    def __call__(self, frames: np.ndarray | torch.Tensor) -> NetworkInput:
        """Network inputs of ``(N, rows, cols)`` frames (detector counts)."""
        frames = torch.as_tensor(np.asarray(frames) if not torch.is_tensor(frames) else frames)
        rows, cols = frames.shape[-2:]
        if (rows, cols) != (self.conditions.pixels, self.conditions.pixels):
            raise ValueError(
                f"frames are {rows}x{cols}, the conditions say "
                f"{self.conditions.pixels}x{self.conditions.pixels}"
            )
        frames = frames.to(torch.float32)
        n = frames.shape[0]
        total = frames.sum((1, 2))
        saturated = (frames >= self.saturation).sum((1, 2))
        fit, disks = self.lattice.measure(frames, total)
        d = disks.shape[1]
        crops = torch.zeros((n, MAX_DISKS, *disks.shape[-2:]), dtype=torch.float32)
        crops[:, :d] = disks
        per_disk = torch.zeros((n, MAX_DISKS, 3), dtype=torch.float32)
        per_disk[:, :d, :2] = fit.offsets_px.clamp(-3, 3) / 0.5
        per_disk[:, :d, 2] = fit.weights * 10.0
        centre = (self.conditions.pixels - 1) / 2
        side = torch.cat(
            [
                self.condition_features.expand(n, -1),
                fit.strain * 100.0,
                fit.residual_px[:, None],
                fit.peak[:, None],
                torch.log10(total.clamp_min(1.0))[:, None] / 5.0,
                (fit.origin_px - centre) / 3.0,
                per_disk.reshape(n, -1),
            ],
            dim=1,
        )
        return NetworkInput(crops, side, fit, total, saturated)
