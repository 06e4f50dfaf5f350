"""Settling fast after a cluster dies: its orphaned workers exit, and the tasks it held are
running again within seconds, not after REDISPATCH_AFTER_SECONDS or django-q2's `retry`.

ORM broker on SQLite, Redis broker on PostgreSQL (see tests/workers/fixtures.py).
"""

from __future__ import annotations

import os
import signal

import pytest

import tests.workers.workflows  # noqa: F401  (registers the workflows the clusters run)
from durable_workflows import client
from durable_workflows.models import WorkflowInstance
from tests.chaos import procs
from tests.helpers import wait_until
from tests.workers import steplog
from tests.workers.fixtures import workers_fixture  # noqa: F401  (the `workers` fixture)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Everything but the new fast path is slow here: a test that passes within its deadline
# cannot have waited for the lost-task redispatch, django-q2's retry or its own timeout.
SLOW_BACKSTOPS = {
    "DW_LEASE_SECONDS": 3, "DW_HEARTBEAT_SECONDS": 1, "DW_REDISPATCH_AFTER_SECONDS": 600,
    "DW_Q_TIMEOUT": 500, "DW_Q_RETRY": 600,
}


def test_workers_whose_guard_died_exit(workers):
    cluster = workers.clusters.start("a", **SLOW_BACKSTOPS)
    pids = cluster.worker_pids()
    guards = {procs.parent(pid) for pid in pids}
    assert len(guards) == 1 and cluster.process.pid not in guards, guards
    (guard,) = guards
    os.kill(guard, signal.SIGKILL)
    wait_until(lambda: not any(procs.alive(pid) for pid in pids), timeout=30, interval=0.1,
               message="the orphaned workers to exit")
    assert "is gone; the worker exits" in cluster.log()


def test_a_queued_run_whose_task_a_killed_cluster_held_runs_again_within_seconds(workers):
    cluster = workers.clusters.start("a", **SLOW_BACKSTOPS)
    # Both workers busy with a long step (long the first time only), so that the cluster
    # takes the next task from the broker and holds it, not yet run.
    busy = [client.start("workers.slow_once", 60, instance_id=f"busy-{n}").instance_id for n in range(2)]

    def both_busy() -> bool:
        return sum(1 for e in workers.executions() if e.step == "slow-once" and e.end is None) == 2

    wait_until(both_busy, timeout=60, message="both workers to be inside their long step")
    held = client.start("workers.steps", 3, instance_id="held").instance_id

    def taken() -> bool:
        from django_q.brokers import get_broker

        broker = get_broker()
        return broker.queue_size() == 0 and (workers.broker != "orm" or broker.lock_size() >= 1)

    wait_until(taken, timeout=30, message="the cluster to take the task from the broker")
    assert WorkflowInstance.objects.get(pk=held).state == "queued"
    cluster.kill()

    workers.clusters.start("b", **SLOW_BACKSTOPS)
    ids = [held, *busy]
    wait_until(lambda: WorkflowInstance.objects.filter(pk__in=ids, state="completed").count() == 3,
               timeout=90, interval=0.2, message=f"the held run and the busy ones to complete\n{workers.clusters.logs()}")
    counts = steplog.starts(workers.executions())
    assert [counts[("held", f"step-{n}")] for n in range(3)] == [1, 1, 1]
