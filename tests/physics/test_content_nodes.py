"""Content nodes: the strained cell's multislice at 27 strains, interpolated in between."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from sim_devices.cbed_fast import FastCBED
from sim_devices.cbed_library import BeamLibrary, LibrarySpec
from sim_devices.cell_multislice import StrainedCellMultislice, strained_cell_multislice
from sim_devices.content_nodes import (
    NODE_SPAN,
    content_nodes,
    lagrange_weights,
    node_strains,
    nodes_path,
)

TILTS = np.random.default_rng(3).uniform(-3.0, 3.0, (12, 2))
EXITS = 10 * np.arange(1, 21)  # up to 200 slices (38 nm of Si [110])
BEAMS = np.array([(h, k) for h in range(-3, 4) for k in range(-3, 4)])


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STEM_LOOP_CACHE", str(tmp_path))
    strained_cell_multislice.cache_clear()
    yield tmp_path
    strained_cell_multislice.cache_clear()


@pytest.fixture(scope="module")
def cell() -> StrainedCellMultislice:
    return StrainedCellMultislice("Si", "110", 200.0)


def test_weights_reproduce_any_function_quadratic_in_each_component():
    rng = np.random.default_rng(0)
    powers = [(a, b, c) for a in range(3) for b in range(3) for c in range(3)]
    coefficients = rng.normal(size=len(powers))

    def f(e):
        x = np.asarray(e) / NODE_SPAN
        return sum(
            c * x[0] ** a * x[1] ** b * x[2] ** p
            for c, (a, b, p) in zip(coefficients, powers, strict=True)
        )

    at_nodes = np.array([f(e) for e in node_strains()])
    for strain in rng.uniform(-NODE_SPAN, NODE_SPAN, (20, 3)):
        weights = lagrange_weights(tuple(strain))
        assert weights.sum() == pytest.approx(1.0, abs=1e-12)
        assert weights @ at_nodes == pytest.approx(f(strain), abs=1e-10)
    # at a node the weights pick that node alone
    np.testing.assert_allclose(
        lagrange_weights(tuple(node_strains()[7])), np.eye(27)[7], atol=1e-12
    )


def test_a_strain_past_the_span_is_refused():
    with pytest.raises(ValueError, match="outside the nodes"):
        lagrange_weights((0.0, 0.021, 0.0))


def test_nodes_are_the_cell_at_nodes_and_close_to_it_between(cell, fresh_cache):
    nodes = content_nodes(LibrarySpec(), cell, TILTS, EXITS, BEAMS)
    assert nodes.values.dtype == np.float16 and nodes.values.shape == (27, 20, len(BEAMS), 12)
    corner = tuple(node_strains()[2])  # (-2, -2, +2) %
    np.testing.assert_allclose(
        nodes.at(corner), cell.intensities(corner, TILTS, EXITS, BEAMS), atol=1e-3
    )

    rng = np.random.default_rng(1)
    unstrained = cell.intensities((0.0, 0.0, 0.0), TILTS, EXITS, BEAMS)
    for strain in rng.uniform(-NODE_SPAN, NODE_SPAN, (3, 3)):
        strain = tuple(float(v) for v in strain)
        direct = cell.intensities(strain, TILTS, EXITS, BEAMS)
        error = np.sqrt(np.mean((nodes.at(strain) - direct) ** 2))
        change = np.sqrt(np.mean((unstrained - direct) ** 2))
        assert error < 0.5 * change, (strain, error, change)


def test_nodes_are_cached_and_an_interrupted_computation_resumes(cell, fresh_cache, monkeypatch):
    spec = LibrarySpec()  # Si [110] at 200 kV, as the cell
    path = nodes_path(spec, TILTS, EXITS, BEAMS)
    parts = path.with_suffix(".parts")
    parts.mkdir(parents=True)
    kept = cell.intensities(tuple(node_strains()[0]), TILTS, EXITS, BEAMS).astype(np.float16)
    np.save(parts / "node00.npy", kept)  # an earlier, interrupted computation
    calls = []
    real = StrainedCellMultislice.intensities

    def counted(self, strain, *args, **kwargs):
        calls.append(strain)
        return real(self, strain, *args, **kwargs)

    monkeypatch.setattr(StrainedCellMultislice, "intensities", counted)
    nodes = content_nodes(spec, cell, TILTS, EXITS, BEAMS)
    assert len(calls) == 26 and tuple(node_strains()[0]) not in calls
    assert path.is_file() and not parts.exists()
    np.testing.assert_array_equal(nodes.values[0], kept)

    calls.clear()
    again = content_nodes(spec, cell, TILTS, EXITS, BEAMS)
    assert calls == []
    np.testing.assert_array_equal(again.values, nodes.values)


def _small_library(library: BeamLibrary, k_max: float = 4.0, exits: int = 10) -> BeamLibrary:
    """The library cut to +-k_max mrad and its first exit planes (a cheap set of nodes)."""
    keep = np.flatnonzero(np.abs(library.k_mrad) <= k_max + 1e-9)
    return BeamLibrary(
        spec=replace(library.spec, k_max_mrad=k_max),
        hk=library.hk,
        g_inv_a=library.g_inv_a,
        k_mrad=library.k_mrad[keep],
        thickness_nm=library.thickness_nm[:exits],
        intensity=library.intensity[:exits][:, :, keep][:, :, :, keep],
    )


def test_the_fast_model_renders_node_contents(fast_model, fresh_cache):
    library = _small_library(fast_model.library)
    models = {
        engine: FastCBED(
            library,
            fast_model.beam,
            fast_model.detector,
            content_engine=engine,
            strain_contents=True,
        )
        for engine in ("nodes", "multislice")
    }
    plain = FastCBED(library, fast_model.beam, fast_model.detector, strain_contents=False)

    def frames(model, strain):
        d = dict(exx=[strain[0]], eyy=[strain[1]], exy=[strain[2]], thickness_nm=[15.0])
        return model.patterns(dict(d, tilt_x_mrad=[0.4], tilt_y_mrad=[-0.3]))[0]

    corner = (0.02, -0.02, 0.02)  # a node: the cell itself, to the nodes' float16 storage
    cell_corner = frames(models["multislice"], corner)
    node_error = np.abs(frames(models["nodes"], corner) - cell_corner).max()
    assert node_error < 1e-3 * cell_corner.max()
    assert np.abs(frames(plain, corner) - cell_corner).max() > 20 * node_error
    between = (0.012, -0.007, 0.004)
    exact_cell = frames(models["multislice"], between)
    assert (
        np.abs(frames(models["nodes"], between) - exact_cell).max()
        < 0.5 * np.abs(frames(plain, between) - exact_cell).max()
    )
    with pytest.raises(ValueError, match="outside the nodes"):
        frames(models["nodes"], (0.03, 0.0, 0.0))
