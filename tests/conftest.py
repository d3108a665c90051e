"""Shared fixtures: a real embedded Tiled server and a RunEngine that writes into it.

Fixtures (names are stable; other test packages rely on them)
-------------------------------------------------------------
tiled_catalog : stem_loop.storage.Catalog, session scope
    A real embedded Tiled server on 127.0.0.1 (SQLite catalog, DuckDB tables) whose data
    directory is a fresh temporary ``STEM_LOOP_DATA``. ``tiled_catalog.client`` is the
    ``CatalogOfBlueskyRuns`` container (``client[uid]``, ``client[-1]``, ``client[scan_id]``);
    ``tiled_catalog.hdf5_dir`` is where detectors must write so the server can read the files.
    Shared by the whole session: look runs up by the uid ``RE`` returns, not by position.
RE : bluesky.RunEngine, function scope
    A fresh RunEngine with the Tiled writer subscribed (documents land in ``tiled_catalog``).
    ``RE(plan)`` returns the tuple of run uids.
cbed_library : sim_devices.cbed_library.BeamLibrary, session scope, autouse
    The fast CBED model's default beam library, built once (minutes) into the cache before any
    test, so tests and the commands they start in subprocesses all find it there.

Before the first test, ``pytest_sessionstart`` builds the beam library of every trained
condition that is missing (:mod:`stem_loop.inference.libraries`; about half an hour on a fresh
2-core machine, once): built inside a test they ran past its time limit.
"""

from __future__ import annotations

import pytest

from stem_loop.storage import API_KEY_ENV, URI_ENV, open_catalog, subscribe_writer


def pytest_sessionstart(session: pytest.Session) -> None:
    """Build the missing beam libraries of the trained conditions, outside any test's limit."""
    from stem_loop.inference.libraries import build_missing, missing_libraries

    if not missing_libraries():
        return
    capture = session.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():  # show the progress of a long first build
        build_missing(progress=True)


@pytest.fixture(scope="session", autouse=True)
def cbed_library():
    """The default beam library of the fast model, built once into the cache if missing."""
    from sim_devices.cbed_library import LibrarySpec, load_or_build

    return load_or_build(LibrarySpec())


@pytest.fixture(scope="session")
def tiled_catalog(tmp_path_factory):
    """A real embedded Tiled server in a temporary data directory (see module docstring)."""
    data_dir = tmp_path_factory.mktemp("stem-loop-data")
    with pytest.MonkeyPatch.context() as mp:
        # Always embedded, whatever the developer's shell points at.
        mp.delenv(URI_ENV, raising=False)
        mp.delenv(API_KEY_ENV, raising=False)
        catalog = open_catalog(data_dir=data_dir)
    with catalog:
        yield catalog


@pytest.fixture
def RE(tiled_catalog):  # noqa: N802 - the Bluesky name
    """A RunEngine whose documents are written into ``tiled_catalog``."""
    from bluesky import RunEngine

    engine = RunEngine({})
    subscribe_writer(engine, tiled_catalog)
    yield engine
    if engine.state != "idle":
        engine.halt()
