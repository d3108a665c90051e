"""The shipped model as one object: frames in, descriptors with sigma and OOD flags out."""

from __future__ import annotations

import copy
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sim_devices.point_spread import MAX_SIGMA_PX

from .conditions import BeamConditions
from .mirror import (
    auto_view_count,
    average_views,
    calibration_key,
    check_symmetric,
    disk_permutation,
    view_input,
    views_of,
)
from .network import OUTPUTS, to_physical
from .ood import measure, ood_checks, reasons
from .precision import resolve_precision
from .preprocess import Preprocessor
from .training import load_model

#: Where the shipped weights live.
SHIPPED_WEIGHTS = Path(__file__).parent / "weights"
#: Environment variable naming the default inference device (``cpu``, ``cuda``, ``cuda:1``).
DEVICE_ENV = "STEM_LOOP_INFERENCE_DEVICE"


def inference_device(device: str | torch.device | None = None) -> torch.device:
    """The device inference runs on: ``device``, else ``$STEM_LOOP_INFERENCE_DEVICE``, else CPU.

    Raises
    ------
    ValueError
        If the name is not a device torch knows, or names a CUDA device this machine lacks.
    """
    name = device if device is not None else os.environ.get(DEVICE_ENV) or "cpu"
    source = "device" if device is not None else DEVICE_ENV
    try:
        resolved = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"{source}={name!r} is not a torch device ({err})") from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (resolved.index or 0) >= count:
            raise ValueError(
                f"{source}={name!r}: this machine has {count} CUDA device(s) "
                f"(torch {torch.__version__}); use 'cpu'"
            )
    elif resolved.type != "cpu":
        raise ValueError(f"{source}={name!r}: inference runs on 'cpu' or 'cuda[:N]'")
    return resolved


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
    origin_px : ndarray
        ``(N, 2)`` the optical axis (x, y) in pixels the lattice fit found (the undiffracted
        disk's centre), for what models the frame afterwards (the thickness refiner).
    """

    values: dict[str, np.ndarray]
    std: dict[str, np.ndarray]
    ood: np.ndarray
    reason: list[str] = field(default_factory=list)
    lattice_residual_px: np.ndarray | None = None
    origin_px: np.ndarray | None = None

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
        Frames per forward pass (on a GPU, thousands keep it busy).
    device : str or torch.device, optional
        Where the front end and the network run (see :func:`inference_device`; default
        ``$STEM_LOOP_INFERENCE_DEVICE``, else the CPU). Frames may come from anywhere; results
        always come back as NumPy arrays.
    mirror : bool, int or "auto"
        Read every frame in mirror views and average them (:mod:`.mirror`): ``True`` (or 4)
        the four views, 2 the frame and its point reflection; more accurate, a network pass
        per view (see :meth:`mirrored`). ``False`` (or 1) reads each frame once. ``"auto"``
        (what the live paths read: the inference agent, ``stem-loop predict``) reads the pair
        where the networks run in bfloat16, else once (:func:`~.mirror.auto_view_count`).
    precision : {"auto", "float32", "bfloat16"}
        The networks' arithmetic (:mod:`.precision`): ``"auto"`` runs bfloat16 where the
        device computes it natively (about 1.7 times the network's rate on an AVX-512 BF16
        CPU), else float32. The front end is float32 and float64 either way.

    Raises
    ------
    FileNotFoundError
        If the directory lacks the weights or their metadata.
    ValueError
        If the device is unknown or absent, ``precision`` is not one of the three, or
        ``mirror`` is asked of a model whose mirror-averaged sigmas were never calibrated.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        batch: int = 1024,
        device: str | torch.device | None = None,
        mirror: bool | int | str = False,
        precision: str = "auto",
    ) -> None:
        path = Path(path) if path is not None else SHIPPED_WEIGHTS
        self.device = inference_device(device)
        #: ``"float32"`` or ``"bfloat16"``: the networks' arithmetic (:mod:`.precision`).
        self.precision = resolve_precision(precision, self.device)
        self.model, self.meta = load_model(path)
        self.model.to(self.device)
        self.sigma_scale = torch.tensor(self.meta["sigma_scale"], device=self.device)
        self.max_residual_px = float(self.meta["ood"]["max_residual_px"])
        self.min_peak = float(self.meta["ood"]["min_peak"])
        self.checks = ood_checks(self.max_residual_px, self.min_peak)
        self._residual_column = [c.name for c in self.checks].index("lattice_residual")
        self.batch = batch
        self._preprocessors: dict[tuple[BeamConditions, bool], Preprocessor] = {}
        # the agent's workers may ask for a front end at once; building one calls ASE's
        # lattice factories, which are not thread-safe
        self._preprocessor_lock = threading.Lock()
        #: The views read (indices of :data:`.mirror.VIEW_AXES`); ``(0,)``: the frame once.
        self.views: tuple[int, ...] = (0,)
        #: ``(outputs,)`` factors of the mirror-averaged sigma; None reads each frame once.
        self.mirror_scale: np.ndarray | None = None
        if mirror == "auto":
            mirror = auto_view_count(self.precision)
        views = views_of(mirror)
        if len(views) > 1:
            self.views, self.mirror_scale = views, self.mirrored(views=len(views)).mirror_scale

    def mirrored(self, scale: np.ndarray | None = None, views: int = 4) -> Predictor:
        """This model reading every frame in ``views`` mirror views, averaged (:mod:`.mirror`).

        ``scale`` (one factor per output) multiplies the views' mean sigma; by default the
        factors recorded in the metadata for that view set (``sigma_calibration.mirror``, or
        ``mirror2`` for the pair, written by
        :func:`~stem_loop.inference.exact_calibration.calibrate_on_exact`).

        Raises
        ------
        ValueError
            If ``views`` is not 2 or 4, or no ``scale`` is given and the model has no recorded
            factors for the view set.
        """
        chosen = views_of(views)
        if len(chosen) < 2:
            raise ValueError(f"views={views!r}: mirror views are 2 or 4")
        if scale is None:
            key = calibration_key(chosen)
            record = self.meta.get("sigma_calibration", {}).get(key)
            if record is None:
                raise ValueError(
                    f"this model's {len(chosen)}-view averaged sigmas were never calibrated "
                    f"(no sigma_calibration.{key} in its metadata); run "
                    "stem_loop.inference.exact_calibration.calibrate_on_exact on it"
                )
            scale = record["factors"]
        out = copy.copy(self)
        out.views = chosen
        out.mirror_scale = np.asarray(scale, dtype=np.float64).reshape(len(OUTPUTS))
        return out

    def single(self) -> Predictor:
        """This model reading each frame once (the same network and caches)."""
        out = copy.copy(self)
        out.views, out.mirror_scale = (0,), None
        return out

    @property
    def takes_point_spread(self) -> bool:
        """Whether the model reads the detector's point-spread
        (:attr:`BeamConditions.point_spread_px`); otherwise it was trained for a sharp
        detector."""
        return self.model.takes_point_spread

    @property
    def point_spread_range(self) -> tuple[float, float]:
        """The detector point-spreads (pixels) the model was trained on: ``(0, 0)`` for a
        sharp detector; a model that reads it and does not record its range takes any."""
        ranges = self.meta.get("training", {}).get("data_ranges") or {}
        if "point_spread_px" in ranges:
            low, high = ranges["point_spread_px"]
            return float(low), float(high)
        return (0.0, MAX_SIGMA_PX) if self.takes_point_spread else (0.0, 0.0)

    def preprocessor(self, conditions: BeamConditions, mirror_margin: bool = False) -> Preprocessor:
        """The (cached) front end for these conditions (with ``mirror_margin``: the wider crops
        mirror views are formed from, :func:`~.mirror.view_input`).

        Raises
        ------
        ValueError
            If the material is unknown to the network, or the conditions give a point-spread
            the model was not trained to read.
        """
        key = (conditions, mirror_margin)
        with self._preprocessor_lock:
            if key not in self._preprocessors:
                self._preprocessors[key] = self._new_preprocessor(conditions, mirror_margin)
        return self._preprocessors[key]

    def _new_preprocessor(self, conditions: BeamConditions, mirror_margin: bool) -> Preprocessor:
        conditions.material_index()  # refuses materials the network does not know
        low, high = self.point_spread_range
        spread = conditions.point_spread_px
        if not self.takes_point_spread and spread:
            raise ValueError(
                f"point_spread_px={spread:g}: this model was trained for a sharp detector "
                "and does not read a point-spread (a 0.5 px spread reads as +0.24 % "
                "isotropic strain); use a model fine-tuned with 'stem-loop train "
                "--point-spread', or give 0"
            )
        if not low - 1e-6 <= spread <= high + 1e-6:
            raise ValueError(
                f"point_spread_px={spread:g}: this model was trained on detector "
                f"point-spreads of {low:g} to {high:g} px only"
            )
        return Preprocessor(
            conditions,
            device=self.device,
            point_spread_input=self.takes_point_spread,
            mirror_margin=mirror_margin,
        )

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
        mirrored = self.mirror_scale is not None
        if mirrored:
            check_symmetric(conditions.material, conditions.zone_axis)
        pre = self.preprocessor(conditions, mirror_margin=mirrored)
        views = [self._split(out) for out in self._read(pre, frames)]
        if not mirrored:
            value, std, checks, origin = views[0]
            why = reasons(self.checks, checks)
        else:
            value, std = average_views(
                np.stack([v[0] for v in views]),
                np.stack([v[1] for v in views]),
                self.mirror_scale,
                self.views,
            )
            _, _, checks, origin = views[0]  # the frame's own lattice and residual
            why_views = [reasons(self.checks, v[2]) for v in views]
            why = [next((w for w in ws if w), "") for ws in zip(*why_views, strict=True)]
        ood = np.array([bool(r) for r in why], dtype=bool)
        value[ood] = np.nan
        std[ood] = np.nan
        return Prediction(
            values={name: value[:, i] for i, name in enumerate(OUTPUTS)},
            std={name: std[:, i] for i, name in enumerate(OUTPUTS)},
            ood=ood,
            reason=why,
            lattice_residual_px=checks[:, self._residual_column].astype(np.float32),
            origin_px=origin,
        )

    def network(self, crops: torch.Tensor, side: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The networks' normalised means and log-variances (float32) of front-end outputs,
        in this predictor's :attr:`precision`."""
        bfloat16 = self.precision == "bfloat16"
        # one layout change and cast for all members: each would otherwise make its own
        # (the same rounding as autocast's; 1.2 times the ensemble's rate on 2 CPU cores)
        crops = crops.to(
            torch.bfloat16 if bfloat16 else torch.float32, memory_format=torch.channels_last
        )
        with torch.autocast(self.device.type, torch.bfloat16, enabled=bfloat16):
            return self.model(crops, side)

    def _read(self, pre: Preprocessor, frames: torch.Tensor) -> np.ndarray:
        """``(views, N, values + sigmas + checks + 2)`` of the frames, each view in its own
        frame of reference, in batches (one front end per batch, a network pass per view)."""
        mirrored = len(self.views) > 1
        permutations = {v: disk_permutation(pre.lattice.hk, v) for v in self.views if mirrored}
        results = []
        for lo in range(0, len(frames), self.batch):
            inputs = pre(frames[lo : lo + self.batch])
            origin = inputs.fit.origin_px
            per_view = []
            for view in self.views:
                crops, side, strain = inputs.crops, inputs.side, inputs.fit.strain
                if mirrored:
                    crops, side, strain = view_input(inputs, view, permutations[view])
                mean, log_var = self.network(crops, side)
                value, std = to_physical(mean, log_var, strain)
                std = std * self.sigma_scale
                checks = measure(self.checks, inputs, std)
                per_view.append(torch.cat([value, std, checks, origin.to(value.dtype)], 1))
            # one copy back per batch (on a GPU the transfers, not the kernels, set the pace)
            results.append(torch.stack(per_view).cpu())
        return torch.cat(results, 1).numpy().astype(np.float64)

    @staticmethod
    def _split(out: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        k = len(OUTPUTS)
        return out[:, :k], out[:, k : 2 * k], out[:, 2 * k : -2], out[:, -2:]
