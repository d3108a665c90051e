"""The session builder shared by the profile and the CLI: sample choice and RunEngine wiring."""

from __future__ import annotations

import pytest

from stem_loop.session import SAMPLE_ENV, load_sample, make_run_engine


def test_sample_defaults_to_the_builtin(monkeypatch):
    monkeypatch.delenv(SAMPLE_ENV, raising=False)
    assert load_sample().name == "si_inclusion"
    assert load_sample("strained_layer").name == "strained_layer"


def test_sample_file_from_the_environment(monkeypatch, tmp_path):
    path = load_sample("strained_layer").to_npz(tmp_path / "mine.npz")
    monkeypatch.setenv(SAMPLE_ENV, str(path))
    sample = load_sample()
    assert sample.material == "Si" and sample.shape == load_sample("strained_layer").shape


def test_missing_sample_file_is_refused(tmp_path):
    with pytest.raises((FileNotFoundError, ValueError), match="absent"):
        load_sample(tmp_path / "absent.npz")


def test_run_engine_records_and_resumes_scan_ids(tiled_catalog):
    import bluesky.plans as bp
    from ophyd.sim import det

    RE, bec = make_run_engine(tiled_catalog, plots=False)
    RE.md["scan_id"] = 77000
    (uid,) = RE(bp.count([det]))
    assert tiled_catalog.client[uid].metadata["start"]["scan_id"] == 77001

    again, _ = make_run_engine(tiled_catalog, best_effort=False)
    assert again.md["scan_id"] == 77001  # The next run will be 77002.
