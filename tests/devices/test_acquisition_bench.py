"""The acquisition benchmark runs and reports every mode and frame source."""

from __future__ import annotations

from stem_loop.bench.acquisition import format_table, run_acquisition_bench


def test_acquisition_bench_reports_each_mode_and_source(sim_microscope, tmp_path):
    report = run_acquisition_bench(
        60, n_step=10, n_live=8, data_dir=tmp_path, microscope=sim_microscope, verbose=False
    )
    rows = {(r["mode"], r["source"]): r for r in report["results"]}
    assert set(rows) == {
        ("step", "live"),
        ("batch", "live"),
        ("step", "replay"),
        ("batch", "replay"),
    }
    assert rows[("batch", "replay")]["positions"] == 60
    assert rows[("step", "live")]["positions"] == 8
    assert all(r["positions_per_s"] > 0 for r in rows.values())
    assert report["dtype"] == "uint16" and report["tiled"] is False
    assert "replay" in format_table(report) and "data path alone" in report["note"]
    assert len(list(tmp_path.glob("det-image-*.h5"))) == 8  # two runs per row, one file each
