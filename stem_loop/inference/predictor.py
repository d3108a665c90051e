"""The shipped model as one object: frames in, descriptors with sigma and OOD flags out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .conditions import BeamConditions
from .network import OUTPUTS, to_physical
from .preprocess import Preprocessor
from .training import load_model

#: Where the shipped weights live.
SHIPPED_WEIGHTS = Path(__file__).parent / "weights"
#: Frames with fewer counts than this are blank.
MIN_COUNTS = 100.0
#: Lattice strain beyond this is not a strained crystal of the material (training: 2 % strain,
#: 2 % camera-length error, and the registration's content bias).
MAX_LATTICE_STRAIN = 0.06


@dataclass
class Prediction:
    """Descriptors of a batch of frames.

    Attributes
    ----------
    values : dict of str to ndarray
        One ``(N,)`` array per descriptor name (NaN where the frame is out of distribution).
    std : dict of str to ndarray
        Predicted 1-sigma uncertainty of each descriptor (NaN where out of distribution).
    ood : ndarray
        ``(N,)`` bool: the frame is unlike the training data and has no descriptors.
    reason : list of str
        Why each flagged frame was flagged (empty string if not flagged).
    lattice_residual_px : ndarray
        ``(N,)`` rms distance of the registered disks from the fitted lattice.
    """

    values: dict[str, np.ndarray]
    std: dict[str, np.ndarray]
    ood: np.ndarray
    reason: list[str] = field(default_factory=list)
    lattice_residual_px: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ood)

    def as_dict(self) -> dict[str, np.ndarray]:
        """Flat arrays: ``name`` and ``name_std`` per descriptor, plus ``ood``."""
        out = dict(self.values)
        out.update({f"{k}_std": v for k, v in self.std.items()})
        out["ood"] = self.ood
        return out


class Predictor:
    """Load a trained descriptor network (or ensemble of them) and apply it to frames.

    Parameters
    ----------
    path : str or Path, optional
        Directory with ``descriptor_net.safetensors`` and ``descriptor_net.json`` (default: the
        weights shipped with the package). See :func:`~stem_loop.inference.training.load_model`.
    batch : int
        Frames per forward pass.

    Raises
    ------
    FileNotFoundError
        If the directory lacks the weights or their metadata.
    """

    def __init__(self, path: str | Path | None = None, *, batch: int = 1024) -> None:
        path = Path(path) if path is not None else SHIPPED_WEIGHTS
        self.model, self.meta = load_model(path)
        self.sigma_scale = torch.tensor(self.meta["sigma_scale"])
        self.max_residual_px = float(self.meta["ood"]["max_residual_px"])
        self.min_peak = float(self.meta["ood"]["min_peak"])
        self.batch = batch
        self._preprocessors: dict[BeamConditions, Preprocessor] = {}

    def preprocessor(self, conditions: BeamConditions) -> Preprocessor:
        """The (cached) front end for these conditions."""
        if conditions not in self._preprocessors:
            conditions.material_index()  # refuses materials the network does not know
            self._preprocessors[conditions] = Preprocessor(conditions)
        return self._preprocessors[conditions]

    @torch.no_grad()
    def predict(self, frames: np.ndarray | torch.Tensor, conditions: BeamConditions) -> Prediction:
        """Descriptors, sigmas and OOD flags of ``(N, rows, cols)`` frames (counts).

        Parameters
        ----------
        frames : array
            Detector counts, any integer or float dtype.
        conditions : BeamConditions
            Material, beam and detector calibration of the frames.
        """
        frames = torch.as_tensor(np.asarray(frames) if not torch.is_tensor(frames) else frames)
        if frames.ndim == 2:
            frames = frames[None]
        if frames.ndim != 3:
            raise ValueError(f"frames must be (N, rows, cols), got shape {tuple(frames.shape)}")
        pre = self.preprocessor(conditions)
        values, stds, residual, reasons = [], [], [], []
        for lo in range(0, len(frames), self.batch):
            chunk = frames[lo : lo + self.batch]
            inputs = pre(chunk)
            mean, log_var = self.model(inputs.crops, inputs.side)
            value, std = to_physical(mean, log_var, inputs.fit.strain)
            values.append(value)
            stds.append(std * self.sigma_scale)
            residual.append(inputs.fit.residual_px)
            reasons.extend(self._reasons(inputs, std * self.sigma_scale))
        value = torch.cat(values).numpy().astype(np.float64)
        std = torch.cat(stds).numpy().astype(np.float64)
        ood = np.array([bool(r) for r in reasons])
        value[ood] = np.nan
        std[ood] = np.nan
        return Prediction(
            values={k: value[:, i] for i, k in enumerate(OUTPUTS)},
            std={k: std[:, i] for i, k in enumerate(OUTPUTS)},
            ood=ood,
            reason=reasons,
            lattice_residual_px=torch.cat(residual).numpy(),
        )

    def _reasons(self, inputs, std: torch.Tensor) -> list[str]:
        out = []
        for total, saturated, resid, peak, lattice_strain, sigma in zip(
            inputs.total_counts.tolist(),
            inputs.saturated.tolist(),
            inputs.fit.residual_px.tolist(),
            inputs.fit.peak.tolist(),
            inputs.fit.strain.abs().amax(1).tolist(),
            std[:, :3].amax(1).tolist(),
            strict=True,
        ):
            if total < MIN_COUNTS:
                out.append(f"blank frame ({total:.0f} counts)")
            elif saturated:
                out.append(f"saturated ({saturated} pixels at the detector maximum)")
            elif not lattice_strain <= MAX_LATTICE_STRAIN:
                out.append(
                    f"not the expected lattice (needs {100 * lattice_strain:.0f} % strain to fit, "
                    f"limit {100 * MAX_LATTICE_STRAIN:.0f} %)"
                )
            elif not resid <= self.max_residual_px:
                out.append(
                    f"not the expected lattice (disks {resid:.2f} px off the fitted lattice, "
                    f"limit {self.max_residual_px:.2f})"
                )
            elif not peak >= self.min_peak:
                out.append(f"no disk edges like the aperture's (match {peak:.2f})")
            elif sigma > 0.01:
                out.append(f"strain uncertainty {100 * sigma:.2f} % exceeds 1 %")
            else:
                out.append("")
        return out
