"""Child workflows with real `qcluster` workers: a wide fan-out, also through a SIGKILL."""

from __future__ import annotations

import pytest

import tests.workers.workflows  # noqa: F401  (registers the workflows the clusters run)
from durable_workflows import client
from durable_workflows.models import Event, WorkflowInstance
from tests.helpers import wait_until
from tests.workers import steplog
from tests.workers.fixtures import workers_fixture  # noqa: F401  (the `workers` fixture)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _each_child_ran_once(parent_id: str, count: int, workers) -> dict:
    children = client.get(parent_id).children
    assert len(children) == count
    assert WorkflowInstance.objects.filter(pk__in=children, state="completed").count() == count
    counts = steplog.starts(workers.executions())
    assert {key for key in counts if key[1] == "child-step"} == {(pk, "child-step") for pk in children}
    return counts


def test_a_parent_fans_out_to_two_hundred_children(workers):
    workers.clusters.start("a", workers=2)
    parent = client.start("workers.fan", 200, 0.02, instance_id="fan-200")
    wait_until(lambda: client.get("fan-200").is_finished, timeout=180, interval=0.2,
               message=f"the fan-out to finish\n{workers.clusters.logs()}")
    assert parent.refresh().result() == 200
    counts = _each_child_ran_once("fan-200", 200, workers)
    assert set(counts.values()) == {1}
    runs = Event.objects.filter(instance_id="fan-200", kind__in=["workflow.started", "workflow.resumed"]).count()
    print(f"the parent ran {runs} times for 200 children")


def test_a_fan_out_survives_a_sigkill_of_the_cluster(workers):
    env = {"DW_LEASE_SECONDS": 3, "DW_HEARTBEAT_SECONDS": 1, "DW_REDISPATCH_AFTER_SECONDS": 3,
           "DW_Q_TIMEOUT": 8, "DW_Q_RETRY": 10}
    first = workers.clusters.start("a", **env)
    client.start("workers.fan", 200, 0.05, instance_id="fan-kill")
    wait_until(lambda: WorkflowInstance.objects.filter(parent_id="fan-kill", state="completed").count() >= 20,
               timeout=120, interval=0.05, message="some children to finish")
    first.kill()
    done_before = WorkflowInstance.objects.filter(parent_id="fan-kill", state="completed").count()
    workers.clusters.start("b", **env)
    wait_until(lambda: client.get("fan-kill").is_finished, timeout=180, interval=0.2,
               message=f"the fan-out to finish after the kill\n{workers.clusters.logs()}")
    assert client.get("fan-kill").result() == 200
    counts = _each_child_ran_once("fan-kill", 200, workers)
    # A child killed inside its step runs that step again (at least once); none runs more.
    assert max(counts.values()) <= 2
    print(f"{done_before} of 200 children had finished before the kill")
