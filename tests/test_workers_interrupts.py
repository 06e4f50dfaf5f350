"""A BaseException from step code on a real `qcluster` worker: the instance fails once with
it, and the worker process that ran it lives on to run the next workflow."""

from __future__ import annotations

import pytest

import tests.workers.workflows  # noqa: F401  (registers the workflows the clusters run)
from durable_workflows import client
from durable_workflows.models import WorkflowInstance
from tests.helpers import wait_until
from tests.workers import steplog
from tests.workers.fixtures import workers_fixture  # noqa: F401  (the `workers` fixture)
from tests.workers.workflows import INTERRUPTS

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_base_exception_from_a_step_fails_its_instance_once_and_the_worker_lives_on(workers):
    # One worker: had it died, django-q2 would have started another, with another pid.
    cluster = workers.clusters.start("a", workers=1)
    [worker] = cluster.worker_pids()
    ids = [client.start("workers.interrupted", kind, instance_id=f"interrupted-{kind}").instance_id
           for kind in INTERRUPTS]
    wait_until(lambda: WorkflowInstance.objects.filter(pk__in=ids).exclude(state__in=["queued", "running"])
               .count() == len(ids), timeout=60, interval=0.1,
               message=f"the interrupted instances to finish\n{workers.clusters.logs()}")
    for kind, pk in zip(INTERRUPTS, ids, strict=True):
        instance = WorkflowInstance.objects.get(pk=pk)
        assert (instance.state, instance.error_type) == ("failed", kind), instance.error_message
        assert instance.error_message == f"the step raised {kind}"
        assert (instance.run_count, instance.recovery_count) == (1, 0)

    after = client.start("workers.steps", 1, instance_id="after-the-interrupts")
    wait_until(lambda: after.refresh().state == "completed", timeout=60, interval=0.1,
               message=f"the next workflow to run\n{workers.clusters.logs()}")
    executions = workers.executions()
    assert steplog.starts(executions) == {**{(pk, "interrupted"): 1 for pk in ids},
                                          ("after-the-interrupts", "step-0"): 1}
    assert {e.pid for e in executions} == {worker}
    assert cluster.worker_pids() == [worker] and cluster.alive
