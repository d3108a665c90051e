"""The energetics agent on a real RunEngine: descriptors stream in, energetics stream in Tiled."""

from __future__ import annotations

import time

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
import pytest
from ophyd_async.core import StandardReadable, soft_signal_rw
from ophyd_async.plan_stubs import ensure_connected

from stem_loop.agents.energetics import (
    EnergeticsAgent,
    EnergeticsReadout,
    wait_and_emit_energetics,
)
from stem_loop.energetics import EnergyService

STRAINS = [
    (0.004, -0.002, 0.001),
    (-0.006, 0.003, 0.0),
    (0.0, 0.008, -0.002),
    (0.004, -0.002, 0.001),  # the same structure again
]


class DescriptorSource(StandardReadable):
    """Stands in for the inference agent's output signals."""

    def __init__(self, name: str = "descriptors") -> None:
        with self.add_children_as_readables():
            self.exx = soft_signal_rw(float, 0.0)
            self.eyy = soft_signal_rw(float, 0.0)
            self.exy = soft_signal_rw(float, 0.0)
            self.exx_std = soft_signal_rw(float, 0.0)
            self.eyy_std = soft_signal_rw(float, 0.0)
            self.exy_std = soft_signal_rw(float, 0.0)
        super().__init__(name=name)


@pytest.fixture
def agent(process_dispatcher, quick_settings, quick_reference):
    service = EnergyService(
        "Si", quick_settings, process_dispatcher, tolerance_mev=0.1, reference=quick_reference
    )
    return EnergeticsAgent(service)


def test_energetics_stream_lands_in_the_same_run(RE, tiled_catalog, agent):
    RE.subscribe(agent)
    source, readout = DescriptorSource(), EnergeticsReadout()
    timing = {}

    @bpp.run_decorator(md={"purpose": "energetics agent test"})
    def inner():
        start = time.perf_counter()
        for exx, eyy, exy in STRAINS:
            yield from bps.mv(source.exx, exx, source.eyy, eyy, source.exy, exy)
            yield from bps.mv(source.exx_std, 0.0005, source.eyy_std, 0.0005, source.exy_std, 0.0)
            yield from bps.trigger_and_read([source], name="descriptors")
        timing["descriptors_s"] = time.perf_counter() - start
        emitted = yield from wait_and_emit_energetics(agent, readout, timeout_s=240)
        timing["emitted"] = emitted

    def plan():
        yield from ensure_connected(source)
        yield from inner()

    (uid,) = RE(plan())
    # The callback only submits: all positions were read long before the DFT finished.
    dft = [r for r in agent.records if r["source"] == "dft"]
    assert dft and timing["descriptors_s"] < min(r["wall_s"] for r in dft)
    assert timing["emitted"] == len(STRAINS)

    run = tiled_catalog.client[uid]
    assert {"descriptors", "energetics"} <= set(run)
    stream = run["energetics"]
    energy = np.asarray(stream["energetics-energy_mev_per_atom"].read())
    std = np.asarray(stream["energetics-energy_std_mev_per_atom"].read())
    source_col = [str(s) for s in stream["energetics-source"].read()]
    seq = np.asarray(stream["energetics-position_seq_num"].read())
    assert len(energy) == len(STRAINS)
    assert list(seq) == [1, 2, 3, 4]  # in position order
    assert np.all(energy > 0) and np.all(std > 0)
    assert source_col[-1] == "cache" and energy[-1] == energy[0]
    assert set(source_col) <= {"dft", "cache", "surrogate"}
    exx = np.asarray(stream["energetics-exx"].read())
    assert np.allclose(exx, [s[0] for s in STRAINS])
    # Provenance travels with the records: settings and the descriptor uncertainty.
    assert agent.records[0]["calculator"]["ecut_ev"] == 250.0
    assert all(r["exx_std"] == 0.0005 for r in agent.records)
    # A 0.05 % strain uncertainty on a ~0.5 % strain: a few % of the energy, added to sigma.
    for r in agent.records:
        assert 0 < r["std_from_descriptors_mev_per_atom"] < r["energy_mev_per_atom"]
        assert r["std_total_mev_per_atom"] >= r["std_mev_per_atom"]
    total = np.asarray(stream["energetics-energy_std_total_mev_per_atom"].read())
    assert np.all(total >= std) and np.any(total > std)
    assert all(r["run_uid"] == uid for r in agent.records)


def test_descriptor_arrays_of_a_finished_run(agent):
    arrays = {
        "exx": np.array([s[0] for s in STRAINS]),
        "eyy": np.array([s[1] for s in STRAINS]),
        "exy": np.array([s[2] for s in STRAINS]),
        "thickness_nm": np.array([30.0, 40.0, 50.0, 60.0]),
    }
    indices = agent.consume(arrays, run_uid="finished-run")
    assert indices == [0, 1, 2, 3]
    assert agent.service.wait(timeout=240)
    records = sorted(agent.take(), key=lambda r: r["index"])
    assert [r["seq_num"] for r in records] == [1, 2, 3, 4]
    assert records[3]["source"] == "cache"
    assert records[3]["energy_mev_per_atom"] == records[0]["energy_mev_per_atom"]
    assert {r["run_uid"] for r in records} == {"finished-run"}
    # A nonsense strain is answered with its reason, not an exception into the RunEngine.
    assert agent.consume({"exx": [np.nan], "eyy": [0.0], "exy": [0.0]}) == [-1]
    (rejected,) = agent.take()
    assert rejected["source"] == "rejected" and "finite" in rejected["reason"]
