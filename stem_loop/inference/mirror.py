"""Mirror views: read a frame and its mirror images, and average what they say.

Both crystals the networks know are symmetric in projection under the two mirrors along the
detector's axes (Si [110]: the mirrors through [001] and [1-10]; SrTiO3 [001]: through [100]
and [010]), and the beam and detector are too. So the pattern of a crystal mirrored across the
detector's columns (``x``) is the pattern of the same crystal with ``exy`` and the x tilt of
the other sign, and likewise for rows (``y``). The networks, trained on one orientation, read
each mirror image as that crystal, but not with the same error: on the exact validation set
the frame's strain error and its x mirror's correlate at 0.79 to 0.89, thickness at 0.65 and
tilt at 0.47 to 0.75. Averaging the views is an ensemble that needs no training:
:data:`VIEW_SETS` holds four views (the frame; mirrored in x; in y; in both) and a pair (the
frame and its point reflection, both axes mirrored: x and y treated alike, half the work).

The views are formed from the network's inputs, not the frames (:func:`view_input`): the
lattice is registered once, then each disk crop is mirrored, the disks renumbered to their
mirror partners and the side features' signs turned. That costs one front end and a network
pass per view instead of both per view; the reading agrees with the front end run on the
mirrored frame (:func:`mirror_view`) to a small fraction of sigma
(``tests/inference/test_mirror.py``), and the held-out accuracy is the same.

The average's sigma is the views' mean sigma (each the calibrated one of a single reading)
times a factor per output, the 68.27 % quantile of ``|error / sigma|`` of the averaged reading
on the exact validation set (:func:`mirror_factors`, run by
:func:`~stem_loop.inference.exact_calibration.calibrate_on_exact` for each view set):
averaging shrinks the error by an amount no fast-model frame has measured, so unlike the
exact widening this factor may be below 1.
"""

from __future__ import annotations

import numpy as np
import torch

from sim_devices.sample import DESCRIPTOR_NAMES

from .calibration import coverage_scales
from .lattice import CROP_PX
from .network import MAX_DISKS, OUTPUTS
from .preprocess import SIDE_DISKS, SIDE_ORIGIN, SIDE_STRAIN, NetworkInput

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
#: The views read for each view count (indices of :data:`VIEW_AXES`): one is the frame alone;
#: the pair is the frame and its point reflection.
VIEW_SETS: dict[int, tuple[int, ...]] = {1: (0,), 2: (0, 3), 4: (0, 1, 2, 3)}


#: The views ``mirror="auto"`` reads for each precision of the networks
#: (:func:`auto_view_count`).
AUTO_VIEWS: dict[str, int] = {"bfloat16": 2, "float32": 1}


def auto_view_count(precision: str) -> int:
    """How many views ``Predictor(mirror="auto")`` reads: the pair where the networks run in
    bfloat16 (the chip computes it natively), else the frame once.

    The rule keeps the live reading at the detector's pace on the edge computer: on 2 EPYC
    cores the pair reads 2,400 to 2,700 frames/s end to end with bfloat16 networks and 1,640
    with float32 ones (the single reading 2,670); four views, 1,670 even in bfloat16. Where
    bfloat16 is native the pair reads strain at 0.094 / 0.096 / 0.065 % on both held-out sets
    against 0.103 / 0.100 / 0.066 % read once.
    """
    return AUTO_VIEWS[precision]


def views_of(mirror: bool | int) -> tuple[int, ...]:
    """The views a ``Predictor(mirror=...)`` reads: ``False`` (or 1) the frame alone,
    ``True`` (or 4) all four, 2 the pair (:data:`VIEW_SETS`).

    Raises
    ------
    ValueError
        For any other value.
    """
    count = 4 if mirror is True else 1 if mirror is False else mirror
    if isinstance(count, bool) or count not in VIEW_SETS:
        raise ValueError(f"mirror={mirror!r}: use False, True, or a view count 1, 2 or 4")
    return VIEW_SETS[count]


def calibration_key(views: tuple[int, ...]) -> str:
    """Where the sigma factors of reading ``views`` live in ``sigma_calibration``: ``mirror``
    for the four views (as first shipped), ``mirror2`` for the pair."""
    return "mirror" if len(views) == 4 else f"mirror{len(views)}"


def disk_permutation(hk: np.ndarray, view: int) -> torch.Tensor:
    """``(D,)`` index of each disk's partner in view ``view``: disk ``i`` of the mirrored frame
    is disk ``permutation[i]`` of the frame, mirrored.

    ``hk`` are the registered disks' indices (:func:`~.lattice.expected_disks`; ``h`` along
    the detector's x, ``k`` along y).

    Raises
    ------
    ValueError
        If a disk's mirror partner is not among them (the registered set is not symmetric).
    """
    axes = VIEW_AXES[view]
    flip = np.array([-1 if -1 in axes else 1, -1 if -2 in axes else 1])
    out = []
    for h, k in np.asarray(hk) * flip:
        match = np.flatnonzero((hk[:, 0] == h) & (hk[:, 1] == k))
        if len(match) != 1:
            raise ValueError(
                f"disk ({-h if flip[0] < 0 else h}, {-k if flip[1] < 0 else k}) has no mirror "
                "partner among the registered disks; mirror views cannot be formed"
            )
        out.append(int(match[0]))
    return torch.as_tensor(out)


def view_input(
    inputs: NetworkInput, view: int, permutation: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The network's inputs for view ``view`` of frames, from their own (mirror-margin) inputs.

    Parameters
    ----------
    inputs : NetworkInput
        Of the frames, cut with ``mirror_margin`` (crops ``CROP_PX + 1`` wide).
    view : int
        Index of :data:`VIEW_AXES`.
    permutation : Tensor
        :func:`disk_permutation` of the registered disks for ``view``.

    Returns
    -------
    crops, side, lattice_strain : Tensor
        ``(N, MAX_DISKS, CROP_PX, CROP_PX)``, ``(N, side features)`` and ``(N, 3)``: what the
        front end gives for the mirrored frames, save the registration's own rounding.
    """
    axes = VIEW_AXES[view]
    crops = inputs.crops
    side, strain = inputs.side, inputs.fit.strain
    if axes:
        d = len(permutation)
        # mirroring the wide crop's offsets -C/2..C/2 and keeping the first C gives the
        # mirrored frame's -C/2..C/2-1 around its (mirrored) disk centre
        crops = crops.clone()
        crops[:, :d] = crops[:, permutation.to(crops.device)]
        crops = crops.flip(axes)
        sign_x = -1.0 if -1 in axes else 1.0
        sign_y = -1.0 if -2 in axes else 1.0
        side = side.clone()
        side[:, SIDE_STRAIN + 2] *= sign_x * sign_y
        side[:, SIDE_ORIGIN] *= sign_x
        side[:, SIDE_ORIGIN + 1] *= sign_y
        disks = side[:, SIDE_DISKS : SIDE_DISKS + 3 * MAX_DISKS].reshape(-1, MAX_DISKS, 3)
        disks[:, :d] = disks[:, permutation.to(side.device)].clone()
        disks[..., 0] *= sign_x
        disks[..., 1] *= sign_y
        strain = strain.clone()
        strain[:, 2] *= sign_x * sign_y
    return crops[..., :CROP_PX, :CROP_PX], side, strain


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


def average_views(
    values: np.ndarray, stds: np.ndarray, scale: np.ndarray, views: tuple[int, ...] = (0, 1, 2, 3)
) -> tuple:
    """The frames' reading from the views'.

    Parameters
    ----------
    values, stds : ndarray
        ``(views, N, outputs)`` readings and calibrated single-reading sigmas, in each view's
        own frame of reference.
    scale : ndarray
        ``(outputs,)`` factors of the averaged sigma (:func:`mirror_factors`).
    views : tuple of int
        Which views (indices of :data:`VIEW_AXES`) ``values`` hold, in order.

    Returns
    -------
    tuple of ndarray
        ``(N, outputs)`` averaged values and sigmas, in the frame's reference.
    """
    signs = VIEW_SIGNS[list(views), None, :]
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
        views=[int(v) for v in predictor.views],
        patterns=int(len(validation["run_index"])),
        draws=int(draws),
        frames_used=int(usable.sum()),
    )
