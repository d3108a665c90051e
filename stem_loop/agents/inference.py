"""The inference agent: live CBED frames in, descriptors with uncertainty out, into the same run.

:class:`InferenceAgent` is a RunEngine subscriber and a *document router*. It forwards every
document it receives to its downstream callbacks (the Tiled writer, the energetics agent) and
inserts a ``descriptors`` stream of its own into the run:

* on ``stream_resource`` for the detector's image key it notes the HDF5 file and dataset;
* on ``stream_datum`` it notes the frame range ``[start, stop)`` and its ``seq_num`` values;
* frames are batched (``batch_size`` frames or ``max_latency_s`` seconds, whichever first),
  read from the file (h5py, SWMR) when their batch is due and run through
  :class:`~stem_loop.inference.Predictor` on a worker thread, so the RunEngine is never
  blocked by the network while a scan runs and memory stays bounded;
* frames whose thickness the networks read with a sigma above ``refine_thickness_above``
  (2 nm by default; on the held-out exact set, the few whose reading can be far off) get their
  thickness refined by the fast forward model
  (:func:`~stem_loop.inference.refine.refine_doubtful`, unstrained contents, 0.7 to 3.1 ms
  a frame on 2 CPU cores) before they are published;
* each batch becomes an ``event_page`` of stream ``descriptors`` (composed with
  ``event_model``) holding, per frame, the six descriptors, their ``<name>_std``, ``ood``,
  ``reason``, ``thickness_refined`` (whether ``thickness_nm`` is the refiner's),
  ``thickness_network_nm`` (the networks' reading), ``frame_seq_num`` (the frame's ``seq_num``
  in its own stream, also used as the event's ``seq_num``) and the probe position ``x_nm``,
  ``y_nm``;
* on ``stop`` the agent flushes what is left, sends the last pages and only then forwards the
  ``stop`` document (with ``num_events["descriptors"]`` added).

Listeners registered with :meth:`InferenceAgent.subscribe` receive the same results as
:class:`DescriptorBatch` objects (``agent.subscribe(queue.put)`` gives a queue).

Faults never lose acquired data nor reach the RunEngine: an unreadable file, a missing model
or a predictor exception is logged and the frames concerned are published with NaN descriptors,
``ood=True`` and the cause in ``reason``; every RunEngine document is forwarded regardless.

Wiring (what ``profile_collection/startup/10-storage.py`` and ``25-inference.py`` do)::

    agent = InferenceAgent()
    RE, bec = make_run_engine(catalog, wrap_writer=agent.forward_to)
    agent.conditions = microscope_conditions(microscope)
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import h5py
import numpy as np
from event_model import compose_descriptor

from sim_devices.sample import DESCRIPTOR_NAMES  # the contract's names, the network's order
from stem_loop.inference.refine import DOUBTFUL_STD_NM

logger = logging.getLogger(__name__)

#: Name of the stream the agent adds to each run.
STREAM_NAME = "descriptors"
#: Units of the descriptors in the stream's data keys.
UNITS: dict[str, str] = {
    "exx": "",
    "eyy": "",
    "exy": "",
    "thickness_nm": "nm",
    "tilt_x_mrad": "mrad",
    "tilt_y_mrad": "mrad",
}
#: Default detector image key and probe position keys.
DEFAULT_IMAGE_SUFFIX = "-image"
DEFAULT_POSITION_KEYS: tuple[str, str] = ("scan_gen-x", "scan_gen-y")
#: Batches inferred side by side by default. Two keep both cores of a small edge computer busy
#: (one batch's serial steps and small operations leave a core idle, and the thickness
#: refinement of one batch overlaps the networks of the next; torch's threads sleep while they
#: wait, stem_loop sets ``OMP_WAIT_POLICY=PASSIVE``) and suit a GPU, which wants a batch queued
#: while one runs.
DEFAULT_WORKERS = 2
#: Start-document key holding a ``BeamConditions.as_dict()``.
CONDITIONS_MD_KEY = "beam_conditions"

Document = dict[str, Any]
Callback = Callable[[str, Document], Any]
Listener = Callable[["DescriptorBatch"], Any]


@dataclass
class DescriptorBatch:
    """Descriptors of a batch of frames, as published to listeners.

    Attributes
    ----------
    run_uid : str
        The run's start uid.
    seq_num : ndarray
        ``(N,)`` int: each frame's ``seq_num`` in the stream that recorded it.
    x_nm, y_nm : ndarray
        ``(N,)`` probe positions (NaN where the run gave none).
    values, std : dict of str to ndarray
        One ``(N,)`` array per descriptor name and its 1-sigma uncertainty (NaN where ``ood``).
    ood : ndarray
        ``(N,)`` bool: no descriptors for this frame (out of distribution or failed).
    reason : list of str
        Why each flagged frame was flagged ("" when not).
    thickness_refined : ndarray
        ``(N,)`` bool: ``values["thickness_nm"]`` (and its sigma) come from the thickness
        refiner, not the networks.
    thickness_network_nm : ndarray
        ``(N,)`` the networks' thickness reading.
    """

    run_uid: str
    seq_num: np.ndarray
    x_nm: np.ndarray
    y_nm: np.ndarray
    values: dict[str, np.ndarray]
    std: dict[str, np.ndarray]
    ood: np.ndarray
    reason: list[str]
    thickness_refined: np.ndarray | None = None
    thickness_network_nm: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.seq_num)
        if self.thickness_refined is None:
            self.thickness_refined = np.zeros(n, dtype=bool)
        if self.thickness_network_nm is None:
            self.thickness_network_nm = np.array(self.values["thickness_nm"], dtype=float)

    def __len__(self) -> int:
        return len(self.seq_num)

    def as_dict(self) -> dict[str, np.ndarray]:
        """Flat arrays keyed as in the ``descriptors`` stream."""
        out: dict[str, Any] = {"frame_seq_num": self.seq_num, "x_nm": self.x_nm, "y_nm": self.y_nm}
        out.update(self.values)
        out.update({f"{k}_std": v for k, v in self.std.items()})
        out["ood"] = self.ood
        out["reason"] = np.asarray(self.reason, dtype=str)
        out["thickness_refined"] = self.thickness_refined
        out["thickness_network_nm"] = self.thickness_network_nm
        return out


def descriptor_data_keys() -> dict[str, dict[str, Any]]:
    """Event-model data keys of the ``descriptors`` stream."""

    def key(dtype: str, dtype_numpy: str | None, units: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {"dtype": dtype, "shape": [], "source": "inference"}
        if dtype_numpy:
            out["dtype_numpy"] = dtype_numpy
        if units:
            out["units"] = units
        return out

    keys: dict[str, dict[str, Any]] = {}
    for name in DESCRIPTOR_NAMES:
        keys[name] = key("number", "<f8", UNITS[name])
        keys[f"{name}_std"] = key("number", "<f8", UNITS[name])
    keys["ood"] = key("boolean", "|b1")
    keys["reason"] = key("string", None)
    keys["thickness_refined"] = key("boolean", "|b1")
    keys["thickness_network_nm"] = key("number", "<f8", "nm")
    keys["frame_seq_num"] = key("integer", "<i8")
    keys["x_nm"] = key("number", "<f8", "nm")
    keys["y_nm"] = key("number", "<f8", "nm")
    return keys


def conditions_from_start(start: Mapping[str, Any], default: Any = None) -> Any:
    """The beam conditions of a run, from its start document if it says, else ``default``.

    Looks for ``start["beam_conditions"]`` (a ``BeamConditions.as_dict()``); otherwise builds
    them from ``material``, ``zone_axis``, ``beam`` (``voltage_kv``, ``convergence_mrad``) and
    ``detector`` (``mrad_per_pixel``, ``pixels``, ``point_spread_px``: the detector's measured
    Gaussian point-spread, for a model that reads it) where present, the rest from ``default``.

    Parameters
    ----------
    start : mapping
        The run's start document.
    default : stem_loop.inference.BeamConditions, optional
        Used for whatever the start document does not say.

    Returns
    -------
    stem_loop.inference.BeamConditions or None
        None when neither the start document nor ``default`` says enough.
    """
    from stem_loop.inference import BeamConditions

    if isinstance(start.get(CONDITIONS_MD_KEY), Mapping):
        return BeamConditions(**start[CONDITIONS_MD_KEY])
    beam = start.get("beam") if isinstance(start.get("beam"), Mapping) else {}
    detector = start.get("detector") if isinstance(start.get("detector"), Mapping) else {}
    parts = {k: start[k] for k in ("material", "zone_axis") if isinstance(start.get(k), str)}
    parts.update({k: beam[k] for k in ("voltage_kv", "convergence_mrad") if k in beam})
    parts.update(
        {k: detector[k] for k in ("mrad_per_pixel", "pixels", "point_spread_px") if k in detector}
    )
    if not parts:
        return default
    if default is None and "material" not in parts:
        return None
    base = default.as_dict() if default is not None else {}
    return BeamConditions(**{**base, **parts})


def microscope_conditions(microscope: Any, point_spread_px: float = 0.0) -> Callable[[], Any]:
    """A callable giving the current beam conditions of a (simulated) microscope.

    Parameters
    ----------
    microscope : sim_devices.Microscope
        Anything with ``sample.material``, ``sample.zone_axis``, ``beam`` and ``detector``.
    point_spread_px : float
        The detector's measured Gaussian point-spread in pixels
        (:attr:`~stem_loop.inference.BeamConditions.point_spread_px`; 0, a sharp detector, as
        the simulated one is). Only a model trained to read it accepts another value.

    Returns
    -------
    callable
        ``() -> BeamConditions``, read afresh at each call (so at each run's start).
    """

    def current() -> Any:
        from stem_loop.inference import BeamConditions

        sample = microscope.sample
        return BeamConditions.from_devices(
            sample.material, sample.zone_axis, microscope.beam, microscope.detector, point_spread_px
        )

    return current


def _split(chunk: _Chunk, head: int) -> tuple[_Chunk, _Chunk]:
    """The first ``head`` frames of ``chunk`` and the rest."""

    def part(a: int, b: int) -> _Chunk:
        return _Chunk(
            chunk.descriptor,
            chunk.seq_num[a:b],
            chunk.resource,
            chunk.lo + a,
            chunk.lo + b,
            arrived=chunk.arrived,
        )

    return part(0, head), part(head, len(chunk.seq_num))


def _uri_to_path(uri: str) -> Path:
    return Path(urlparse(uri).path)


@dataclass
class _Chunk:
    """A range of frames of one StreamDatum, read only when it is inferred."""

    descriptor: str
    seq_num: np.ndarray
    resource: Document
    lo: int
    hi: int
    frames: np.ndarray | None = None
    error: str = ""
    arrived: float = field(default_factory=time.monotonic)


@dataclass
class _Run:
    """What the agent knows about one open run."""

    start: Document
    conditions: Any
    image_keys: set[str] = field(default_factory=set)
    position_keys: tuple[str, str] = DEFAULT_POSITION_KEYS
    # descriptor uid -> True if that stream records positions
    streams_with_positions: dict[str, bool] = field(default_factory=dict)
    resources: dict[str, Document] = field(default_factory=dict)
    files: dict[str, h5py.File] = field(default_factory=dict)
    # (descriptor uid, seq_num) -> [x, y]; None until read, NaN if unreadable
    positions: dict[tuple[str, int], list[float | None]] = field(default_factory=dict)
    pending: list[_Chunk] = field(default_factory=list)
    compose: Any = None
    published: int = 0
    closed: bool = False
    flushed: threading.Event = field(default_factory=threading.Event)


class InferenceAgent:
    """RunEngine callback that adds a ``descriptors`` stream to every run with detector frames.

    Parameters
    ----------
    predictor : stem_loop.inference.Predictor, optional
        The network; default: the shipped weights reading ``mirror="auto"`` (the mirror pair
        where the networks run in bfloat16, else once), loaded when the first frames arrive.
    conditions : stem_loop.inference.BeamConditions or callable, optional
        Beam conditions of the frames when the start document does not give them (see
        `conditions_from_start`); a callable is asked at each run's start (see
        `microscope_conditions`).
    downstream : iterable of callables ``(name, doc)``
        Receive every RunEngine document and the agent's own, in a valid order (the Tiled
        writer, the energetics agent, ...).
    listeners : iterable of callables ``(DescriptorBatch)``
        Receive each published batch.
    batch_size : int
        Frames run through the network at once.
    max_latency_s : float
        Longest time a frame waits for its batch to fill.
    image_key : str, optional
        Data key of the frames; default: any key ending in ``-image``.
    position_keys : (str, str)
        Data keys of the probe position (x, y) in nm.
    stream_name : str
        Name of the added stream.
    background : bool
        Read and infer on a worker thread (default); ``False`` does it inside the callback.
    workers : int
        Batches inferred at once on threads of their own (with ``background``; default
        :data:`DEFAULT_WORKERS`). Pages stay in frame order.
    stop_timeout_s : float
        Longest wait for the backlog at the end of a run before the stop document is forwarded
        anyway (later results of that run are then only given to listeners).
    position_wait_s : float
        Longest wait for a frame's probe position (its StreamDatum or event) before the frame is
        published with NaN positions.
    refine_thickness_above : float or None
        Networks' thickness sigma (nm) above which a frame's thickness is refined by the fast
        model before it is published (0: every frame; None: never). Needs the beam library of
        the run's conditions already built (the agent never builds one); without it, or if the
        refiner fails, the networks' reading is published and the cause logged.
    """

    def __init__(
        self,
        predictor: Any = None,
        conditions: Any = None,
        *,
        downstream: Iterable[Callback] = (),
        listeners: Iterable[Listener] = (),
        batch_size: int = 256,
        max_latency_s: float = 0.5,
        image_key: str | None = None,
        position_keys: tuple[str, str] = DEFAULT_POSITION_KEYS,
        stream_name: str = STREAM_NAME,
        background: bool = True,
        stop_timeout_s: float = 600.0,
        position_wait_s: float = 2.0,
        workers: int = DEFAULT_WORKERS,
        refine_thickness_above: float | None = DOUBTFUL_STD_NM,
    ) -> None:
        if refine_thickness_above is not None and not refine_thickness_above >= 0:
            raise ValueError(
                f"refine_thickness_above must be >= 0 nm or None, got {refine_thickness_above}"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not max_latency_s >= 0:
            raise ValueError(f"max_latency_s must be >= 0, got {max_latency_s}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.predictor = predictor
        self.conditions = conditions
        self.downstream: list[Callback] = list(downstream)
        self.listeners: list[Listener] = list(listeners)
        self.batch_size = int(batch_size)
        self.max_latency_s = float(max_latency_s)
        self.image_key = image_key
        self.position_keys = tuple(position_keys)
        self.stream_name = stream_name
        self.background = background
        self.stop_timeout_s = float(stop_timeout_s)
        self.position_wait_s = max(float(position_wait_s), self.max_latency_s)
        self.refine_thickness_above = refine_thickness_above
        #: Frames whose thickness was refined (all runs).
        self.frames_refined = 0
        self._refiners: dict[Any, Any] = {}  # conditions -> ThicknessRefiner, or None if none
        self._refiner_lock = threading.Lock()
        #: Frames published so far (all runs) and how many of them could not be inferred.
        self.frames_published = 0
        self.frames_failed = 0
        self._runs: dict[str, _Run] = {}
        self._run_of_descriptor: dict[str, str] = {}
        self._emit_lock = threading.RLock()
        self._tasks: queue.Queue = queue.Queue()
        self._worker: threading.Thread | None = None
        self._predictor_error = ""
        self.workers = int(workers) if background else 1
        self._pool: ThreadPoolExecutor | None = None
        # Batches being inferred, oldest first: (future, run uid, run, chunks).
        self._inflight: deque[tuple[Future, str, _Run, list[_Chunk]]] = deque()

    # -- wiring --------------------------------------------------------------------------------
    def forward_to(self, callback: Callback) -> InferenceAgent:
        """Add a downstream callback; returns the agent (for ``make_run_engine(wrap_writer=)``)."""
        self.downstream.append(callback)
        return self

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(batch)`` with every published :class:`DescriptorBatch`."""
        self.listeners.append(listener)

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the worker thread once it has handled what is queued (it restarts if needed)."""
        worker = self._worker
        if worker is not None and worker.is_alive():
            self._tasks.put(("close",))
            worker.join(timeout_s)
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    # -- RunEngine side ------------------------------------------------------------------------
    def __call__(self, name: str, doc: Document) -> None:
        """Route one RunEngine document (never raises)."""
        try:
            if name == "stop":
                doc = self._finish_run(doc)
            else:
                self._observe(name, doc)
        except Exception:
            logger.exception("inference agent: handling a %r document failed", name)
        self._forward(name, doc)

    def _observe(self, name: str, doc: Document) -> None:
        if name == "start":
            conditions = None
            try:
                default = self.conditions() if callable(self.conditions) else self.conditions
                conditions = conditions_from_start(doc, default)
            except Exception as err:
                logger.warning(
                    "inference agent: bad beam conditions in the start document: %s", err
                )
            run = _Run(start=doc, conditions=conditions, position_keys=self.position_keys)
            self._runs[doc["uid"]] = run
        elif name == "descriptor":
            run = self._runs.get(doc["run_start"])
            if run is None:
                return
            self._run_of_descriptor[doc["uid"]] = doc["run_start"]
            keys = doc.get("data_keys", {})
            run.image_keys.update(k for k in keys if self._is_image_key(k, keys[k]))
            run.streams_with_positions[doc["uid"]] = all(k in keys for k in run.position_keys)
        elif name in ("stream_resource", "stream_datum", "event", "event_page"):
            self._submit((name, doc))

    def _is_image_key(self, key: str, data_key: Mapping[str, Any]) -> bool:
        if self.image_key is not None:
            return key == self.image_key
        return key.endswith(DEFAULT_IMAGE_SUFFIX) and len(data_key.get("shape") or ()) == 2

    def _submit(self, task: tuple) -> None:
        if not self.background:
            self._handle(task)
            self._flush_due(force=False)
            return
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._work, name="inference-agent", daemon=True)
            self._worker.start()
        self._tasks.put(task)

    def _finish_run(self, stop: Document) -> Document:
        uid = stop["run_start"]
        run = self._runs.get(uid)
        if run is None:
            return stop
        if self.background and self._worker is not None and self._worker.is_alive():
            self._tasks.put(("stop", uid))
            if not run.flushed.wait(self.stop_timeout_s):
                logger.error(
                    "inference agent: descriptors of run %s not done after %.0f s; "
                    "forwarding its stop document without them",
                    uid,
                    self.stop_timeout_s,
                )
        else:
            self._handle(("stop", uid))
        with self._emit_lock:
            run.closed = True
        if run.published:
            stop = dict(stop)
            stop["num_events"] = {**stop.get("num_events", {}), self.stream_name: run.published}
        return stop

    def _forward(self, name: str, doc: Document) -> None:
        with self._emit_lock:
            for callback in self.downstream:
                try:
                    callback(name, doc)
                except Exception:
                    logger.exception("inference agent: downstream %r failed on %r", callback, name)

    # -- worker side ---------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            timeout = self._time_to_deadline()
            try:
                task = self._tasks.get(timeout=timeout)
            except queue.Empty:
                task = None
            if task is not None and task[0] == "close":
                self._drain(block=True)
                return
            try:
                if task is not None:
                    self._handle(task)
                    # Take what else is queued (positions of the same collect) before inferring.
                    while True:
                        try:
                            more = self._tasks.get_nowait()
                        except queue.Empty:
                            break
                        if more[0] == "close":
                            self._flush_due(force=False)
                            self._drain(block=True)
                            return
                        self._handle(more)
                self._drain(block=False)
                self._flush_due(force=False)
            except Exception:
                logger.exception("inference agent: worker step failed")

    def _time_to_deadline(self) -> float | None:
        deadlines = [
            c.arrived + (self.max_latency_s if self._ready(r, c) else self.position_wait_s)
            for r in list(self._runs.values())
            for c in r.pending[:1]
        ]
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    def _handle(self, task: tuple) -> None:
        kind = task[0]
        if kind == "stop":
            uid = task[1]
            run = self._runs.get(uid)
            if run is None:
                return
            try:
                self._flush(uid, run, force=True)
                self._drain(block=True)
            finally:
                for file in run.files.values():
                    try:
                        file.close()
                    except Exception:
                        pass
                run.files.clear()
                run.flushed.set()
                self._runs.pop(uid, None)
                for desc in [d for d, r in self._run_of_descriptor.items() if r == uid]:
                    del self._run_of_descriptor[desc]
            return
        if kind == "done":  # a batch finished on the pool: _work drains it
            return
        _, doc = task
        if kind == "stream_resource":
            run = self._runs.get(doc.get("run_start", ""))
            if run is not None:
                run.resources[doc["uid"]] = doc
        elif kind == "stream_datum":
            self._on_stream_datum(doc)
        elif kind == "event":
            self._on_positions(doc["descriptor"], [doc["seq_num"]], doc["data"], single=True)
        elif kind == "event_page":
            self._on_positions(doc["descriptor"], doc["seq_num"], doc["data"], single=False)

    def _on_positions(self, descriptor: str, seq_nums, data: Mapping, *, single: bool) -> None:
        run = self._runs.get(self._run_of_descriptor.get(descriptor, ""))
        if run is None:
            return
        kx, ky = run.position_keys
        if kx not in data or ky not in data:
            return
        xs = [data[kx]] if single else data[kx]
        ys = [data[ky]] if single else data[ky]
        for seq, x, y in zip(seq_nums, xs, ys, strict=True):
            run.positions[(descriptor, int(seq))] = [float(x), float(y)]

    def _on_stream_datum(self, doc: Document) -> None:
        run = self._runs.get(self._run_of_descriptor.get(doc["descriptor"], ""))
        if run is None:
            return
        resource = run.resources.get(doc["stream_resource"])
        if resource is None:
            return
        key = resource["data_key"]
        seq = np.arange(doc["seq_nums"]["start"], doc["seq_nums"]["stop"])
        lo, hi = doc["indices"]["start"], doc["indices"]["stop"]
        if key in run.position_keys:
            axis = run.position_keys.index(key)
            try:
                values = self._read(run, resource, lo, hi)
            except Exception as err:
                logger.warning("inference agent: positions %s unreadable: %s", key, err)
                values = np.full(len(seq), np.nan)
            for s, v in zip(seq.tolist(), np.ravel(values).tolist(), strict=False):
                run.positions.setdefault((doc["descriptor"], s), [None, None])[axis] = v
        elif key in run.image_keys:
            # Frames stay in the file until their batch is inferred: memory stays bounded
            # however far inference falls behind acquisition.
            step = self.batch_size
            for a in range(0, len(seq), step):
                b = min(a + step, len(seq))
                run.pending.append(_Chunk(doc["descriptor"], seq[a:b], resource, lo + a, lo + b))

    def _load(self, run: _Run, chunk: _Chunk) -> None:
        """Read the chunk's frames, or record why they could not be read."""
        try:
            frames = self._read(run, chunk.resource, chunk.lo, chunk.hi)
            if len(frames) != len(chunk.seq_num):
                raise OSError(f"read {len(frames)} frames, the datum says {len(chunk.seq_num)}")
            chunk.frames = frames
        except Exception as err:
            key = chunk.resource["data_key"]
            logger.error(
                "inference agent: frames %d..%d of %s unreadable: %s", chunk.lo, chunk.hi, key, err
            )
            chunk.error = f"frames unreadable: {err}"

    def _read(self, run: _Run, resource: Document, lo: int, hi: int) -> np.ndarray:
        uid = resource["uid"]
        file = run.files.get(uid)
        if file is None:
            path = _uri_to_path(resource["uri"])
            file = h5py.File(path, "r", swmr=True, libver="latest")
            run.files[uid] = file
        dataset = file[resource["parameters"]["dataset"]]
        for _ in range(50):  # the writer flushes before it emits; allow a little slack
            dataset.refresh()
            if dataset.shape[0] >= hi:
                break
            time.sleep(0.01)
        return dataset[lo:hi]

    def _flush_due(self, *, force: bool) -> None:
        for uid, run in list(self._runs.items()):
            self._flush(uid, run, force=force)

    def _ready(self, run: _Run, chunk: _Chunk) -> bool:
        """Whether the chunk's positions are known (or will not come, or waited long enough)."""
        if chunk.error or not run.streams_with_positions.get(chunk.descriptor, False):
            return True
        if time.monotonic() - chunk.arrived >= self.position_wait_s:
            return True
        for s in chunk.seq_num.tolist():
            pos = run.positions.get((chunk.descriptor, s))
            if pos is None or None in pos:
                return False
        return True

    def _flush(self, uid: str, run: _Run, *, force: bool) -> None:
        while run.pending:
            ready = []
            for chunk in run.pending:
                if not (force or chunk.error or self._ready(run, chunk)):
                    break
                ready.append(chunk)
            if not ready:
                return
            n_ready = sum(len(c.seq_num) for c in ready)
            late = time.monotonic() - ready[0].arrived >= self.max_latency_s
            if not (force or late or n_ready >= self.batch_size):
                return
            taken, n = [], 0
            for _ in range(len(ready)):
                if n >= self.batch_size:
                    break
                chunk = run.pending.pop(0)
                room = self.batch_size - n
                if len(chunk.seq_num) > room:  # exactly batch_size frames per page
                    chunk, rest = _split(chunk, room)
                    run.pending.insert(0, rest)
                taken.append(chunk)
                n += len(chunk.seq_num)
            self._publish(uid, run, taken)

    def _load_predictor(self) -> Any:
        if self.predictor is None and not self._predictor_error:
            try:
                from stem_loop.inference import Predictor

                self.predictor = Predictor(mirror="auto")
            except Exception as err:
                logger.error("inference agent: no model: %s", err)
                self._predictor_error = f"no model: {err}"
        return self.predictor

    def _refiner(self, conditions: Any) -> Any:
        """The thickness refiner for these conditions, or None where there is no beam library
        (the agent never builds one: that takes minutes) or it cannot be made (logged once)."""
        with self._refiner_lock:
            if conditions in self._refiners:
                return self._refiners[conditions]
            refiner = None
            try:
                from stem_loop.inference.refine import live_refiner

                refiner = live_refiner(conditions)
            except Exception as err:
                logger.warning("inference agent: thickness not refined for %s: %s", conditions, err)
            self._refiners[conditions] = refiner
            return refiner

    def _refine(self, frames: np.ndarray, prediction: Any, conditions: Any) -> tuple[Any, Any]:
        """The prediction with doubtful thicknesses refined, and which; the networks' reading
        where refinement is off, impossible or fails."""
        none = np.zeros(len(prediction), dtype=bool)
        if self.refine_thickness_above is None:
            return prediction, none
        from stem_loop.inference.refine import doubtful_frames, refine_doubtful

        if not doubtful_frames(prediction, self.refine_thickness_above).any():
            return prediction, none
        refiner = self._refiner(conditions)
        if refiner is None:
            return prediction, none
        try:
            return refine_doubtful(refiner, frames, prediction, self.refine_thickness_above)
        except Exception:
            logger.exception("inference agent: thickness refinement failed; networks' kept")
            return prediction, none

    def _infer(
        self, run: _Run, chunks: list[_Chunk]
    ) -> tuple[dict, dict, np.ndarray, list[str], int, np.ndarray, np.ndarray]:
        """Descriptors of the chunks' frames, which thicknesses were refined and the networks'
        thickness; failures are NaN, ood and counted."""
        n = sum(len(c.seq_num) for c in chunks)
        values = {k: np.full(n, np.nan) for k in DESCRIPTOR_NAMES}
        std = {k: np.full(n, np.nan) for k in DESCRIPTOR_NAMES}
        ood = np.ones(n, dtype=bool)
        reason = [""] * n
        refined = np.zeros(n, dtype=bool)
        network_nm = np.full(n, np.nan)
        spans, lo = [], 0
        for chunk in chunks:
            spans.append((lo, lo + len(chunk.seq_num), chunk))
            lo += len(chunk.seq_num)
        good = [(a, b, c) for a, b, c in spans if c.frames is not None]
        for a, b, c in spans:
            if c.frames is None:
                reason[a:b] = [c.error] * (b - a)
        failed = n - sum(b - a for a, b, _ in good)
        if not good:
            return values, std, ood, reason, failed, refined, network_nm
        index = np.concatenate([np.arange(a, b) for a, b, _ in good])
        failure = ""
        predictor = self._load_predictor()
        if predictor is None:
            failure = self._predictor_error
        elif run.conditions is None:
            failure = "no beam conditions (start metadata or the agent's conditions)"
        else:
            try:
                parts = [c.frames for _, _, c in good]
                frames = parts[0] if len(parts) == 1 else np.concatenate(parts)
                for _, _, c in good:
                    c.frames = None  # the batch holds them now
                prediction = predictor.predict(frames, run.conditions)
                network_nm[index] = prediction.values["thickness_nm"]
                prediction, refined[index] = self._refine(frames, prediction, run.conditions)
                for k in DESCRIPTOR_NAMES:
                    values[k][index] = prediction.values[k]
                    std[k][index] = prediction.std[k]
                ood[index] = prediction.ood
                for i, r in zip(index.tolist(), prediction.reason, strict=True):
                    reason[i] = r
            except Exception as err:
                logger.exception("inference agent: the predictor failed on %d frames", len(index))
                failure = f"inference failed: {type(err).__name__}: {err}"
        if failure:
            for i in index.tolist():
                reason[i] = failure
            failed += len(index)
            refined[index] = False
        return values, std, ood, reason, failed, refined, network_nm

    def _publish(self, uid: str, run: _Run, chunks: list[_Chunk]) -> None:
        """Infer a batch (here, or on the pool) and emit it once it and those before it are done."""
        for chunk in chunks:  # file reads stay on this thread
            self._load(run, chunk)
        if self.workers == 1:
            self._emit(uid, run, chunks, self._infer(run, chunks))
            return
        self._load_predictor()  # once, here, not racing on the pool
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="inference")
        future = self._pool.submit(self._infer, run, chunks)
        future.add_done_callback(lambda _: self._tasks.put(("done",)))
        self._inflight.append((future, uid, run, chunks))
        while len(self._inflight) > 2 * self.workers:  # bounded memory: wait for the oldest
            self._drain(block=True, limit=1)
        self._drain(block=False)

    def _drain(self, *, block: bool, limit: int | None = None) -> None:
        """Emit finished batches in order (all of them with ``block``)."""
        emitted = 0
        while self._inflight and (block or self._inflight[0][0].done()):
            if limit is not None and emitted >= limit:
                return
            future, uid, run, chunks = self._inflight.popleft()
            self._emit(uid, run, chunks, future.result())  # _infer never raises
            emitted += 1

    def _emit(self, uid: str, run: _Run, chunks: list[_Chunk], result: tuple) -> None:
        values, std, ood, reason, failed, refined, network_nm = result
        seq = np.concatenate([c.seq_num for c in chunks]).astype(np.int64)
        descs = [c.descriptor for c in chunks for _ in range(len(c.seq_num))]
        xy = np.array(
            [
                [np.nan if v is None else v for v in run.positions.pop((d, s), [None, None])]
                for d, s in zip(descs, seq.tolist(), strict=True)
            ],
            dtype=float,
        ).reshape(-1, 2)
        batch = DescriptorBatch(
            uid, seq, xy[:, 0], xy[:, 1], values, std, ood, reason, refined, network_nm
        )
        self.frames_published += len(batch)
        self.frames_refined += int(refined.sum())
        self.frames_failed += failed
        with self._emit_lock:
            if not run.closed:
                self._emit_page(run, batch)
        for listener in self.listeners:
            try:
                listener(batch)
            except Exception:
                logger.exception("inference agent: listener %r failed", listener)

    def _emit_page(self, run: _Run, batch: DescriptorBatch) -> None:
        if run.compose is None:
            run.compose = compose_descriptor(
                start=run.start,
                streams={},
                event_counters={},
                name=self.stream_name,
                data_keys=descriptor_data_keys(),
                object_keys={"inference": list(descriptor_data_keys())},
                configuration=self._configuration(run),
            )
            self._forward("descriptor", run.compose.descriptor_doc)
        now = time.time()
        data: dict[str, list] = {
            k: v.tolist() if isinstance(v, np.ndarray) else list(v)
            for k, v in batch.as_dict().items()
        }
        data["ood"] = [bool(v) for v in batch.ood]
        data["thickness_refined"] = [bool(v) for v in batch.thickness_refined]
        data["reason"] = list(batch.reason)
        timestamps = {k: [now] * len(batch) for k in data}
        seq_num = batch.seq_num.tolist()
        if run.published == 0:
            # Pages are built the same way every time: schema-check one row of the run's first
            # (jsonschema costs about 1 ms per row, as much as the network).
            run.compose.compose_event_page(
                data={k: v[:1] for k, v in data.items()},
                timestamps={k: v[:1] for k, v in timestamps.items()},
                seq_num=seq_num[:1],
                validate=True,
            )
        page = run.compose.compose_event_page(
            data=data,
            timestamps=timestamps,
            seq_num=seq_num,
            time=[now] * len(batch),
            validate=False,
        )
        run.published += len(batch)
        self._forward("event_page", page)

    def _configuration(self, run: _Run) -> dict[str, Any]:
        conditions = run.conditions.as_dict() if run.conditions is not None else {}
        # how the frames were read: the views averaged (1: once; Predictor(mirror=...)) and the
        # networks' arithmetic
        conditions["mirror_views"] = len(getattr(self.predictor, "views", (0,)))
        conditions["precision"] = getattr(self.predictor, "precision", "float32")
        now = time.time()
        data, keys = {}, {}
        for k, v in conditions.items():
            data[f"inference-{k}"] = v
            keys[f"inference-{k}"] = {
                "dtype": "string" if isinstance(v, str) else "number",
                "shape": [],
                "source": "inference",
            }
        return {
            "inference": {
                "data": data,
                "timestamps": {k: now for k in data},
                "data_keys": keys,
            }
        }
