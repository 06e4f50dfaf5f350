"""Rate limits under real `qcluster` processes: two clusters (two cluster names, each with its
own queue and ticker) on one database never start more first claims, or take more limiter
units, than the rate allows in any window, whichever of them claims."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from durable_workflows import client
from durable_workflows.models import StepRecord, WorkflowInstance
from tests.helpers import wait_until
from tests.workers.fixtures import workers_fixture  # noqa: F401  (the `workers` fixture)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def most_in_a_window(stamps: list[datetime], period: timedelta) -> int:
    """The most stamps in any window [t, t + period) that starts at one of them: what any
    sliding window of the period can hold."""
    ordered = sorted(stamps)
    most, end = 0, 0
    for start, at in enumerate(ordered):
        while end < len(ordered) and ordered[end] < at + period:
            end += 1
        most = max(most, end - start)
    return most


def run_all(workers, workflow: str, inputs: list, done: int) -> list[str]:
    workers.clusters.start("a")
    workers.clusters.start("b", DW_CLUSTER_NAME=workers.another_name())
    ids = [h.instance_id for h in client.start_many(workflow, inputs)]
    try:
        wait_until(lambda: WorkflowInstance.objects.filter(pk__in=ids, state="completed").count() == done,
                   timeout=180, interval=0.2, message=f"{done} instances of {workflow} to complete")
    except AssertionError:
        left = WorkflowInstance.objects.filter(pk__in=ids).exclude(state="completed").count()
        raise AssertionError(f"{left} not completed\n{workers.clusters.logs()}") from None
    return ids


def test_two_hundred_instances_at_twenty_a_second_on_two_clusters(workers):
    ids = run_all(workers, "rates.twenty_a_second", [[] for _ in range(200)], 200)
    starts = list(WorkflowInstance.objects.filter(pk__in=ids).values_list("started_at", flat=True))
    assert most_in_a_window(starts, timedelta(seconds=1)) <= 20
    assert max(starts) - min(starts) >= timedelta(seconds=9)  # 180 after the first 20, at 20 a second
    # Every instance was claimed once as a fresh start, none again.
    assert set(WorkflowInstance.objects.filter(pk__in=ids).values_list("run_count", flat=True)) == {1}


def test_a_limiter_shared_by_a_hundred_instances_holds_its_rate(workers):
    # The clusters' LIMITERS setting (tests/workers/settings.py) has "shared" at 20/s.
    ids = run_all(workers, "rates.limited_many", [[1] for _ in range(100)], 100)
    starts = list(StepRecord.objects.filter(instance_id__in=ids).values_list("started_at", flat=True))
    assert len(starts) == 100 and most_in_a_window(starts, timedelta(seconds=1)) <= 20
    assert max(starts) - min(starts) >= timedelta(seconds=4)
