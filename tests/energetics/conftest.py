"""Fixtures of the energetics tests: a private cache, quick GPAW settings, real executors.

quick_settings : GPAWSettings
    PW 250 eV, 3x3x3 k-points: a few seconds per Si energy, same code path as production.
process_dispatcher : Dispatcher, session scope
    A real local process pool (2 workers) running real GPAW.
quick_reference : Reference, session scope
    The Si reference relaxed once with ``quick_settings`` into a temporary cache.
"""

from __future__ import annotations

import pytest

from stem_loop.energetics import (
    Dispatcher,
    DispatchSettings,
    EnergyService,
    relax_reference,
    settings_for,
)


@pytest.fixture(scope="session")
def energetics_cache(tmp_path_factory):
    """The energetics cache (the DFT reference) in a fresh directory for the whole session.

    Only the energetics cache is redirected: setting ``STEM_LOOP_CACHE`` for the session sent
    every later fast CBED model to an empty cache, where it rebuilt its beam library (418 s).
    """
    from stem_loop.energetics import reference

    path = tmp_path_factory.mktemp("stem-loop-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(reference, "cache_dir", lambda: path / "energetics")
        yield path


@pytest.fixture(scope="session")
def quick_settings():
    return settings_for("Si", "quick")


@pytest.fixture(scope="session")
def process_dispatcher(energetics_cache):
    with Dispatcher(DispatchSettings(executor="process", workers=2, timeout_s=120)) as d:
        yield d


@pytest.fixture(scope="session")
def quick_reference(process_dispatcher, quick_settings):
    return relax_reference("Si", quick_settings, process_dispatcher)


@pytest.fixture(scope="module")
def direct_service(process_dispatcher, quick_settings, quick_reference):
    """Every distinct strain to DFT (no surrogate), reference already relaxed."""
    return EnergyService(
        "Si", quick_settings, process_dispatcher, tolerance_mev=None, reference=quick_reference
    )
