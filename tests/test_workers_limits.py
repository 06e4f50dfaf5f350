"""A concurrency limit under real `qcluster` processes: two clusters of two workers on one
PostgreSQL database never let more than N instances in at once, and let them in oldest first."""

from __future__ import annotations

import pytest

from durable_workflows import client
from durable_workflows.models import WorkflowInstance
from tests.helpers import wait_until
from tests.testapp.limit_workflows import most_inside, read_log
from tests.workers.fixtures import workers_fixture  # noqa: F401  (the `workers` fixture)

pytestmark = [pytest.mark.slow, pytest.mark.requires_postgres, pytest.mark.django_db(transaction=True)]


def test_fifty_instances_with_concurrency_three_on_two_clusters(workers, tmp_path):
    clusters = [workers.clusters.start("a"), workers.clusters.start("b")]
    log = str(tmp_path / "inside.log")
    ids = [client.start("limits.three_at_once", log, 0.3, instance_id=f"limited-{n:02}").instance_id
           for n in range(50)]
    try:
        wait_until(lambda: WorkflowInstance.objects.filter(pk__in=ids, state="completed").count() == 50,
                   timeout=240, interval=0.2, message="50 limited workflows to complete")
    except AssertionError:
        states = dict(WorkflowInstance.objects.filter(pk__in=ids).exclude(state="completed")
                      .values_list("pk", "state"))
        raise AssertionError(f"not completed: {states}\n{workers.clusters.logs()}") from None

    entries = read_log(log)
    enters = [e for e in sorted(entries, key=lambda e: e["at"]) if e["event"] == "enter"]
    assert sorted(e["instance"] for e in enters) == ids  # each entered once
    assert most_inside(entries) == 3  # never more than three, and three did run together
    # Oldest first: an instance went in only once every older one had gone in or was among
    # the other two slots, so the i-th to enter is at most two places down the queue.
    assert all(ids.index(e["instance"]) <= i + 2 for i, e in enumerate(enters)), [e["instance"] for e in enters]
    pids = {e["pid"] for e in entries}
    assert all(pids & set(cluster.worker_pids()) for cluster in clusters), "one cluster did all the work"
