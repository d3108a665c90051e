"""Fixtures for the device tests: a simulated microscope, a RunEngine, the sim devices."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest
from bluesky import RunEngine

from sim_devices import Microscope, builtin_sample
from sim_devices.backends import make_sim_devices

SEED = 0


@pytest.fixture(scope="session")
def sim_microscope() -> Microscope:
    """The built-in sample under the fast forward model (built once per session)."""
    return Microscope(builtin_sample(), forward="fast", seed=SEED)


@pytest.fixture
def fresh_microscope(sim_microscope: Microscope) -> Callable[[int], Microscope]:
    """A new microscope with the same physics and a given noise seed."""

    def make(seed: int = SEED) -> Microscope:
        return Microscope(sim_microscope.sample, forward=sim_microscope.forward, seed=seed)

    return make


@dataclass(eq=False)
class DocCollector:
    """Every (name, document) the RunEngine emitted, in order."""

    docs: list[tuple[str, dict]] = field(default_factory=list)

    def __call__(self, name: str, doc: dict) -> None:
        self.docs.append((name, doc))

    def of(self, name: str) -> list[dict]:
        return [d for n, d in self.docs if n == name]

    def clear(self) -> None:
        self.docs.clear()


@pytest.fixture
def docs() -> DocCollector:
    return DocCollector()


@pytest.fixture
def RE(docs: DocCollector):
    engine = RunEngine({}, call_returns_result=False)
    engine.subscribe(docs)
    yield engine
    if engine.state != "idle":
        engine.halt()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "hdf5"


@pytest.fixture
def devices(fresh_microscope, data_dir: Path):
    """``(scan_gen, det)`` on a microscope seeded with :data:`SEED`, writing to ``data_dir``."""
    return make_sim_devices(fresh_microscope(SEED), data_dir)


def _uri_to_path(uri: str) -> Path:
    prefix = "file://localhost"
    assert uri.startswith(prefix + "/"), uri
    return Path(uri[len(prefix) :])


@pytest.fixture
def read_resource() -> Callable[[dict], np.ndarray]:
    """Read the whole HDF5 dataset a StreamResource document points at."""

    def read(doc: dict) -> np.ndarray:
        with h5py.File(_uri_to_path(doc["uri"]), "r") as f:
            return f[doc["parameters"]["dataset"]][()]

    return read
