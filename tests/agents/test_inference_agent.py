"""The inference agent adds a ``descriptors`` stream to real scans recorded in Tiled."""

from __future__ import annotations

import bluesky.plan_stubs as bps
import numpy as np
import pytest
from bluesky import RunEngine
from event_model import DocumentNames, compose_run, schema_validators

import stem_loop.agents.inference as inference_module
from sim_devices.backends import make_sim_devices
from stem_loop.agents.inference import (
    DESCRIPTOR_NAMES,
    DescriptorBatch,
    InferenceAgent,
    conditions_from_start,
    microscope_conditions,
)
from stem_loop.bench.inference import DATASET, write_frames
from stem_loop.inference import BeamConditions
from stem_loop.inference.mirror import auto_view_count, views_of
from stem_loop.inference.refine import (
    DOUBTFUL_STD_NM,
    ThicknessRefiner,
    live_refiner,
    refine_doubtful,
)
from stem_loop.plans import sparse_scan
from stem_loop.storage import make_writer

FIELDS = [*DESCRIPTOR_NAMES, *(f"{n}_std" for n in DESCRIPTOR_NAMES)]

#: Strain values from batches of other sizes differ in float32 rounding: about 1e-10 absolute,
#: which is more than rtol=1e-5 of a strain near zero (1e-5) and far below the model's error.
STRAIN_ATOL = 1e-8


class Collector:
    """Every (name, doc) the agent forwarded, in order."""

    def __init__(self) -> None:
        self.docs: list[tuple[str, dict]] = []

    def __call__(self, name: str, doc: dict) -> None:
        self.docs.append((name, doc))

    def names(self) -> list[str]:
        return [n for n, _ in self.docs]

    def of(self, name: str) -> list[dict]:
        return [d for n, d in self.docs if n == name]


def _positions(microscope, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    width, height = microscope.field_of_view_nm
    return rng.uniform(1, width - 1, n), rng.uniform(1, height - 1, n)


def _scan(tiled_catalog, microscope, agent, n, *, mode="batch", seed=0, dwell_s=0.0):
    """Record ``n`` frames through RE -> agent -> (Tiled writer, collector)."""
    collector = Collector()
    agent.forward_to(make_writer(tiled_catalog)).forward_to(collector)
    engine = RunEngine({})
    engine.subscribe(agent)
    scan_gen, det = make_sim_devices(microscope, tiled_catalog.hdf5_dir, chunk_frames=8)
    if dwell_s:
        engine(bps.mv(scan_gen.dwell_s, dwell_s))
    x, y = _positions(microscope, n, seed)
    (uid,) = engine(sparse_scan([det], scan_gen, x, y, mode=mode))
    return tiled_catalog.client[uid], collector, (x, y)


def _validate(collector: Collector) -> None:
    for name, doc in collector.docs:
        schema_validators[DocumentNames(name)].validate(doc)


@pytest.mark.parametrize(
    ("mode", "n", "views"), [("batch", 24, 1), ("step", 5, 1), ("batch", 12, 2)]
)
def test_descriptors_stream_equals_the_predictor_on_the_recorded_frames(
    tiled_catalog, microscope, predictor, conditions, mode, n, views
):
    predictor = predictor.mirrored(views=views) if views > 1 else predictor
    batches: list[DescriptorBatch] = []
    agent = InferenceAgent(
        predictor, conditions, batch_size=8, max_latency_s=0.05, listeners=[batches.append]
    )
    run, collector, (x, y) = _scan(tiled_catalog, microscope, agent, n, mode=mode)

    assert set(run) == {"primary", "descriptors"}
    frames = np.asarray(run["primary"]["det-image"].read())
    assert frames.shape == (n, 128, 128)
    network = predictor.predict(frames, conditions)
    # the live path: doubtful thicknesses refined by the fast model (unstrained contents)
    refiner = ThicknessRefiner(conditions, contents="unstrained")
    expected, refined = refine_doubtful(refiner, frames, network, DOUBTFUL_STD_NM)
    stream = run["descriptors"].read()
    np.testing.assert_array_equal(stream["thickness_refined"], refined)
    np.testing.assert_allclose(
        stream["thickness_network_nm"], network.values["thickness_nm"], rtol=1e-5, equal_nan=True
    )
    # float32 network: batches of other sizes round differently (seen: 9e-8 on a 5e-3 tilt)
    for name in DESCRIPTOR_NAMES:
        np.testing.assert_allclose(
            stream[name], expected.values[name], rtol=1e-5, atol=1e-6, equal_nan=True
        )
        np.testing.assert_allclose(
            stream[f"{name}_std"], expected.std[name], rtol=1e-5, atol=1e-6, equal_nan=True
        )
    np.testing.assert_array_equal(stream["ood"], expected.ood)
    assert list(stream["reason"].values) == expected.reason
    np.testing.assert_array_equal(stream["frame_seq_num"], np.arange(1, n + 1))
    np.testing.assert_allclose(stream["x_nm"], x)
    np.testing.assert_allclose(stream["y_nm"], y)
    assert run.metadata["stop"]["num_events"] == {"primary": n, "descriptors": n}
    configuration = run["descriptors"].metadata["configuration"]["inference"]["data"]
    assert configuration["inference-material"] == conditions.material
    assert configuration["inference-mirror_views"] == views
    assert configuration["inference-precision"] == predictor.precision

    # Documents: valid, tied to the run, the agent's pages before the stop.
    _validate(collector)
    start = collector.of("start")[0]
    (descriptor,) = [d for d in collector.of("descriptor") if d["name"] == "descriptors"]
    assert descriptor["run_start"] == start["uid"]
    assert collector.names()[-1] == "stop"
    pages = collector.of("event_page")
    assert all(p["descriptor"] == descriptor["uid"] for p in pages)
    assert sum(len(p["seq_num"]) for p in pages) == n
    # Listeners get the same numbers.
    assert sum(len(b) for b in batches) == n
    np.testing.assert_allclose(
        np.concatenate([b.values["exx"] for b in batches]), stream["exx"], equal_nan=True
    )


def test_descriptors_arrive_while_the_scan_runs(tiled_catalog, microscope, predictor, conditions):
    agent = InferenceAgent(predictor, conditions, batch_size=1000, max_latency_s=0.05)
    run, collector, _ = _scan(tiled_catalog, microscope, agent, 32, dwell_s=0.03)
    names = collector.names()
    first_page = names.index("event_page")
    last_datum = len(names) - 1 - names[::-1].index("stream_datum")
    # The latency bound, not the stop, released the first page: frames were still arriving.
    assert first_page < last_datum
    assert len(run["descriptors"].read()["exx"]) == 32


class FailingPredictor:
    def predict(self, frames, conditions):
        raise RuntimeError("GPU on fire")


def _missing_file(monkeypatch) -> None:
    real = inference_module._uri_to_path
    monkeypatch.setattr(
        inference_module, "_uri_to_path", lambda uri: real(uri).with_name("gone.h5")
    )


def _raising_downstream(name: str, doc: dict) -> None:
    raise ValueError("downstream bug")


@pytest.mark.parametrize("fault", ["predictor raises", "file missing", "downstream raises"])
def test_faults_lose_no_acquired_data(
    tiled_catalog, microscope, predictor, conditions, monkeypatch, fault
):
    n = 12
    agent = InferenceAgent(
        FailingPredictor() if fault == "predictor raises" else predictor,
        conditions,
        batch_size=8,
        max_latency_s=0.05,
    )
    if fault == "file missing":
        _missing_file(monkeypatch)
    if fault == "downstream raises":
        agent.forward_to(_raising_downstream)
    run, collector, _ = _scan(tiled_catalog, microscope, agent, n)

    assert run.metadata["stop"]["exit_status"] == "success"
    assert np.asarray(run["primary"]["det-image"].read()).shape == (n, 128, 128)
    _validate(collector)
    stream = run["descriptors"].read()
    assert len(stream["exx"]) == n
    if fault == "downstream raises":
        assert agent.frames_failed == 0
        assert np.isfinite(np.asarray(stream["exx"])[~np.asarray(stream["ood"])]).all()
        return
    assert agent.frames_failed == n
    assert np.asarray(stream["ood"]).all()
    for name in FIELDS:
        assert np.isnan(np.asarray(stream[name])).all()
    cause = "inference failed: RuntimeError" if fault == "predictor raises" else "unreadable"
    assert all(cause in r for r in stream["reason"].values)


def _feed_file(agent: InferenceAgent, path, n: int, start_md: dict | None = None) -> Collector:
    """A run's documents for frames already in ``path`` (no positions), fed to ``agent``."""
    collector = Collector()
    agent.forward_to(collector)
    run = compose_run(metadata=start_md or {})
    agent("start", run.start_doc)
    key = {"source": "t", "shape": [128, 128], "dtype": "array", "external": "STREAM:"}
    desc = run.compose_descriptor(name="primary", data_keys={"det-image": key})
    agent("descriptor", desc.descriptor_doc)
    resource = run.compose_stream_resource(
        mimetype="application/x-hdf5",
        uri=f"file://localhost{path}",
        data_key="det-image",
        parameters={"dataset": DATASET},
    )
    agent("stream_resource", resource.stream_resource_doc)
    for lo in range(0, n, 3):
        hi = min(lo + 3, n)
        agent(
            "stream_datum",
            resource.compose_stream_datum(
                indices={"start": lo, "stop": hi},
                seq_nums={"start": lo + 1, "stop": hi + 1},
                descriptor=desc.descriptor_doc,
            ),
        )
    agent("stop", run.compose_stop())
    _validate(collector)
    return collector


def _page_data(collector: Collector) -> dict[str, np.ndarray]:
    pages = collector.of("event_page")
    return {k: np.concatenate([p["data"][k] for p in pages]) for k in pages[0]["data"]}


def test_blank_saturated_and_wrong_frames_are_flagged(tmp_path, microscope, predictor, conditions):
    x, y = _positions(microscope, 4, seed=5)
    real = microscope.acquire(x, y)
    rng = np.random.default_rng(0)
    odd = np.stack(
        [
            np.zeros((128, 128), np.uint16),  # blank
            np.full((128, 128), 65535, np.uint16),  # saturated
            rng.poisson(1e5 / 128**2, (128, 128)).astype(np.uint16),  # no pattern
            np.rot90(real[0]).copy(),  # a lattice unlike Si [110] at this orientation
        ]
    )
    frames = np.concatenate([real, odd])
    path = write_frames(tmp_path / "frames.h5", frames)
    agent = InferenceAgent(predictor, conditions, batch_size=5, background=False)
    collector = _feed_file(agent, path, len(frames))
    assert [len(p["seq_num"]) for p in collector.of("event_page")] == [5, 3]  # batch_size pages
    data = _page_data(collector)

    expected = predictor.predict(real, conditions)
    np.testing.assert_array_equal(data["ood"][:4], expected.ood)
    np.testing.assert_allclose(
        data["exx"][:4], expected.values["exx"], rtol=1e-5, atol=STRAIN_ATOL, equal_nan=True
    )
    assert data["ood"][4:].all()
    for name in FIELDS:
        assert np.isnan(data[name][4:]).all()
    assert "blank" in data["reason"][4]
    assert "saturat" in data["reason"][5]
    assert all(data["reason"][4:])
    assert np.isnan(data["x_nm"]).all()  # this run recorded no positions


def test_conditions_missing_flag_frames_instead_of_guessing(tmp_path, microscope, predictor):
    frames = microscope.acquire(*_positions(microscope, 3, seed=2))
    path = write_frames(tmp_path / "frames.h5", frames)
    agent = InferenceAgent(predictor, None, background=False)
    data = _page_data(_feed_file(agent, path, 3))
    assert data["ood"].all()
    assert all("no beam conditions" in r for r in data["reason"])


def test_conditions_from_the_start_document_win(tmp_path, microscope, predictor, conditions):
    frames = microscope.acquire(*_positions(microscope, 3, seed=4))
    path = write_frames(tmp_path / "frames.h5", frames)
    other = BeamConditions(convergence_mrad=2.5)
    agent = InferenceAgent(predictor, conditions, background=False)
    md = {"beam_conditions": other.as_dict()}
    data = _page_data(_feed_file(agent, path, 3, md))
    expected = predictor.predict(frames, other)
    np.testing.assert_allclose(
        data["exx"], expected.values["exx"], rtol=1e-5, atol=STRAIN_ATOL, equal_nan=True
    )


def test_conditions_from_start():
    default = BeamConditions()
    assert conditions_from_start({}, default) is default
    assert conditions_from_start({}, None) is None
    full = BeamConditions(voltage_kv=300.0, convergence_mrad=2.0, mrad_per_pixel=0.25)
    assert conditions_from_start({"beam_conditions": full.as_dict()}, default) == full
    parts = {"material": "Si", "beam": {"voltage_kv": 80.0}, "detector": {"pixels": 128}}
    merged = conditions_from_start(parts, default)
    assert merged == BeamConditions(voltage_kv=80.0)
    spread = conditions_from_start({"detector": {"point_spread_px": 0.5}}, default)
    assert spread == BeamConditions(point_spread_px=0.5)
    with pytest.raises(ValueError):
        conditions_from_start({"material": "Au", "zone_axis": "111"}, default)
    with pytest.raises(ValueError, match="point_spread_px"):
        conditions_from_start({"detector": {"point_spread_px": -1.0}}, default)


def test_microscope_conditions_carry_the_detectors_point_spread():
    from types import SimpleNamespace

    from sim_devices import Beam, Detector

    scope = SimpleNamespace(
        sample=SimpleNamespace(material="Si", zone_axis="110"), beam=Beam(), detector=Detector()
    )
    assert microscope_conditions(scope)().point_spread_px == 0.0
    assert microscope_conditions(scope, 0.6)() == BeamConditions(point_spread_px=0.6)


def test_the_default_model_reads_as_mirror_auto():
    """With no predictor given the agent loads the shipped weights reading ``mirror="auto"``:
    the pair where the networks run in bfloat16, else the frame once."""
    agent = InferenceAgent(background=False)
    loaded = agent._load_predictor()
    assert loaded.views == views_of(auto_view_count(loaded.precision))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="batch_size"):
        InferenceAgent(batch_size=0)
    with pytest.raises(ValueError, match="max_latency_s"):
        InferenceAgent(max_latency_s=-1)
    with pytest.raises(ValueError, match="workers"):
        InferenceAgent(workers=0)
    with pytest.raises(ValueError, match="refine_thickness_above"):
        InferenceAgent(refine_thickness_above=-1.0)


def test_refined_thickness_is_published_live_and_closer_to_the_sample(
    tiled_catalog, microscope, predictor, conditions
):
    """With every frame refined (threshold 0) the stream's thickness is the refiner's, its
    sigma is the refiner's, and it reads the sample's thickness at least as well."""
    n = 12
    agent = InferenceAgent(
        predictor, conditions, batch_size=6, max_latency_s=0.05, refine_thickness_above=0.0
    )
    run, _, (x, y) = _scan(tiled_catalog, microscope, agent, n, seed=5)
    stream = run["descriptors"].read()
    ok = ~np.asarray(stream["ood"], bool)
    assert ok.sum() >= n - 1
    np.testing.assert_array_equal(stream["thickness_refined"], ok)
    assert agent.frames_refined == ok.sum()
    truth = microscope.sample.descriptors_at(x, y)["thickness_nm"]
    refined = np.asarray(stream["thickness_nm"])[ok]
    network = np.asarray(stream["thickness_network_nm"])[ok]
    assert not np.allclose(refined, network)
    refined_rms = np.sqrt(np.mean((refined - truth[ok]) ** 2))
    network_rms = np.sqrt(np.mean((network - truth[ok]) ** 2))
    assert refined_rms <= max(network_rms, 1.0)
    # the refiner's sigma: its model part (about 0.57 nm) at least, and no NaN
    assert np.all(np.asarray(stream["thickness_nm_std"])[ok] >= 0.5)


def test_without_a_beam_library_the_networks_thickness_is_published(
    tiled_catalog, microscope, predictor, conditions, monkeypatch, caplog
):
    monkeypatch.setattr("stem_loop.inference.refine.stored_library", lambda spec: None)
    live_refiner.cache_clear()  # an earlier test's refiner would not look for the library
    agent = InferenceAgent(
        predictor, conditions, batch_size=4, max_latency_s=0.05, refine_thickness_above=0.0
    )
    run, _, _ = _scan(tiled_catalog, microscope, agent, 4, seed=6)
    stream = run["descriptors"].read()
    assert not np.asarray(stream["thickness_refined"]).any()
    np.testing.assert_allclose(stream["thickness_nm"], stream["thickness_network_nm"])
    assert "no beam library" in caplog.text


def test_stream_names_are_the_contract_s_descriptor_names():
    from sim_devices import DESCRIPTOR_NAMES as CONTRACT
    from stem_loop.inference.network import OUTPUTS

    assert DESCRIPTOR_NAMES == tuple(CONTRACT) == tuple(OUTPUTS)


def test_a_failed_scan_still_gets_descriptors_for_what_it_recorded(
    tiled_catalog, microscope, predictor, conditions
):
    import bluesky.preprocessors as bpp

    collector = Collector()
    agent = InferenceAgent(predictor, conditions, batch_size=8)
    agent.forward_to(make_writer(tiled_catalog)).forward_to(collector)
    engine = RunEngine({})
    engine.subscribe(agent)
    scan_gen, det = make_sim_devices(microscope, tiled_catalog.hdf5_dir)
    x, y = _positions(microscope, 3, seed=7)

    @bpp.stage_decorator([det, scan_gen])
    @bpp.run_decorator(md={"purpose": "fails after three frames"})
    def drifting():
        for xi, yi in zip(x, y, strict=True):
            yield from bps.mv(scan_gen.x, xi, scan_gen.y, yi)
            yield from bps.trigger_and_read([det, scan_gen.x, scan_gen.y])
        raise RuntimeError("the sample drifted away")

    with pytest.raises(RuntimeError, match="drifted"):
        engine(drifting())
    uid = collector.of("start")[0]["uid"]
    run = tiled_catalog.client[uid]
    assert run.metadata["stop"]["exit_status"] == "fail"
    stream = run["descriptors"].read()
    np.testing.assert_allclose(stream["x_nm"], x)
    np.testing.assert_array_equal(stream["frame_seq_num"], [1, 2, 3])
    assert collector.names()[-1] == "stop"


class SlowPredictor:
    def __init__(self, predictor, delay_s: float) -> None:
        self.predictor, self.delay_s = predictor, delay_s

    def predict(self, frames, conditions):
        import time

        time.sleep(self.delay_s)
        return self.predictor.predict(frames, conditions)


def test_a_stuck_backlog_does_not_hold_the_stop_forever(
    tiled_catalog, microscope, predictor, conditions
):
    import threading

    batches, done = [], threading.Event()

    def listen(batch):
        batches.append(batch)
        done.set()

    agent = InferenceAgent(
        SlowPredictor(predictor, 1.5),
        conditions,
        max_latency_s=60.0,  # nothing is inferred before the stop
        stop_timeout_s=0.2,
        listeners=[listen],
    )
    run, collector, _ = _scan(tiled_catalog, microscope, agent, 4)
    # The stop went on without the descriptors; the primary stream is complete.
    assert np.asarray(run["primary"]["det-image"].read()).shape == (4, 128, 128)
    assert "descriptors" not in run
    assert run.metadata["stop"]["num_events"] == {"primary": 4}
    # The late results still reach the listeners, never the closed run.
    assert done.wait(10)
    assert sum(len(b) for b in batches) == 4
    assert not collector.of("event_page")


def test_parallel_workers_keep_frame_order_and_values(tmp_path, microscope, predictor, conditions):
    frames = microscope.acquire(*_positions(microscope, 11, seed=8))
    path = write_frames(tmp_path / "frames.h5", frames)
    agent = InferenceAgent(predictor, conditions, batch_size=2, max_latency_s=0.0, workers=3)
    collector = _feed_file(agent, path, len(frames))
    agent.close()
    pages = collector.of("event_page")
    assert len(pages) >= 6  # batches of two (or fewer), inferred on three threads
    seq = np.concatenate([p["seq_num"] for p in pages])
    np.testing.assert_array_equal(seq, np.arange(1, 12))
    expected = predictor.predict(frames, conditions)
    data = _page_data(collector)
    np.testing.assert_allclose(
        data["exx"], expected.values["exx"], rtol=1e-5, atol=STRAIN_ATOL, equal_nan=True
    )
    np.testing.assert_array_equal(data["ood"], expected.ood)
    assert collector.names()[-1] == "stop"
