"""Pause on real `qcluster` workers: a held instance finishes the step a worker runs, stops
before the next, and runs on only once resumed."""

from __future__ import annotations

from pathlib import Path

import pytest

import tests.workers.workflows  # noqa: F401  (registers the workflows the clusters run)
from durable_workflows import client
from durable_workflows.models import StepRecord
from tests.helpers import wait_until
from tests.workers import steplog
from tests.workers.fixtures import workers_fixture  # noqa: F401  (the `workers` fixture)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_held_instance_finishes_its_step_on_a_worker_and_stops_until_resumed(workers, tmp_path):
    workers.clusters.start("a", workers=2)
    gate = tmp_path / "gate"
    handle = client.start("workers.gated", str(gate), instance_id="held-on-a-worker")
    wait_until(lambda: Path(f"{gate}.started").exists(), timeout=60, interval=0.05,
               message=f"the first step to start\n{workers.clusters.logs()}")
    assert client.pause(handle.instance_id, reason="audit").state == "running"
    gate.touch()
    wait_until(lambda: handle.refresh().state == "paused", timeout=60, interval=0.05,
               message=f"the run to stop for the hold\n{workers.clusters.logs()}")
    assert handle.held and handle.held_reason == "audit"
    records = dict(StepRecord.objects.filter(instance_id=handle.instance_id).values_list("name", "state"))
    assert records == {"first": "completed"}
    assert steplog.starts(workers.executions()) == {(handle.instance_id, "first"): 1}

    client.resume(handle.instance_id)
    wait_until(lambda: handle.refresh().state == "completed", timeout=60, interval=0.05,
               message=f"the resumed run to finish\n{workers.clusters.logs()}")
    assert handle.result() == ["first", "second"]
    executions = workers.executions()
    assert steplog.starts(executions) == {(handle.instance_id, "first"): 1, (handle.instance_id, "second"): 1}
    [first] = [e for e in executions if e.step == "first"]
    [second] = [e for e in executions if e.step == "second"]
    assert second.epoch > first.epoch  # run by the resume's claim
