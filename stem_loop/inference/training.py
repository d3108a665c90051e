"""Train the descriptor network on generated shards, with checkpoints to resume from.

After training, the predicted standard deviations are calibrated on held-back fast-model frames
(one scale per descriptor, so that the normalised errors have unit variance) and the
out-of-distribution thresholds are set from the same frames' lattice-fit statistics. An
ensemble's sigmas are instead calibrated on separate frames with strain-dependent disk contents
when it is given them (:mod:`~stem_loop.inference.calibration`). Weights go
to ``safetensors``; everything else the predictor needs goes to a JSON file beside them.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .calibration import ONE_SIGMA_COVERAGE, coverage_scales
from .dataset import load_shards
from .lattice import MAX_LATTICE_STRAIN
from .network import (
    N_SIDE,
    N_SIDE_POINT_SPREAD,
    OUTPUTS,
    DescriptorEnsemble,
    DescriptorNet,
    gaussian_nll,
    to_normalised,
    to_physical,
    widen_side,
)

#: File names of a trained model (weights and metadata).
WEIGHTS_FILE = "descriptor_net.safetensors"
META_FILE = "descriptor_net.json"


@dataclass(frozen=True)
class TrainingSettings:
    """Optimisation settings."""

    epochs: int = 14
    batch: int = 256
    learning_rate: float = 2e-3
    weight_decay: float = 1e-5
    validation_fraction: float = 0.05
    seed: int = 0
    split_seed: int = 0
    width: int = 32
    hidden: int = 192
    #: Largest gradient norm of a step (typical steps: 0.4 to 0.7).
    grad_clip: float = 2.0
    #: The network also reads each frame's detector point-spread (the shards'
    #: ``point_spread_px``, 0 where they have none) as its last side feature.
    point_spread_input: bool = False

    @property
    def side_features(self) -> int:
        """Side inputs of the network these settings train."""
        return N_SIDE_POINT_SPREAD if self.point_spread_input else N_SIDE


def _tensors(data: dict[str, np.ndarray], side_features: int = N_SIDE) -> tuple[torch.Tensor, ...]:
    """Network inputs, lattice strain and normalised targets of shard ``data``; with
    :data:`~.network.N_SIDE_POINT_SPREAD` side features the frames' point-spread is appended."""
    crops = torch.as_tensor(data["crops"])  # float16, converted per batch
    side = torch.as_tensor(data["side"])
    if side_features == N_SIDE_POINT_SPREAD:
        spread = data.get("point_spread_px", np.zeros(len(side), dtype=np.float32))
        side = torch.cat([side, torch.as_tensor(spread, dtype=side.dtype)[:, None]], dim=1)
    lattice = torch.as_tensor(data["lattice_strain"])
    target = to_normalised(torch.as_tensor(data["descriptors"]), lattice)
    return crops, side, lattice, target


def _evaluate(model: DescriptorNet, crops, side, target, batch: int = 1024):
    model.eval()
    means, log_vars = [], []
    with torch.no_grad():
        for lo in range(0, len(side), batch):
            m, v = model(crops[lo : lo + batch].float(), side[lo : lo + batch])
            means.append(m)
            log_vars.append(v)
    mean, log_var = torch.cat(means), torch.cat(log_vars)
    return mean, log_var, float(gaussian_nll(mean, log_var, target, beta=0.0))


def train(
    shard_paths: list[Path],
    out: str | Path,
    settings: TrainingSettings | None = None,
    *,
    device: str | torch.device = "cpu",
    progress: bool = False,
    start_from: str | Path | None = None,
    start_member: int = 0,
) -> dict:
    """Train (or resume training) and write the weights and metadata into ``out``.

    Parameters
    ----------
    shard_paths : list of Path
        Training shards (:func:`~stem_loop.inference.dataset.generate_shards`).
    out : str or Path
        Directory of the checkpoint, weights and metadata.
    settings : TrainingSettings, optional
        Optimisation settings (the defaults reproduce the shipped members).
    device : str or torch.device
        Where to train (``"cuda"`` on a GPU machine). The whole data set moves there; the
        recipe (batches, order, schedule) is the same on every device, the floating-point
        results are not bit-identical. A checkpoint resumes on any device.
    progress : bool
        Print a line per epoch.
    start_from : str or Path, optional
        A trained model directory (:func:`load_model`) to fine-tune: the network starts from
        its member ``start_member`` instead of random weights (the architecture must match
        ``settings``, except that a point-spread input, ``settings.point_spread_input``, may
        be new: it starts weighted zero); a checkpoint in ``out`` still takes precedence.
    start_member : int
        Which member of ``start_from`` to start from.

    Returns
    -------
    dict
        The metadata written to :data:`META_FILE` (training history included).
    """
    settings = settings or TrainingSettings()
    device = torch.device(device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(settings.seed)
    data = load_shards(shard_paths)
    tensors = _tensors(data, settings.side_features)
    crops, side, lattice, target = (t.to(device) for t in tensors)
    n = len(side)
    val, trn = _usable_split(n, tensors[2], settings)
    val, trn = val.to(device), trn.to(device)

    # initialised on the CPU (its generator, seeded above): the same weights on every device
    model = DescriptorNet(settings.width, settings.hidden, settings.side_features)
    if start_from is not None:  # a new point-spread input starts weighted zero
        model.load_state_dict(
            widen_side(member_state(start_from, start_member), settings.side_features)
        )
    model.to(device)
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    steps = settings.epochs * ((len(trn) + settings.batch - 1) // settings.batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=settings.learning_rate, total_steps=steps, pct_start=0.1
    )
    checkpoint = out / "checkpoint.pt"
    history: list[dict] = []
    first_epoch = 0
    best: dict | None = None  # weights of the epoch with the lowest validation NLL
    if checkpoint.exists():
        state = torch.load(checkpoint, weights_only=True, map_location=device)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        first_epoch = int(state["epoch"])
        history = json.loads(state["history"])
        best = state.get("best")
        if progress:
            print(f"  resuming after epoch {first_epoch}", flush=True)

    for epoch in range(first_epoch, settings.epochs):
        start = time.perf_counter()
        model.train()
        shuffle = torch.Generator().manual_seed(settings.seed * 1_000_003 + epoch)
        perm = trn[torch.randperm(len(trn), generator=shuffle).to(device)]
        total = torch.zeros((), device=device)  # summed on the device: no sync per step
        for lo in range(0, len(perm), settings.batch):
            idx = perm[lo : lo + settings.batch]
            mean, log_var = model(crops[idx].float(), side[idx])
            loss = gaussian_nll(mean, log_var, target[idx])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            optimiser.step()
            schedule.step()
            total += loss.detach() * len(idx)
        _, _, val_nll = _evaluate(model, crops[val], side[val], target[val])
        history.append(
            dict(
                epoch=epoch + 1,
                train_loss=float(total) / len(perm),
                val_nll=val_nll,
                seconds=time.perf_counter() - start,
            )
        )
        if len(history) == 1 or val_nll < min(h["val_nll"] for h in history[:-1]):
            best = {k: v.detach().clone() for k, v in model.state_dict().items()}
        torch.save(
            dict(
                model=model.state_dict(),
                optimiser=optimiser.state_dict(),
                schedule=schedule.state_dict(),
                epoch=epoch + 1,
                history=json.dumps(history),
                best=best,
            ),
            checkpoint,
        )
        if progress:
            h = history[-1]
            print(
                f"  epoch {h['epoch']}/{settings.epochs}: loss {h['train_loss']:.4f}, "
                f"validation NLL {h['val_nll']:.4f}, {h['seconds']:.0f} s",
                flush=True,
            )

    if best is not None:  # early stopping: keep the epoch that generalised best
        model.load_state_dict(best)
    best_epoch = min(history, key=lambda h: h["val_nll"])["epoch"] if history else 0
    model.to("cpu")
    meta = _calibrate(model, data, tensors, val.cpu())
    meta.update(
        network=model.config,
        training=dict(
            settings=asdict(settings),
            frames=n,
            failed_fits=n - len(val) - len(trn),  # left out: lattice fit beyond the limit
            best_epoch=best_epoch,
            history=history,
            data_ranges=_recorded_ranges(shard_paths),
        ),
    )
    if start_from is not None:
        meta["training"]["start_from"] = dict(path=str(start_from), member=start_member)
    return _write(out, model, meta)


def _write(out: Path, model: torch.nn.Module, meta: dict) -> dict:
    """Weights (``safetensors``) and metadata (JSON) of ``model`` into ``out``; returns ``meta``."""
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / WEIGHTS_FILE)
    (out / META_FILE).write_text(json.dumps(meta, indent=1))
    return meta


def _split(n: int, settings: TrainingSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the held-back and the training frames (the split depends on ``split_seed``)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(settings.split_seed))
    n_val = max(1, int(n * settings.validation_fraction))
    return order[:n_val], order[n_val:]


def _usable_split(
    n: int, lattice_strain: torch.Tensor, settings: TrainingSettings
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_split`, without the frames whose lattice fit failed.

    The predictor flags a frame whose disks need more than ``MAX_LATTICE_STRAIN`` to fit (about
    5 in 10,000 training frames, mostly at 10^3 e/frame); their targets lie tens of sigmas out
    and one in a batch multiplies the gradient norm by about 20.
    """
    usable = _fit_succeeded(lattice_strain)
    return tuple(part[usable[part]] for part in _split(n, settings))


def _fit_succeeded(lattice_strain: torch.Tensor) -> torch.Tensor:
    """Frames whose lattice fit the predictor would read (NaN strain fails, as it does there)."""
    return lattice_strain.abs().amax(1) <= MAX_LATTICE_STRAIN


def _calibrate(
    model: torch.nn.Module,
    data: dict[str, np.ndarray],
    tensors: tuple[torch.Tensor, ...],
    val: torch.Tensor,
) -> dict:
    """Sigma scales, OOD thresholds and rms errors of ``model`` on the held-back frames.

    ``tensors`` are :func:`_tensors` of ``data`` (the caller has them already).
    """
    crops, side, lattice, target = tensors
    mean, log_var, _ = _evaluate(model, crops[val], side[val], target[val])
    z2 = ((target[val] - mean).square() * torch.exp(-log_var)).mean(0)
    sigma_scale = z2.sqrt()  # calibrates the predicted sigma on held-back frames
    value, _ = to_physical(mean, log_var, lattice[val])
    truth = torch.as_tensor(data["descriptors"])[val]
    rms = (value - truth).square().mean(0).sqrt()
    residual = torch.as_tensor(data["residual_px"])[val]
    peak = torch.as_tensor(data["peak"])[val]
    return dict(
        outputs=list(OUTPUTS),
        sigma_scale=sigma_scale.tolist(),
        ood=dict(
            max_residual_px=float(torch.quantile(residual, 0.999)) * 1.5,
            min_peak=float(torch.quantile(peak, 0.001)) / 1.5,
        ),
        validation_rms=dict(zip(OUTPUTS, rms.tolist(), strict=True)),
    )


def _coverage_calibration(model: torch.nn.Module, data: dict[str, np.ndarray]) -> dict:
    """Sigma scales (and what set them) from the calibration frames ``data``."""
    crops, side, lattice, target = _tensors(data, model.members[0].side_features)
    usable = _fit_succeeded(lattice)  # the others are flagged, not read
    crops, side, target = crops[usable], side[usable], target[usable]
    mean, log_var, _ = _evaluate(model, crops, side, target)
    z = (target - mean) * torch.exp(-0.5 * log_var)
    scales = coverage_scales(z)
    return dict(
        sigma_scale=scales.tolist(),
        sigma_calibration=dict(
            frames=len(side),
            physics="fast model, strain-dependent disk contents",
            statistic=f"{100 * ONE_SIGMA_COVERAGE:.2f} % quantile of |error / sigma|",
            variance_scale=z.square().mean(0).sqrt().tolist(),
        ),
    )


def load_model(path: str | Path) -> tuple[DescriptorEnsemble, dict]:
    """The network (or ensemble) in ``path`` and its metadata; tensors only, no pickle.

    Raises
    ------
    FileNotFoundError
        If the directory lacks the weights or their metadata.
    """
    path = Path(path)
    weights, meta_path = path / WEIGHTS_FILE, path / META_FILE
    for needed in (weights, meta_path):
        if not needed.is_file():
            raise FileNotFoundError(
                f"no trained model at {needed}; run 'stem-loop train' to make one"
            )
    meta = json.loads(meta_path.read_text())
    state = load_file(weights)
    size = int(meta.get("members", 0))
    if size:
        model = DescriptorEnsemble.empty(size, **meta["network"])
    else:  # one network, stored on its own
        model = DescriptorEnsemble([DescriptorNet(**meta["network"])])
        state = {f"members.0.{k}": v for k, v in state.items()}
    model.load_state_dict(state)
    return model.eval(), meta


def member_state(path: str | Path, index: int = 0) -> dict[str, torch.Tensor]:
    """The weights of member ``index`` of the model in ``path`` (a network to fine-tune).

    Raises
    ------
    FileNotFoundError
        If the directory lacks the weights or their metadata.
    IndexError
        If the model has no member ``index``.
    """
    model, _ = load_model(path)
    if not 0 <= index < len(model.members):
        raise IndexError(f"the model in {path} has {len(model.members)} member(s), not {index + 1}")
    return {k: v.clone() for k, v in model.members[index].state_dict().items()}


def build_ensemble(
    member_dirs: list[Path],
    shard_paths: list[Path],
    out: str | Path,
    settings: TrainingSettings | None = None,
    calibration_paths: list[Path] | None = None,
) -> dict:
    """Join trained members into one ensemble and calibrate it.

    Every member must have been trained on ``shard_paths`` with the same ``split_seed`` and
    ``validation_fraction`` as ``settings``, so that no member saw the held-back frames (they
    set the OOD thresholds and, without ``calibration_paths``, the sigma scales).

    ``calibration_paths`` are shards of
    :func:`~stem_loop.inference.calibration.generate_calibration` (strain-dependent disk
    contents); the sigma scales then make the 1-sigma interval cover 68.27 % of their errors
    (:func:`~stem_loop.inference.calibration.coverage_scales`).

    Returns
    -------
    dict
        The metadata written to :data:`META_FILE` (each member's training record included).
    """
    settings = settings or TrainingSettings()
    members, records = [], []
    for directory in member_dirs:
        model, meta = load_model(directory)
        trained = meta["training"]["settings"]
        for key in ("split_seed", "validation_fraction"):
            used = trained.get(key, 0)  # weights from before split_seed existed used 0
            if used != getattr(settings, key):
                raise ValueError(
                    f"member {directory} was trained with {key}={used}, "
                    f"the ensemble calibrates with {getattr(settings, key)}: it saw "
                    "frames the ensemble would be calibrated on"
                )
        members.extend(model.members)
        records.append(dict(meta["training"], validation_rms=meta["validation_rms"]))
    configs = {json.dumps(m.config, sort_keys=True) for m in members}
    if len(configs) != 1:
        raise ValueError(f"members differ in architecture: {sorted(configs)}")
    ensemble = DescriptorEnsemble(members)
    data = load_shards(shard_paths)
    for directory, record in zip(member_dirs, records, strict=True):
        if record["frames"] != len(data["side"]):
            raise ValueError(
                f"member {directory} was trained on {record['frames']} frames, the shards "
                f"hold {len(data['side'])}: it was trained on other data"
            )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tensors = _tensors(data, members[0].side_features)
    val = _usable_split(len(data["side"]), tensors[2], settings)[0]
    meta = _calibrate(ensemble, data, tensors, val)
    training = dict(members=records, data_ranges=_recorded_ranges(shard_paths))
    if calibration_paths:
        meta.update(_coverage_calibration(ensemble, load_shards(calibration_paths)))
        meta["sigma_calibration"]["data_ranges"] = _recorded_ranges(calibration_paths)
    meta.update(network=members[0].config, members=len(members), training=training)
    return _write(out, ensemble, meta)


def _recorded_ranges(shard_paths: list[Path]) -> dict | None:
    """The ``ranges.json`` that generation wrote beside the shards (what the frames span and
    which disk contents they have), or None where there is none."""
    path = Path(shard_paths[0]).parent / "ranges.json"
    return json.loads(path.read_text()) if path.is_file() else None
