"""Build the objects of an interactive session from the environment, for the profile and the CLI.

``profile_collection/startup/*.py`` and ``stem-loop demo`` both call these, so a session in
IPython and a command-line run see the same catalog, RunEngine wiring and devices.

Environment: ``STEM_LOOP_SAMPLE`` (sample ``.npz`` or built-in name), ``STEM_LOOP_DATA``,
``STEM_LOOP_TILED_URI`` and ``TILED_API_KEY`` (see `stem_loop.storage.open_catalog`).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stem_loop.storage import Catalog, make_writer, open_catalog, subscribe_writer

logger = logging.getLogger(__name__)

SAMPLE_ENV = "STEM_LOOP_SAMPLE"


def has_display() -> bool:
    """Whether matplotlib windows can be shown (a desktop session, not a headless shell)."""
    if os.environ.get("MPLBACKEND", "").lower() == "agg":
        return False
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def configure_matplotlib() -> bool:
    """Use the non-interactive Agg backend when there is no display.

    Returns
    -------
    bool
        True when plots can be shown.
    """
    if has_display():
        return True
    import matplotlib

    matplotlib.use("Agg")
    return False


def load_sample(sample: str | os.PathLike[str] | None = None):
    """Load the simulated specimen.

    Parameters
    ----------
    sample : str or path-like, optional
        A sample ``.npz`` file or a built-in sample name; default ``$STEM_LOOP_SAMPLE``, else the
        default built-in sample.

    Returns
    -------
    sim_devices.Sample
    """
    from sim_devices import Sample, builtin_sample

    sample = sample if sample is not None else os.environ.get(SAMPLE_ENV) or None
    if sample is None:
        return builtin_sample()
    path = Path(sample).expanduser()
    if path.suffix == ".npz" or path.exists():
        return Sample.from_npz(path)
    return builtin_sample(str(sample))


def make_run_engine(
    catalog: Catalog,
    *,
    progress_bar: bool = False,
    best_effort: bool = True,
    plots: bool | None = None,
    resume_scan_id: bool = True,
    wrap_writer: Callable[[Callable[[str, dict], Any]], Callable[[str, dict], Any]] | None = None,
):
    """A RunEngine that records into ``catalog``.

    Parameters
    ----------
    catalog : Catalog
        From `stem_loop.storage.open_catalog`.
    progress_bar : bool
        Show bluesky's progress bars while waiting on devices (interactive sessions).
    best_effort : bool
        Subscribe a `BestEffortCallback` (live tables, and plots when ``plots``).
    plots : bool, optional
        Let the BestEffortCallback plot; default: only when a display is available.
    resume_scan_id : bool
        Continue ``scan_id`` from the latest run in the catalog, so ``tiled_client[scan_id]``
        stays unambiguous across sessions.
    wrap_writer : callable, optional
        Called with the Tiled writer callback; what it returns is subscribed instead (a document
        router that forwards to the writer, e.g. ``InferenceAgent.forward_to`` from
        `stem_loop.agents.inference`, which adds a ``descriptors`` stream to each run).

    Returns
    -------
    RE : bluesky.RunEngine
    bec : BestEffortCallback or None
    """
    from bluesky import RunEngine

    RE = RunEngine({})  # noqa: N806 - the Bluesky name
    if wrap_writer is None:
        subscribe_writer(RE, catalog)
    else:
        RE.subscribe(wrap_writer(make_writer(catalog)))
    if progress_bar:
        from bluesky.utils import ProgressBarManager

        RE.waiting_hook = ProgressBarManager()
    bec = None
    if best_effort:
        from bluesky.callbacks.best_effort import BestEffortCallback

        bec = BestEffortCallback()
        if not (configure_matplotlib() if plots is None else plots):
            bec.disable_plots()
        RE.subscribe(bec)
    if resume_scan_id:
        if (scan_id := latest_scan_id(catalog)) is not None:
            RE.md["scan_id"] = scan_id
    return RE, bec


def latest_scan_id(catalog: Catalog) -> int | None:
    """The ``scan_id`` of the most recent run in ``catalog``, or None if there is none."""
    # Not len(): tiled caches a container's length for a while.
    try:
        latest = catalog.client.values()[-1]
    except IndexError:
        return None
    scan_id = latest.metadata.get("start", {}).get("scan_id")
    return int(scan_id) if isinstance(scan_id, int) else None


def make_devices(catalog: Catalog, sample=None, *, seed: int | None = None, **kwargs: Any):
    """The simulated microscope and its contract devices, writing HDF5 where Tiled reads.

    Parameters
    ----------
    catalog : Catalog
        Its ``hdf5_dir`` receives the detector files.
    sample : Sample, str or path-like, optional
        See `load_sample`.
    seed : int, optional
        Seed of the microscope's counting noise.
    **kwargs
        Passed to `sim_devices.backends.make_sim_devices`.

    Returns
    -------
    microscope : sim_devices.Microscope
    scan_gen : ScanGenerator
    det : PixelatedDetector
    """
    from sim_devices import Microscope, Sample
    from sim_devices.backends import make_sim_devices

    if not isinstance(sample, Sample):
        sample = load_sample(sample)
    microscope = Microscope(sample, forward="fast", seed=seed)
    scan_gen, det = make_sim_devices(microscope, catalog.hdf5_dir, **kwargs)
    return microscope, scan_gen, det


@dataclass
class Session:
    """Everything an interactive session or a command needs.

    Attributes
    ----------
    catalog : Catalog
    RE : bluesky.RunEngine
    bec : BestEffortCallback or None
    microscope : sim_devices.Microscope
    scan_gen : ScanGenerator
    det : PixelatedDetector
    """

    catalog: Catalog
    RE: Any  # noqa: N815 - the Bluesky name
    bec: Any
    microscope: Any
    scan_gen: Any
    det: Any

    @property
    def tiled_client(self):
        """The runs container (``tiled_client[uid]``, ``[-1]``, ``[scan_id]``)."""
        return self.catalog.client

    def namespace(self) -> dict[str, Any]:
        """The names the IPython profile exposes."""
        return {
            "catalog": self.catalog,
            "RE": self.RE,
            "bec": self.bec,
            "microscope": self.microscope,
            "scan_gen": self.scan_gen,
            "det": self.det,
            "tiled_client": self.tiled_client,
        }

    def close(self) -> None:
        """Close the catalog (and stop the embedded server if this session started it)."""
        self.catalog.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build_session(
    *,
    data_dir: str | os.PathLike[str] | None = None,
    sample=None,
    seed: int | None = None,
    progress_bar: bool = False,
    best_effort: bool = True,
    plots: bool | None = None,
    wrap_writer: Callable[[Callable[[str, dict], Any]], Callable[[str, dict], Any]] | None = None,
) -> Session:
    """Open the catalog, make the RunEngine and the devices.

    Parameters
    ----------
    data_dir : path-like, optional
        Default ``$STEM_LOOP_DATA`` (see `stem_loop.storage.open_catalog`).
    sample : Sample, str or path-like, optional
        Default ``$STEM_LOOP_SAMPLE`` or the built-in sample.
    seed : int, optional
        Seed of the microscope's counting noise.
    progress_bar, best_effort, plots : bool
        See `make_run_engine`.
    wrap_writer : callable, optional
        See `make_run_engine` (``InferenceAgent.forward_to`` adds a ``descriptors`` stream).

    Returns
    -------
    Session
    """
    catalog = open_catalog(data_dir)
    try:
        RE, bec = make_run_engine(  # noqa: N806
            catalog,
            progress_bar=progress_bar,
            best_effort=best_effort,
            plots=plots,
            wrap_writer=wrap_writer,
        )
        microscope, scan_gen, det = make_devices(catalog, sample, seed=seed)
    except BaseException:
        catalog.close()
        raise
    return Session(catalog, RE, bec, microscope, scan_gen, det)
