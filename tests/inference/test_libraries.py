"""The beam libraries built ahead of the tests: every trained condition, the held-out ones too."""

from __future__ import annotations

from sim_devices.cbed_library import stored_library
from stem_loop.inference import BeamConditions
from stem_loop.inference.conditions import MATERIALS, TRAINING_VOLTAGES_KV
from stem_loop.inference.evaluation import load_heldout
from stem_loop.inference.heldout import SECOND_HELDOUT
from stem_loop.inference.libraries import main, missing_libraries, trained_library_specs


def test_every_heldout_condition_has_a_trained_library():
    specs = {spec.filename() for spec in trained_library_specs()}
    assert len(specs) == len(MATERIALS) * len(TRAINING_VOLTAGES_KV)
    for heldout in (load_heldout(), load_heldout(SECOND_HELDOUT)):
        for run in heldout["meta"]["runs"]:
            assert BeamConditions(**run["conditions"]).library_spec().filename() in specs


def test_an_empty_cache_misses_them_all_and_the_list_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STEM_LOOP_CACHE", str(tmp_path))
    missing = [s for s in trained_library_specs() if stored_library(s) is None]
    assert missing_libraries() == missing  # none is shipped in the package: all six
    assert len(missing) == len(trained_library_specs())
    main(["--list"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(missing) and all(line.endswith(": missing") for line in lines)


def test_the_session_built_them_before_the_first_test():
    # tests/conftest.py's pytest_sessionstart: none is built inside a test's time limit
    assert missing_libraries() == []
