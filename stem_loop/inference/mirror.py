"""Mirror views: read a frame and its three mirror images, and average what they say.

Both crystals the networks know are symmetric in projection under the two mirrors along the
detector's axes (Si [110]: the mirrors through [001] and [1-10]; SrTiO3 [001]: through [100]
and [010]), and the beam and detector are too. So the pattern of a crystal mirrored across the
detector's columns (``x``) is the pattern of the same crystal with ``exy`` and the x tilt of
the other sign, and likewise for rows (``y``). The networks, trained on one orientation, read
each mirror image as that crystal, but not with the same error: on the exact validation set
the frame's strain error and its x mirror's correlate at 0.79 to 0.89, thickness at 0.65 and
tilt at 0.47 to 0.75 (:func:`mirror_factors` records the averaged error). Averaging the four views
(the frame; mirrored in x; in y; in both) is an ensemble at four times the cost that needs no
training.

The average's sigma is the views' mean sigma (each the calibrated one of a single reading)
times a factor per output, the 68.27 % quantile of ``|error / sigma|`` of the averaged reading
on the exact validation set (:func:`mirror_factors`, run by
:func:`~stem_loop.inference.exact_calibration.calibrate_on_exact`): averaging shrinks the error
by an amount no fast-model frame has measured, so unlike the exact widening this factor may be
below 1.
"""

from __future__ import annotations

import numpy as np
import torch

from sim_devices.sample import DESCRIPTOR_NAMES

from .calibration import coverage_scales
from .network import OUTPUTS

#: The views: the frame's own axes flipped (columns are x, rows y), the frame itself first.
VIEW_AXES: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))


def _signs(axes: tuple[int, ...]) -> list[float]:
    flips_x, flips_y = -1 in axes, -2 in axes
    sign = {"exy": -1.0 if flips_x != flips_y else 1.0}
    sign["tilt_x_mrad"] = -1.0 if flips_x else 1.0
    sign["tilt_y_mrad"] = -1.0 if flips_y else 1.0
    return [sign.get(name, 1.0) for name in OUTPUTS]


#: ``(views, outputs)`` sign of each output read in each view, to bring it back to the frame's.
VIEW_SIGNS = np.array([_signs(axes) for axes in VIEW_AXES])
#: Crystals (material, zone axis) symmetric under both detector-axis mirrors in projection.
MIRROR_SYMMETRIC = frozenset({("Si", "110"), ("SrTiO3", "001")})


def mirror_view(frames: torch.Tensor, view: int) -> torch.Tensor:
    """View ``view`` (an index of :data:`VIEW_AXES`) of ``(N, rows, cols)`` frames."""
    axes = VIEW_AXES[view]
    if not axes:
        return frames
    if frames.dtype == torch.uint16:  # torch has no flip for it (the detector's dtype)
        if frames.device.type == "cpu":
            return torch.from_numpy(np.ascontiguousarray(np.flip(frames.numpy(), axes)))
        frames = frames.to(torch.int32)
    return torch.flip(frames, axes)


def check_symmetric(material: str, zone_axis: str) -> None:
    """Refuse a crystal whose projection lacks the detector-axis mirrors.

    Raises
    ------
    ValueError
        If ``(material, zone_axis)`` is not in :data:`MIRROR_SYMMETRIC`.
    """
    if (material, zone_axis) not in MIRROR_SYMMETRIC:
        known = ", ".join(f"{m} [{z}]" for m, z in sorted(MIRROR_SYMMETRIC))
        raise ValueError(
            f"mirror views need a crystal symmetric under both detector-axis mirrors "
            f"({known}), not {material} [{zone_axis}]"
        )


def average_views(values: np.ndarray, stds: np.ndarray, scale: np.ndarray) -> tuple:
    """The frames' reading from the views'.

    Parameters
    ----------
    values, stds : ndarray
        ``(views, N, outputs)`` readings and calibrated single-reading sigmas, in each view's
        own frame of reference.
    scale : ndarray
        ``(outputs,)`` factors of the averaged sigma (:func:`mirror_factors`).

    Returns
    -------
    tuple of ndarray
        ``(N, outputs)`` averaged values and sigmas, in the frame's reference.
    """
    signs = VIEW_SIGNS[: len(values), None, :]
    return (values * signs).mean(0), stds.mean(0) * scale


def mirror_factors(predictor, validation: dict, *, draws: int, seed: int = 0) -> dict:
    """Sigma factors of the mirror-averaged reading on exact patterns.

    Parameters
    ----------
    predictor : Predictor
        A model with its single-reading sigmas final (after the exact widening), read with
        mirror views but without their factors.
    validation : dict
        Exact patterns as :func:`~stem_loop.inference.evaluation.load_heldout` returns.
    draws : int
        Poisson draws of each pattern pooled.
    seed : int
        Seed of the draws (the same draws as the exact widening's for the same seed).

    Returns
    -------
    dict
        ``factors``, ``coverage_before`` (the views' mean sigma), ``rms`` of the averaged and
        ``rms_single`` of the frame's own reading (per output, in the order of ``outputs``),
        ``patterns``, ``draws`` and ``frames_used``.

    Raises
    ------
    ValueError
        If no validation frame is in distribution.
    """
    from .evaluation import predict_heldout, repeat_draws
    from .exact_calibration import VALIDATION_DOSE

    pooled = repeat_draws(validation, draws)
    single = predict_heldout(predictor.single(), pooled, VALIDATION_DOSE, seed)
    result = predict_heldout(predictor, pooled, VALIDATION_DOSE, seed)
    usable = ~result["ood"] & ~single["ood"]
    if not usable.any():
        raise ValueError("every validation frame is flagged out of distribution")

    def errors(r: dict) -> np.ndarray:
        return np.stack([r["values"][k][usable] - pooled[k][usable] for k in DESCRIPTOR_NAMES], 1)

    error = errors(result)
    std = np.stack([result["std"][k][usable] for k in DESCRIPTOR_NAMES], 1)
    z = np.abs(error) / std
    return dict(
        outputs=list(DESCRIPTOR_NAMES),
        factors=[float(q) for q in coverage_scales(torch.as_tensor(z)).tolist()],
        coverage_before=[float(v) for v in np.mean(z <= 1.0, axis=0)],
        rms=[float(v) for v in np.sqrt(np.mean(error**2, axis=0))],
        rms_single=[float(v) for v in np.sqrt(np.mean(errors(single) ** 2, axis=0))],
        patterns=int(len(validation["run_index"])),
        draws=int(draws),
        frames_used=int(usable.sum()),
    )
