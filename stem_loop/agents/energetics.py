"""The energetics agent: descriptors in, strain energies with uncertainty and provenance out.

:class:`EnergeticsAgent` is a RunEngine subscriber. It reads the in-plane strain from the
events of a ``descriptors`` stream (fields ``exx``, ``eyy``, ``exy``, optionally prefixed
with a device name, e.g. ``descriptors-exx``; ``*_std`` fields are carried along) and hands
each position to an :class:`~stem_loop.energetics.EnergyService`, which answers from its
cache, its surrogate or a DFT job on the executor. Nothing in the callback waits for DFT, so
the RunEngine is never blocked. :meth:`EnergeticsAgent.consume` does the same for the
descriptor arrays of any finished run.

Answers collect in :attr:`EnergeticsAgent.records` (completion order) and on a queue; the
plan stub :func:`emit_energetics` reads them into an ``energetics`` stream of the current run
through :class:`EnergeticsReadout`, a small ophyd-async device of soft signals.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import bluesky.plan_stubs as bps
import numpy as np
from bluesky.callbacks.core import CallbackBase
from event_model import unpack_event_page
from ophyd_async.core import StandardReadable, soft_signal_rw
from ophyd_async.core import StandardReadableFormat as Format

from stem_loop.energetics import STRAIN_NAMES, EnergyEstimate, EnergyService

STREAM_IN = "descriptors"
STREAM_OUT = "energetics"


def _field_map(data_keys: Iterable[str]) -> dict[str, str]:
    """Descriptor name -> event field (``exx`` or ``<device>-exx``; ``*_std`` kept apart)."""
    found: dict[str, str] = {}
    for key in data_keys:
        for name in (*STRAIN_NAMES, *(f"{n}_std" for n in STRAIN_NAMES)):
            if key == name or key.endswith(f"-{name}") or key.endswith(f"_{name}"):
                if name in STRAIN_NAMES and key.endswith("_std"):
                    continue
                found.setdefault(name, key)
    return found


class EnergeticsAgent(CallbackBase):
    """RunEngine callback that turns descriptor events into strain energies.

    Parameters
    ----------
    service : EnergyService
        Cache, surrogate and executor; started (reference relaxation) on construction.
    stream_name : str
        Name of the stream whose events carry the descriptors.

    Attributes
    ----------
    records : list of dict
        Published answers in completion order: the estimate's fields plus ``run_uid``,
        ``seq_num`` and the descriptor uncertainties ``exx_std`` … when the event had them;
        with all three, also ``std_from_descriptors_mev_per_atom`` (the strain uncertainty
        propagated through the surrogate) and ``std_total_mev_per_atom`` (both combined).
    queue : queue.Queue
        The same records, for a plan to ``get``.
    """

    def __init__(self, service: EnergyService, *, stream_name: str = STREAM_IN) -> None:
        super().__init__()
        self.service = service
        self.stream_name = stream_name
        self.records: list[dict[str, Any]] = []
        self.queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self._lock = threading.Lock()
        self._descriptors: dict[str, dict[str, str]] = {}
        self._run_uid: str | None = None
        service.subscribe(self._on_estimate)
        service.start()

    # -- RunEngine documents -------------------------------------------------------------------
    def start(self, doc):
        self._run_uid = doc["uid"]
        return doc

    def descriptor(self, doc):
        if doc.get("name") == self.stream_name:
            fields = _field_map(doc["data_keys"])
            if all(name in fields for name in STRAIN_NAMES):
                self._descriptors[doc["uid"]] = fields
        return doc

    def event(self, doc):
        fields = self._descriptors.get(doc["descriptor"])
        if fields is not None:
            data = doc["data"]
            self._request(
                [data[fields[n]] for n in STRAIN_NAMES],
                {
                    "run_uid": self._run_uid,
                    "seq_num": doc.get("seq_num"),
                    **{n: float(data[k]) for n, k in fields.items() if n.endswith("_std")},
                },
            )
        return doc

    def event_page(self, doc):
        if doc["descriptor"] in self._descriptors:
            for event in unpack_event_page(doc):
                self.event(event)
        return doc

    # -- arrays of a finished run --------------------------------------------------------------
    def consume(self, descriptors: Mapping[str, Any], *, run_uid: str | None = None) -> list[int]:
        """Request energies for every position of descriptor arrays (e.g. a finished run).

        Parameters
        ----------
        descriptors : mapping
            ``exx``, ``eyy``, ``exy`` arrays of equal length (other keys ignored; ``*_std``
            carried along).
        run_uid : str, optional
            Recorded with each answer.

        Returns
        -------
        list of int
            The request indices, one per position (-1 for a rejected strain, whose record
            says why).
        """
        columns = {n: np.atleast_1d(np.asarray(descriptors[n], float)) for n in STRAIN_NAMES}
        stds = {
            f"{n}_std": np.atleast_1d(np.asarray(descriptors[f"{n}_std"], float))
            for n in STRAIN_NAMES
            if f"{n}_std" in descriptors
        }
        indices = []
        for i in range(len(columns["exx"])):
            context = {"run_uid": run_uid, "seq_num": i + 1}
            context |= {k: float(v[i]) for k, v in stds.items()}
            indices.append(self._request([columns[n][i] for n in STRAIN_NAMES], context))
        return indices

    def _request(self, strain, context: dict[str, Any]) -> int:
        try:
            return self.service.request(strain, context)
        except ValueError as err:  # NaN or absurd strain: report it, never break the run
            record = {
                "index": -1,
                "strain": [float(v) for v in strain],
                "energy_mev_per_atom": float("nan"),
                "std_mev_per_atom": float("nan"),
                "source": "rejected",
                "calculator": self.service.settings.as_dict(),
                "wall_s": 0.0,
                "reason": str(err),
                **context,
            }
            with self._lock:
                self.records.append(record)
            self.queue.put(record)
            return -1

    # -- answers -------------------------------------------------------------------------------
    def _on_estimate(self, estimate: EnergyEstimate) -> None:
        record = estimate.as_dict()
        stds = [record.get(f"{n}_std") for n in STRAIN_NAMES]
        if all(v is not None for v in stds):
            # The strain itself is uncertain: propagate it and add it to the model's sigma.
            from_descriptors = self.service.propagated_std(estimate.strain, stds)
            record["std_from_descriptors_mev_per_atom"] = from_descriptors
            record["std_total_mev_per_atom"] = float(
                np.hypot(estimate.std_mev_per_atom, from_descriptors)
            )
        with self._lock:
            self.records.append(record)
        self.queue.put(record)

    @property
    def outstanding(self) -> int:
        """Positions still waiting for an answer."""
        return self.service.outstanding

    def take(self) -> list[dict[str, Any]]:
        """Remove and return every record on the queue (for emitting into a stream)."""
        taken = []
        while True:
            try:
                taken.append(self.queue.get_nowait())
            except queue.Empty:
                return taken


class EnergeticsReadout(StandardReadable):
    """Soft signals holding one energetics record, read into the ``energetics`` stream.

    Readings: ``exx``, ``eyy``, ``exy``, ``energy_mev_per_atom``, ``energy_std_mev_per_atom``
    (of the energy model), ``energy_std_total_mev_per_atom`` (with the strain uncertainty),
    ``source`` (``dft``, ``cache``, ``surrogate``, ``failed``, ``rejected``), ``dft_wall_s``,
    ``position_seq_num`` (the ``seq_num`` of the descriptors event), ``reason``;
    configuration: ``calculator`` (the GPAW settings as JSON).
    """

    def __init__(self, name: str = STREAM_OUT) -> None:
        with self.add_children_as_readables():
            self.exx = soft_signal_rw(float, 0.0)
            self.eyy = soft_signal_rw(float, 0.0)
            self.exy = soft_signal_rw(float, 0.0)
            self.energy_mev_per_atom = soft_signal_rw(float, 0.0, units="meV/atom")
            self.energy_std_mev_per_atom = soft_signal_rw(float, 0.0, units="meV/atom")
            self.energy_std_total_mev_per_atom = soft_signal_rw(float, 0.0, units="meV/atom")
            self.source = soft_signal_rw(str, "")
            self.dft_wall_s = soft_signal_rw(float, 0.0, units="s")
            self.position_seq_num = soft_signal_rw(int, 0)
            self.reason = soft_signal_rw(str, "")
        with self.add_children_as_readables(Format.CONFIG_SIGNAL):
            self.calculator = soft_signal_rw(str, "")
        super().__init__(name=name)


def emit_energetics(readout: EnergeticsReadout, records: Iterable[Mapping[str, Any]]):
    """Plan stub: one ``energetics`` event per record, in the currently open run.

    Parameters
    ----------
    readout : EnergeticsReadout
        Connected device (see `wait_and_emit_energetics`, which connects it).
    records : iterable of dict
        :attr:`EnergeticsAgent.records` entries.

    Yields
    ------
    msg : Msg
    """
    for r in records:
        exx, eyy, exy = r["strain"]
        yield from bps.mv(
            readout.exx, float(exx),
            readout.eyy, float(eyy),
            readout.exy, float(exy),
            readout.energy_mev_per_atom, float(r["energy_mev_per_atom"]),
            readout.energy_std_mev_per_atom, float(r["std_mev_per_atom"]),
            readout.energy_std_total_mev_per_atom,
            float(r.get("std_total_mev_per_atom", r["std_mev_per_atom"])),
            readout.source, str(r["source"]),
            readout.dft_wall_s, float(r["wall_s"]),
            readout.position_seq_num, int(r.get("seq_num") or 0),
            readout.reason, str(r.get("reason") or ""),
            readout.calculator, json.dumps(r["calculator"], sort_keys=True),
        )  # fmt: skip
        yield from bps.trigger_and_read([readout], name=readout.name)


def wait_and_emit_energetics(
    agent: EnergeticsAgent,
    readout: EnergeticsReadout,
    *,
    timeout_s: float | None = None,
    poll_s: float = 0.2,
):
    """Plan stub: let outstanding energetics finish (RunEngine stays responsive), emit them.

    Parameters
    ----------
    agent : EnergeticsAgent
    readout : EnergeticsReadout
    timeout_s : float, optional
        Stop waiting after this long and emit what has arrived (the rest stays queued for a
        later call).
    poll_s : float
        Sleep between checks (``bps.sleep``, so pause/abort work meanwhile).

    Yields
    ------
    msg : Msg
        The plan returns the number of records emitted.
    """
    from ophyd_async.plan_stubs import ensure_connected

    yield from ensure_connected(readout)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while agent.outstanding and (deadline is None or time.monotonic() < deadline):
        yield from bps.sleep(poll_s)
    records = sorted(agent.take(), key=lambda r: r["index"])
    yield from emit_energetics(readout, records)
    return len(records)
