"""Every document the devices and plans emit is valid event-model, including stream assets."""

from __future__ import annotations

import bluesky.plans as bp
import numpy as np
from event_model import DocumentNames, schema_validators

from stem_loop.plans import sparse_scan


def _validate_run(docs) -> set[str]:
    """Validate each document against its schema and the references between them."""
    names = set()
    start_uid = None
    descriptors, resources = set(), set()
    for name, doc in docs:
        schema_validators[DocumentNames(name)].validate(doc)
        names.add(name)
        if name == "start":
            start_uid = doc["uid"]
        elif name == "descriptor":
            assert doc["run_start"] == start_uid
            descriptors.add(doc["uid"])
        elif name == "event":
            assert doc["descriptor"] in descriptors
        elif name == "stream_resource":
            assert doc["run_start"] == start_uid
            resources.add(doc["uid"])
        elif name == "stream_datum":
            assert doc["descriptor"] in descriptors
            assert doc["stream_resource"] in resources
        elif name == "stop":
            assert doc["run_start"] == start_uid
    return names


def test_every_document_of_every_plan_validates(RE, devices, docs):
    scan_gen, det = devices
    x, y = np.linspace(5, 90, 20), np.linspace(90, 5, 20)
    plans = {
        "count": bp.count([det], num=2),
        "list_scan": bp.list_scan([det], scan_gen.x, [1.0, 2.0], scan_gen.y, [3.0, 4.0]),
        "grid_scan": bp.grid_scan([det], scan_gen.y, 20, 75, 3, scan_gen.x, 20, 75, 3),
        "sparse_batch": sparse_scan([det], scan_gen, x, y, mode="batch"),
        "sparse_step": sparse_scan([det], scan_gen, x[:4], y[:4], mode="step"),
    }
    seen = set()
    for plan_name, plan in plans.items():
        docs.clear()
        RE(plan)
        names = _validate_run(docs.docs)
        required = {"start", "descriptor", "stream_resource", "stream_datum", "stop"}
        assert required <= names, plan_name
        if plan_name != "sparse_batch":
            assert "event" in names, plan_name
        seen |= names
    assert seen == {"start", "descriptor", "event", "stream_resource", "stream_datum", "stop"}
