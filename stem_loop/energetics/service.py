"""Strain energies on demand: cache, surrogate and DFT dispatch behind one non-blocking call.

:class:`EnergyService` turns in-plane strains into energies relative to the relaxed
reference (meV/atom). :meth:`EnergyService.request` returns at once; each request is answered
exactly once, in order of completion, with an :class:`EnergyEstimate` that says where the
number comes from:

``dft``
    a GPAW calculation of this structure;
``cache``
    a structure identical (to ``resolution``) to one already computed or on its way, in this
    service or, with a :class:`~stem_loop.energetics.store.ResultStore`, in an earlier run;
``surrogate``
    the GP's prediction, used when its standard deviation is within ``tolerance_mev``
    (counting the structures whose DFT is pending as known).

Requests made before the reference is relaxed wait for it (it runs in the background).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .dispatch import Dispatcher
from .materials import get_material
from .reference import Reference, relax_reference
from .settings import GPAWSettings
from .store import ResultStore, StoredEnergy
from .structures import build_structure, validate_strain
from .surrogate import StrainEnergyGP

log = logging.getLogger(__name__)

Strain = tuple[float, float, float]


@dataclass
class EnergyEstimate:
    """One published strain energy.

    Attributes
    ----------
    index : int
        Order of the request (0, 1, ...); the agent uses its position index.
    strain : tuple of float
        ``(exx, eyy, exy)``.
    energy_mev_per_atom : float
        Relative to the relaxed reference; NaN when DFT failed and there is no model yet.
    std_mev_per_atom : float
        Uncertainty: the DFT noise for ``dft``/``cache``, the GP's for ``surrogate``.
    source : str
        ``dft``, ``cache`` or ``surrogate``.
    calculator : dict
        The GPAW settings of the DFT behind the number (for ``surrogate``: of its data).
    wall_s : float
        DFT wall time (0 for ``cache`` and ``surrogate``).
    reason : str or None
        Why DFT failed or was retried, if it was.
    extra : dict
        Attempts and worker of a DFT result.
    context : dict
        What the requester attached to the request (e.g. run uid and event number).
    """

    index: int
    strain: Strain
    energy_mev_per_atom: float
    std_mev_per_atom: float
    source: str
    calculator: dict[str, Any]
    wall_s: float
    reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        return {
            "index": self.index,
            "strain": list(self.strain),
            "energy_mev_per_atom": self.energy_mev_per_atom,
            "std_mev_per_atom": self.std_mev_per_atom,
            "source": self.source,
            "calculator": self.calculator,
            "wall_s": self.wall_s,
            "reason": self.reason,
            **self.extra,
            **self.context,
        }


class EnergyService:
    """Energies of strained structures for one material and one set of DFT settings.

    Parameters
    ----------
    material : str
        ``"Si"`` or ``"SrTiO3"``.
    settings : GPAWSettings
    dispatcher : Dispatcher
        Runs the DFT jobs (reference and strained structures).
    tolerance_mev : float or None
        Use the surrogate where its standard deviation is at most this (meV/atom);
        ``None`` sends every distinct structure to DFT.
    resolution : float
        Strains equal after rounding to this are the same structure (computed once).
    reference : Reference, optional
        Skip the relaxation (e.g. read earlier); must match ``settings``.
    noise_mev : float
        Standard deviation reported for DFT energies (their numerical noise).
    min_dft_points : int
        The surrogate answers only once it holds this many DFT energies: near zero strain
        the prior's σ alone is below the tolerance, but its mean (zero) is uninformed.
        Until then positions wait for running jobs, or go to DFT when none is running.
    store : ResultStore, optional
        DFT results of earlier runs with the same settings and reference: read when the
        reference is known (they answer as ``cache`` and train the surrogate), and every new
        DFT result is appended. ``None`` keeps results in memory only.
    reuse_stored : bool
        Read ``store``; ``False`` recomputes every structure (and still appends).

    Attributes
    ----------
    dft_calls : int
        DFT jobs submitted by this service.
    stored_results : int
        DFT results read from ``store``.
    """

    def __init__(
        self,
        material: str,
        settings: GPAWSettings,
        dispatcher: Dispatcher,
        *,
        tolerance_mev: float | None = 0.1,
        resolution: float = 1e-6,
        reference: Reference | None = None,
        noise_mev: float = 0.005,
        min_dft_points: int = 3,
        store: ResultStore | None = None,
        reuse_stored: bool = True,
    ) -> None:
        self.material = get_material(material)
        self.settings = settings
        self.dispatcher = dispatcher
        self.tolerance_mev = tolerance_mev
        self.resolution = resolution
        self.noise_mev = noise_mev
        self.min_dft_points = min_dft_points
        self.surrogate = StrainEnergyGP()
        self.results: list[EnergyEstimate] = []
        self.queue: queue.Queue[EnergyEstimate] = queue.Queue()
        self._subscribers: list[Callable[[EnergyEstimate], None]] = []
        self._lock = threading.RLock()
        self._done: dict[Strain, EnergyEstimate] = {}  # DFT results by rounded strain
        self._failed: dict[Strain, str] = {}
        self._pending: dict[Strain, list[int]] = {}  # DFT on its way -> waiting requests
        self._deferred: list[tuple[int, Strain]] = []  # waiting for pending DFT to finish
        self._backlog: list[tuple[int, Strain]] = []  # waiting for the reference
        self._contexts: dict[int, dict[str, Any]] = {}
        self._requests = 0
        self._answered = 0
        self._all_answered = threading.Condition(self._lock)
        self.dft_calls = 0
        self.store = store
        self.reuse_stored = reuse_stored
        self.stored_results = 0
        self.reference: Reference | None = reference
        self.reference_error: str | None = None
        self._reference_thread: threading.Thread | None = None
        if reference is not None:
            self._load_store()

    def _load_store(self) -> None:
        """Known DFT results from :attr:`store` (call with the reference set)."""
        if self.store is None or not self.reuse_stored:
            return
        assert self.reference is not None
        entries = self.store.load(self.reference.lattice_constant_a)
        with self._lock:
            loaded: list[Strain] = []
            for entry in entries:
                strain = self.key(entry.strain)
                if strain in self._done:
                    continue
                energy = 1000.0 * (entry.energy_ev_per_atom - self.reference.energy_ev_per_atom)
                self._done[strain] = EnergyEstimate(
                    index=-1,
                    strain=strain,
                    energy_mev_per_atom=energy,
                    std_mev_per_atom=self.noise_mev,
                    source="dft",
                    calculator=entry.provenance.get("calculator", self.settings.as_dict()),
                    wall_s=float(entry.provenance.get("wall_s", 0.0)),
                    reason=entry.provenance.get("reason"),
                )
                loaded.append(strain)
            if loaded:
                self.surrogate.add(loaded, [self._done[s].energy_mev_per_atom for s in loaded])
            self.stored_results = len(loaded)

    # -- reference -----------------------------------------------------------------------------
    def start(self) -> EnergyService:
        """Relax (or load) the reference in the background; returns immediately."""
        with self._lock:
            if self.reference is None and self._reference_thread is None:
                self._reference_thread = threading.Thread(
                    target=self._relax, name="stem-loop-reference", daemon=True
                )
                self._reference_thread.start()
        return self

    def _relax(self) -> None:
        try:
            reference = relax_reference(self.material, self.settings, self.dispatcher)
        except Exception as err:  # noqa: BLE001 - reported on every request instead
            log.error("reference relaxation failed: %s", err)
            with self._lock:
                self.reference_error = str(err)
                backlog, self._backlog = self._backlog, []
            for index, strain in backlog:
                self._answer_failed(index, strain, f"no reference: {err}")
            return
        with self._lock:
            self.reference = reference
            self._load_store()
            backlog, self._backlog = self._backlog, []
        for index, strain in backlog:
            self._route(index, strain)

    def wait_for_reference(self, timeout: float | None = None) -> Reference:
        """Block until the reference is ready (starting it if needed)."""
        self.start()
        if self._reference_thread is not None:
            self._reference_thread.join(timeout)
        if self.reference is None:
            raise RuntimeError(self.reference_error or "reference not ready")
        return self.reference

    # -- requests ------------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[EnergyEstimate], None]) -> None:
        """Call ``callback(estimate)`` for every published estimate (from worker threads)."""
        self._subscribers.append(callback)

    def key(self, strain) -> Strain:
        """The rounded strain that identifies a structure."""
        r = self.resolution
        # Round to the grid, then to 12 decimals so 0.0079 prints as 0.0079; -0.0 becomes 0.0.
        return tuple(round(float(np.round(v / r) * r), 12) + 0.0 for v in strain)  # type: ignore[return-value]

    def request(self, strain, context: dict[str, Any] | None = None) -> int:
        """Ask for the energy at ``strain = (exx, eyy, exy)``; return the request index.

        Never blocks on DFT. The answer is appended to :attr:`results`, put on :attr:`queue`
        and passed to subscribers once known; ``context`` travels with it.

        Raises
        ------
        ValueError
            For a non-finite or absurd strain (nothing is submitted).
        """
        strain = self.key(validate_strain(*strain))
        with self._lock:
            index = self._requests
            self._requests += 1
            if context:
                self._contexts[index] = dict(context)
            if self.reference is None:
                self._backlog.append((index, strain))
                self.start()
                return index
        self._route(index, strain)
        return index

    def request_many(self, strains) -> list[int]:
        """:meth:`request` for each row of ``strains`` (shape (n, 3))."""
        return [self.request(s) for s in np.atleast_2d(np.asarray(strains, float))]

    def _pending_strains(self) -> np.ndarray:
        return np.array(list(self._pending)) if self._pending else np.zeros((0, 3))

    def _route(self, index: int, strain: Strain) -> None:
        submit = False
        with self._lock:
            if self.reference_error is not None and self.reference is None:
                pass
            elif strain in self._done:
                estimate = self._copy(self._done[strain], index, source="cache")
                self._publish(estimate)
                return
            elif strain in self._pending:
                self._pending[strain].append(index)
                return
            elif self.tolerance_mev is not None:
                mean, std = self.surrogate.predict([strain])
                informed = self.surrogate.n_observations >= self.min_dft_points
                if informed and std[0] <= self.tolerance_mev:
                    self._publish(self._surrogate(index, strain, mean[0], std[0]))
                    return
                _, std_all = self.surrogate.predict([strain], self._pending_strains())
                if self._pending and (std_all[0] <= self.tolerance_mev or not informed):
                    self._deferred.append((index, strain))
                    return
                submit = strain not in self._failed
            else:
                submit = strain not in self._failed
            if submit:
                self._pending[strain] = [index]
                self.dft_calls += 1
        if not submit:
            reason = self.reference_error or self._failed.get(strain, "DFT failed")
            self._answer_failed(index, strain, reason)
            return
        assert self.reference is not None
        atoms = build_structure(
            dict(zip(("exx", "eyy", "exy"), strain, strict=True)),
            self.material,
            lattice_constant_a=self.reference.lattice_constant_a,
        )
        job = self.dispatcher.job(atoms, self.settings, label=f"strain {strain}")
        future = self.dispatcher.submit(job)
        future.add_done_callback(lambda f: self._dft_done(strain, f))

    def _dft_done(self, strain: Strain, future: Future) -> None:
        try:
            result = future.result()
            failure = None if result.ok else result.reason
        except Exception as err:  # noqa: BLE001 - a lost job: report, do not hang
            result, failure = None, f"{type(err).__name__}: {err}"
        with self._lock:
            waiting = self._pending.pop(strain, [])
            if failure is not None:
                self._failed[strain] = failure
            else:
                assert self.reference is not None and result is not None
                energy = 1000.0 * (result.energy_ev_per_atom - self.reference.energy_ev_per_atom)
                retried = result.retried_because
                estimate = EnergyEstimate(
                    index=waiting[0],
                    strain=strain,
                    energy_mev_per_atom=energy,
                    std_mev_per_atom=self.noise_mev,
                    source="dft",
                    calculator=result.settings,
                    wall_s=result.wall_s,
                    reason="; ".join(retried) if retried else None,
                    extra={"attempts": result.attempts, "host": result.host, "pid": result.pid},
                )
                self._done[strain] = estimate
                self.surrogate.add([strain], [energy])
                if self.store is not None:
                    self._save(strain, result, estimate)
                self._publish(estimate)
                for index in waiting[1:]:
                    self._publish(self._copy(estimate, index, source="cache"))
            deferred, self._deferred = self._deferred, []
        if failure is not None:
            log.warning("DFT at strain %s failed: %s", strain, failure)
            for index in waiting:
                self._answer_failed(index, strain, failure)
        for index, other in deferred:
            self._route(index, other)

    def _save(self, strain: Strain, result, estimate: EnergyEstimate) -> None:
        assert self.store is not None and self.reference is not None
        provenance = {
            "calculator": estimate.calculator,
            "wall_s": estimate.wall_s,
            "reason": estimate.reason,
            **estimate.extra,
        }
        try:
            self.store.append(
                StoredEnergy(
                    strain=strain,
                    energy_ev_per_atom=float(result.energy_ev_per_atom),
                    lattice_constant_a=self.reference.lattice_constant_a,
                    provenance=provenance,
                )
            )
        except OSError as err:  # a full or read-only disk must not lose the answer
            log.warning("could not store the DFT result at strain %s: %s", strain, err)

    # -- answers -------------------------------------------------------------------------------
    def _copy(self, estimate: EnergyEstimate, index: int, *, source: str) -> EnergyEstimate:
        return EnergyEstimate(
            index=index,
            strain=estimate.strain,
            energy_mev_per_atom=estimate.energy_mev_per_atom,
            std_mev_per_atom=estimate.std_mev_per_atom,
            source=source,
            calculator=estimate.calculator,
            wall_s=0.0,
            reason=estimate.reason,
        )

    def _surrogate(self, index: int, strain: Strain, mean: float, std: float) -> EnergyEstimate:
        return EnergyEstimate(
            index=index,
            strain=strain,
            energy_mev_per_atom=float(mean),
            std_mev_per_atom=float(std),
            source="surrogate",
            calculator=self.settings.as_dict(),
            wall_s=0.0,
            extra={"dft_points": self.surrogate.n_observations},
        )

    def _answer_failed(self, index: int, strain: Strain, reason: str) -> None:
        with self._lock:
            mean, std = self.surrogate.predict([strain])
            has_model = self.surrogate.n_observations > 0
            estimate = EnergyEstimate(
                index=index,
                strain=strain,
                energy_mev_per_atom=float(mean[0]) if has_model else float("nan"),
                std_mev_per_atom=float(std[0]) if has_model else float("nan"),
                source="surrogate" if has_model else "failed",
                calculator=self.settings.as_dict(),
                wall_s=0.0,
                reason=f"DFT failed: {reason}",
            )
            self._publish(estimate)

    def _publish(self, estimate: EnergyEstimate) -> None:
        with self._lock:
            estimate.context = self._contexts.pop(estimate.index, {})
            self.results.append(estimate)
            self._answered += 1
            self._all_answered.notify_all()
        self.queue.put(estimate)
        for callback in self._subscribers:
            try:
                callback(estimate)
            except Exception:  # noqa: BLE001 - a subscriber must not break the service
                log.exception("energetics subscriber failed")

    def propagated_std(self, strain, strain_std) -> float:
        """Energy uncertainty (meV/atom) caused by an uncertain strain measurement.

        First-order propagation through the surrogate's mean,
        ``sqrt(sum_i (dE/de_i * std_i)^2)``, with central differences of 1e-5 strain.

        Parameters
        ----------
        strain : sequence of float
            ``(exx, eyy, exy)``.
        strain_std : sequence of float
            Standard deviations of the three components (e.g. the network's ``*_std``).
        """
        h = 1e-5
        x = np.asarray(strain, float)
        steps = np.vstack([x + h * np.eye(3), x - h * np.eye(3)])
        with self._lock:
            mean, _ = self.surrogate.predict(steps)
        gradient = (mean[:3] - mean[3:]) / (2 * h)
        return float(np.sqrt(np.sum((gradient * np.asarray(strain_std, float)) ** 2)))

    # -- waiting -------------------------------------------------------------------------------
    @property
    def outstanding(self) -> int:
        """Requests not answered yet."""
        with self._lock:
            return self._requests - self._answered

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every request so far is answered; ``False`` on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._all_answered:
            while self._answered < self._requests:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._all_answered.wait(left)
        return True

    def ordered_results(self) -> list[EnergyEstimate]:
        """The answers sorted by request index."""
        with self._lock:
            return sorted(self.results, key=lambda e: e.index)
