"""The trained part of the model: registered disks + lattice features -> descriptors with sigma.

Input: the disks resampled around the fitted lattice (:mod:`~stem_loop.inference.lattice`),
one channel per disk (up to :data:`MAX_DISKS`, zero-padded), and a vector of side features (the
beam conditions, the lattice's own strain estimate, fit quality, dose). Output: for each
descriptor a mean and a log-variance (heteroscedastic Gaussian). Strain is predicted as a
correction to the lattice estimate, which removes the registration's content bias.
"""

from __future__ import annotations

import torch
from torch import nn

from sim_devices.sample import DESCRIPTOR_NAMES

from .lattice import CROP_PX

#: Disk channels of the network input.
MAX_DISKS = 13
#: Side features: 5 conditions, 3 lattice strain, residual, peak, log dose, 2 origin offset,
#: and per disk its offset from the fitted lattice (2) and its share of the counts (1).
N_SIDE = 13 + 3 * MAX_DISKS
#: Side features of a network that also takes the detector's point-spread (sigma in pixels,
#: the last column; :attr:`~stem_loop.inference.BeamConditions.point_spread_px`).
N_SIDE_POINT_SPREAD = N_SIDE + 1
#: Descriptor order of the outputs (the contract's names).
OUTPUTS: tuple[str, ...] = tuple(DESCRIPTOR_NAMES)
#: Output units: strain corrections in 0.5 %, thickness about 45 nm in 35 nm, tilt in 3 mrad.
STRAIN_UNIT = 0.005
THICKNESS_CENTRE_NM, THICKNESS_UNIT_NM = 45.0, 35.0
TILT_UNIT_MRAD = 3.0
_LOG_VAR_RANGE = (-14.0, 6.0)


class DescriptorNet(nn.Module):
    """Small CNN over the disk stack with a side-feature MLP and a Gaussian head.

    Parameters
    ----------
    width : int
        Channels of the first convolution (doubled twice).
    hidden : int
        Width of the fully connected head.
    side_features : int
        :data:`N_SIDE`, or :data:`N_SIDE_POINT_SPREAD` for a network that takes the detector's
        point-spread as its last side input.
    """

    def __init__(self, width: int = 32, hidden: int = 192, side_features: int = N_SIDE) -> None:
        super().__init__()
        if side_features not in (N_SIDE, N_SIDE_POINT_SPREAD):
            raise ValueError(
                f"side_features must be {N_SIDE} or {N_SIDE_POINT_SPREAD}, got {side_features}"
            )
        self.config = {"width": width, "hidden": hidden}
        if side_features != N_SIDE:  # the shipped networks' metadata stay as they were
            self.config["side_features"] = side_features
        self.side_features = side_features
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(MAX_DISKS, w, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(w, w, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Flatten(),
        )
        flat = 2 * w * (CROP_PX // 8) ** 2
        self.head = nn.Sequential(
            nn.Linear(flat + side_features, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, 2 * len(OUTPUTS)),
        )
        # oneDNN's convolutions run about twice as fast on channels-last tensors on the CPU
        # (inference 9,000 against 4,500 frames/s on one thread; training about 1.3x)
        self.to(memory_format=torch.channels_last)

    @property
    def takes_point_spread(self) -> bool:
        """Whether the detector's point-spread is an input (the last side feature)."""
        return self.side_features == N_SIDE_POINT_SPREAD

    def forward(self, crops: torch.Tensor, side: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised means and log-variances, each ``(N, 6)``."""
        crops = crops.contiguous(memory_format=torch.channels_last)
        hidden = self.head[:-1](torch.cat([self.features(crops), side], dim=1))
        # the read-out in float32 even under bfloat16 autocast (.precision): its 2**-8 rounding
        # of the normalised strain would be 0.002 % of strain; the layer is 1 % of the work
        with torch.autocast(hidden.device.type, enabled=False):
            out = self.head[-1](hidden.float())
        mean, log_var = out.chunk(2, dim=1)
        return mean, log_var.clamp(*_LOG_VAR_RANGE)


class DescriptorEnsemble(nn.Module):
    """Several :class:`DescriptorNet` trained from different seeds, read as one Gaussian.

    The mean is the members' average; the variance is the average of their variances (what
    each member expects from the frame) plus the spread of their means (what they disagree on,
    the model's own uncertainty), after Lakshminarayanan et al., NeurIPS 2017. One member is
    just that network.

    Parameters
    ----------
    members : sequence of DescriptorNet
        The trained networks (same inputs and outputs).
    """

    def __init__(self, members: list[DescriptorNet]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    @classmethod
    def empty(
        cls, size: int, width: int = 32, hidden: int = 192, side_features: int = N_SIDE
    ) -> DescriptorEnsemble:
        """``size`` untrained members of one architecture (to load weights into)."""
        return cls([DescriptorNet(width, hidden, side_features) for _ in range(size)])

    @property
    def takes_point_spread(self) -> bool:
        """Whether the detector's point-spread is an input (the last side feature)."""
        return self.members[0].takes_point_spread

    def forward(self, crops: torch.Tensor, side: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised means and log-variances of the mixture, each ``(N, 6)``."""
        outputs = [member(crops, side) for member in self.members]
        if len(outputs) == 1:
            return outputs[0]
        means = torch.stack([m for m, _ in outputs])
        variances = torch.stack([v.exp() for _, v in outputs])
        mean = means.mean(0)
        variance = variances.mean(0) + means.var(0, unbiased=False)
        return mean, variance.log().clamp(*_LOG_VAR_RANGE)


def to_normalised(descriptors: torch.Tensor, lattice_strain: torch.Tensor) -> torch.Tensor:
    """Descriptors ``(N, 6)`` in physical units to the network's normalised targets."""
    out = descriptors.clone()
    out[:, :3] = (descriptors[:, :3] - lattice_strain) / STRAIN_UNIT
    out[:, 3] = (descriptors[:, 3] - THICKNESS_CENTRE_NM) / THICKNESS_UNIT_NM
    out[:, 4:] = descriptors[:, 4:] / TILT_UNIT_MRAD
    return out


def to_physical(
    mean: torch.Tensor, log_var: torch.Tensor, lattice_strain: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised outputs to descriptors and standard deviations in physical units."""
    units = torch.tensor(
        [STRAIN_UNIT] * 3 + [THICKNESS_UNIT_NM, TILT_UNIT_MRAD, TILT_UNIT_MRAD],
        dtype=mean.dtype,
        device=mean.device,
    )
    value = mean * units
    value[:, :3] += lattice_strain
    value[:, 3] += THICKNESS_CENTRE_NM
    return value, (0.5 * log_var).exp() * units


def gaussian_nll(
    mean: torch.Tensor, log_var: torch.Tensor, target: torch.Tensor, beta: float = 0.5
) -> torch.Tensor:
    """beta-NLL (Seitzer et al., ICLR 2022): the Gaussian NLL weighted by ``var**beta``.

    Plain NLL lets hard samples be explained away by a large variance and slows the fit of the
    mean; ``beta = 0.5`` keeps the mean's gradient alive while the variance stays calibrated.
    """
    nll = 0.5 * (log_var + (target - mean).square() * torch.exp(-log_var))
    if beta:
        nll = nll * torch.exp(beta * log_var).detach()
    return nll.mean()


def widen_side(state: dict[str, torch.Tensor], side_features: int) -> dict[str, torch.Tensor]:
    """A :class:`DescriptorNet` state with ``side_features`` side inputs, the new ones (appended
    last) weighted zero: the network reads every frame as before until it is trained on them.

    Raises
    ------
    ValueError
        If the state has more side inputs than ``side_features``.
    """
    weight = state["head.0.weight"]
    extra = side_features - (weight.shape[1] - _flat_features(state))
    if extra < 0:
        raise ValueError(f"the state has more than {side_features} side inputs")
    if extra == 0:
        return state
    zeros = weight.new_zeros(weight.shape[0], extra)
    return {**state, "head.0.weight": torch.cat([weight, zeros], dim=1)}


def _flat_features(state: dict[str, torch.Tensor]) -> int:
    """Inputs of the head that come from the convolutions (the rest are side features)."""
    channels = state["features.6.weight"].shape[0]
    return channels * (CROP_PX // 8) ** 2
