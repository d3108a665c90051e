"""DFT results persist between services (runs): stored, reloaded, never computed twice."""

from __future__ import annotations

import json

import pytest

from stem_loop.energetics import EnergyService, ResultStore

STRAINS = [(0.01, 0.0, 0.0), (0.0, 0.0, 0.01)]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, process_dispatcher, quick_settings, quick_reference):
    store = ResultStore(tmp_path_factory.mktemp("store") / "results.jsonl")
    service = EnergyService(
        "Si",
        quick_settings,
        process_dispatcher,
        tolerance_mev=None,
        reference=quick_reference,
        store=store,
    )
    service.request_many(STRAINS)
    assert service.wait(timeout=300)
    return store, service


def _service(store, dispatcher, settings, reference, **kwargs):
    return EnergyService(
        "Si", settings, dispatcher, tolerance_mev=None, reference=reference, store=store, **kwargs
    )


def test_every_dft_result_is_written(first_run, quick_reference):
    store, service = first_run
    lines = [json.loads(line) for line in store.path.read_text().splitlines()]
    assert service.dft_calls == 2 and len(lines) == 2
    assert {tuple(line["strain"]) for line in lines} == set(STRAINS)
    assert all(line["lattice_constant_a"] == quick_reference.lattice_constant_a for line in lines)
    assert all(line["provenance"]["calculator"]["ecut_ev"] == 250.0 for line in lines)


def test_a_new_run_answers_stored_structures_without_dft(
    first_run, process_dispatcher, quick_settings, quick_reference
):
    store, first = first_run
    second = _service(store, process_dispatcher, quick_settings, quick_reference)
    assert second.stored_results == 2
    second.request_many(STRAINS)
    assert second.wait(timeout=60)
    assert second.dft_calls == 0
    answers = second.ordered_results()
    assert [a.source for a in answers] == ["cache", "cache"]
    before = {r.strain: r.energy_mev_per_atom for r in first.ordered_results()}
    assert [a.energy_mev_per_atom for a in answers] == [before[s] for s in STRAINS]
    assert second.surrogate.n_observations == 2  # the stored energies train the surrogate


def test_recompute_ignores_the_store_but_still_appends(
    first_run, process_dispatcher, quick_settings, quick_reference
):
    store, _ = first_run
    before = len(store.path.read_text().splitlines())
    service = _service(
        store, process_dispatcher, quick_settings, quick_reference, reuse_stored=False
    )
    service.request_many(STRAINS[:1])
    assert service.wait(timeout=300)
    assert service.dft_calls == 1 and service.ordered_results()[0].source == "dft"
    assert len(store.path.read_text().splitlines()) == before + 1


def test_torn_lines_and_other_references_are_skipped(tmp_path, caplog):
    store = ResultStore(tmp_path / "results.jsonl")
    good = {"strain": [0.01, 0, 0], "energy_ev_per_atom": -5.0, "lattice_constant_a": 5.47}
    other = dict(good, lattice_constant_a=5.48)
    store.path.write_text(
        json.dumps(good) + "\n" + json.dumps(other) + "\n" + '{"strain": [0.02, 0'
    )
    found = store.load(5.47)
    assert [e.strain for e in found] == [(0.01, 0.0, 0.0)]
    assert "skipped 1 unreadable line" in caplog.text
