"""Parallel branches with real `qcluster` workers: branches that sleep on alarms, and a
SIGKILL while branch steps are running."""

from __future__ import annotations

import pytest

import tests.workers.workflows  # noqa: F401  (registers the workflows the clusters run)
from durable_workflows import client
from durable_workflows.models import WorkflowInstance
from tests.helpers import wait_until
from tests.workers import steplog
from tests.workers.fixtures import workers_fixture  # noqa: F401  (the `workers` fixture)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

STEPS = {f"b{i}-{when}" for i in range(3) for when in ("before", "after")}


def test_branches_sleep_and_resume_on_workers_with_each_step_run_once(workers):
    workers.clusters.start("a", workers=2)
    ids = [client.start("workers.branches", 3, 0.05).instance_id for _ in range(10)]
    wait_until(lambda: WorkflowInstance.objects.filter(pk__in=ids, state="completed").count() == 10,
               timeout=120, interval=0.1, message=f"the branches to finish\n{workers.clusters.logs()}")
    for pk in ids:
        assert client.get(pk).result() == ["b0-after", "b1-after", "b2-after"]
    executions = workers.executions()
    counts = steplog.starts(executions)
    assert counts == {(pk, step): 1 for pk in ids for step in STEPS}
    # Each branch step ran in a branch thread on a connection of its own, outside any
    # transaction of the run.
    assert not any(e.in_transaction for e in executions)


def test_branches_survive_a_sigkill_of_the_cluster(workers):
    env = {"DW_LEASE_SECONDS": 3, "DW_HEARTBEAT_SECONDS": 1, "DW_REDISPATCH_AFTER_SECONDS": 3,
           "DW_Q_TIMEOUT": 8, "DW_Q_RETRY": 10}
    first = workers.clusters.start("a", **env)
    ids = [client.start("workers.branches", 3, 1.0).instance_id for _ in range(4)]
    # Kill while the first branch steps are running (each takes a second).
    wait_until(lambda: len(steplog.starts(workers.executions())) >= 3, timeout=60, interval=0.02,
               message="branch steps to start")
    first.kill()
    workers.clusters.start("b", **env)
    wait_until(lambda: WorkflowInstance.objects.filter(pk__in=ids, state="completed").count() == 4,
               timeout=180, interval=0.2, message=f"the branches to finish after the kill\n{workers.clusters.logs()}")
    for pk in ids:
        assert client.get(pk).result() == ["b0-after", "b1-after", "b2-after"]
    counts = steplog.starts(workers.executions())
    assert {key for key in counts} == {(pk, step) for pk in ids for step in STEPS}
    # A step killed while it ran runs again; none runs more than that, none is skipped.
    assert max(counts.values()) <= 2
