"""The GP surrogate: calibrated on a known function, then against direct DFT."""

from __future__ import annotations

import numpy as np
import pytest

from stem_loop.energetics import (
    EnergyService,
    StrainEnergyGP,
    get_material,
    rotate_stiffness,
    scan_frame_strain,
)
from stem_loop.energetics.elastic import stress

SI = get_material("Si")
STIFFNESS = rotate_stiffness(SI.elastic.tensor(), SI.rotation)


def _elastic_energy(strain) -> float:
    """Harmonic plane-stress energy with a cubic softening, meV/atom (a stand-in for DFT)."""
    e = scan_frame_strain(*strain, SI)
    harmonic = 0.5 * np.sum(stress(e, STIFFNESS) * e) / 160.2177 * 20.0 * 1000
    return harmonic * (1 - 3 * np.trace(e))


def test_reference_point_is_known_exactly():
    gp = StrainEnergyGP()
    mean, std = gp.predict([[0.0, 0.0, 0.0]])
    _, far = gp.predict([[0.01, 0.0, 0.0]])
    assert abs(mean[0]) < 1e-9 and std[0] <= gp.parameters.noise  # only the DFT noise
    assert far[0] > 100 * std[0]


def test_pending_points_count_as_known_for_the_variance():
    gp = StrainEnergyGP()
    x = [[0.01, -0.005, 0.002]]
    _, alone = gp.predict(x)
    _, with_pending = gp.predict(x, pending=x)
    assert with_pending[0] < alone[0] / 10


def test_few_points_learn_the_elastic_energy():
    rng = np.random.default_rng(0)
    strains = rng.uniform(-0.015, 0.015, (300, 3)) * [1, 1, 0.4]
    truth = np.array([_elastic_energy(s) for s in strains])
    gp, calls = StrainEnergyGP(), 0
    for s, y in zip(strains, truth, strict=True):
        if gp.predict([s])[1][0] > 0.1:
            gp.add([s], [y])
            calls += 1
    mean, std = gp.predict(strains)
    assert calls <= 30  # 10 % of the positions
    assert np.abs(mean - truth).max() < 0.5  # meV/atom
    # The uncertainty is honest: errors beyond 4 sigma are rare.
    assert np.mean(np.abs(mean - truth) > 4 * std + 0.01) < 0.05


@pytest.fixture(scope="module")
def sample_strains():
    from sim_devices import builtin_sample

    sample = builtin_sample("si_inclusion")
    rng = np.random.default_rng(3)
    width, height = sample.extent_nm
    d = sample.descriptors_at(rng.uniform(0, width, 40), rng.uniform(0, height, 40))
    return np.column_stack([d["exx"], d["eyy"], d["exy"]])


def test_surrogate_against_direct_dft(
    sample_strains, process_dispatcher, quick_settings, quick_reference
):
    service = EnergyService(
        "Si", quick_settings, process_dispatcher, tolerance_mev=0.1, reference=quick_reference
    )
    service.request_many(sample_strains)
    assert service.wait(timeout=300)
    results = service.ordered_results()
    assert len(results) == len(sample_strains)
    by_source = [r.source for r in results]
    assert service.dft_calls == by_source.count("dft") < len(sample_strains) // 2
    surrogate = [r for r in results if r.source == "surrogate"]
    assert surrogate, "the surrogate answered nothing"
    # Direct DFT of the surrogate answers with the largest uncertainty.
    check = sorted(surrogate, key=lambda r: -r.std_mev_per_atom)[:3]
    direct = EnergyService(
        "Si", quick_settings, process_dispatcher, tolerance_mev=None, reference=quick_reference
    )
    direct.request_many([r.strain for r in check])
    assert direct.wait(timeout=300)
    for predicted, computed in zip(check, direct.ordered_results(), strict=True):
        assert predicted.std_mev_per_atom <= 0.1
        assert predicted.energy_mev_per_atom == pytest.approx(computed.energy_mev_per_atom, abs=1.0)
