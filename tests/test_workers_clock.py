"""Workers whose clocks disagree: one cluster's machine runs 20 s ahead of the other's and of
the database server's. Leases and due times are judged on the server's clock, so the skewed
cluster neither takes over the other's live runs nor runs a step twice.

PostgreSQL only: SQLite runs on one machine, whose clock every process shares.
"""

from __future__ import annotations

import pytest

import tests.workers.workflows  # noqa: F401  (registers the workflows the clusters run)
from durable_workflows import client
from durable_workflows.models import Event, WorkflowInstance
from tests.helpers import wait_until
from tests.workers import steplog
from tests.workers.fixtures import workers_fixture  # noqa: F401  (the `workers` fixture)

pytestmark = [pytest.mark.slow, pytest.mark.requires_postgres, pytest.mark.django_db(transaction=True)]

SKEW_SECONDS = 20
ENV = {"DW_LEASE_SECONDS": 5, "DW_HEARTBEAT_SECONDS": 1}


def test_a_cluster_whose_clock_runs_ahead_runs_each_step_once(workers):
    on_time = workers.clusters.start("a", **ENV)
    ahead = workers.clusters.start("b", DW_CLOCK_SKEW_SECONDS=SKEW_SECONDS, **ENV)
    # Runs long enough that every one is Running while the other cluster's recovery scans it,
    # and sleeps that the other cluster's ticker may fire.
    ids = [client.start("workers.steps", 3, 1.0, instance_id=f"skew-{n}").instance_id for n in range(20)]
    naps = [client.start("workers.nap", 2.0, 0.2, instance_id=f"skew-nap-{n}").instance_id for n in range(10)]

    def done() -> bool:
        return WorkflowInstance.objects.filter(pk__in=ids + naps, state="completed").count() == len(ids + naps)

    wait_until(done, timeout=120, interval=0.2, message="every workflow to complete")

    executions = workers.executions()
    counts = steplog.starts(executions)
    expected = [(pk, f"step-{n}") for pk in ids for n in range(3)]
    expected += [(pk, step) for pk in naps for step in ("before", "after")]
    assert sorted(counts) == sorted(expected)
    ran_again = {key: n for key, n in counts.items() if n != 1}
    assert not ran_again, f"{sum(counts.values())} step bodies ran for {len(expected)} steps: {ran_again}"
    assert not Event.objects.filter(instance_id__in=ids + naps, kind="workflow.recovered").exists()
    # Each nap slept its full two seconds (the step log's times are each process's own clock).
    skewed = set(ahead.worker_pids())

    def real(at: float, pid: int) -> float:
        return at - SKEW_SECONDS if pid in skewed else at

    for pk in naps:
        before, after = (next(e for e in executions if (e.instance, e.step) == (pk, step)) for step in ("before", "after"))
        assert before.end is not None
        slept = real(after.start, after.pid) - real(before.end, before.pid)
        assert slept >= 1.9, f"{pk} woke after {slept:.1f} s of its 2 s sleep"
    pids = {e.pid for e in executions}
    assert pids & set(on_time.worker_pids()) and pids & set(ahead.worker_pids()), "one cluster did all the work"
