"""Priority under real `qcluster` processes: fifty instances waiting behind a concurrency
limit of one start in priority order, then oldest first."""

from __future__ import annotations

import random

import pytest

from durable_workflows import client
from durable_workflows.models import WorkflowInstance
from tests.helpers import wait_until
from tests.testapp.limit_workflows import read_log
from tests.workers.fixtures import workers_fixture  # noqa: F401  (the `workers` fixture)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_fifty_instances_behind_a_limit_of_one_start_in_priority_order(workers, tmp_path):
    workers.clusters.start("a")
    log = str(tmp_path / "inside.log")
    holder = client.start("flow.one_at_a_time", log, True, instance_id="holder")
    wait_until(lambda: client.get(holder.instance_id).state == "paused", timeout=60, interval=0.1,
               message="the first instance to hold the slot")
    rng = random.Random(3)
    priorities = [rng.choice((-100, -1, 0, 0, 0, 7, 100)) for _ in range(50)]
    ids = [client.start("flow.one_at_a_time", log, instance_id=f"p-{n:02}", priority=priority).instance_id
           for n, priority in enumerate(priorities)]
    # Each was claimed by a worker, found the slot taken and waits with no task out.
    wait_until(lambda: WorkflowInstance.objects.filter(pk__in=ids, state="queued", dispatched_at__isnull=True)
               .count() == 50, timeout=120, interval=0.2, message="50 instances waiting for the slot")

    client.send_event(holder.instance_id, "done")
    try:
        wait_until(lambda: WorkflowInstance.objects.filter(pk__in=ids, state="completed").count() == 50,
                   timeout=240, interval=0.2, message="50 waiting instances to complete")
    except AssertionError:
        states = dict(WorkflowInstance.objects.filter(pk__in=ids).exclude(state="completed")
                      .values_list("pk", "state"))
        raise AssertionError(f"not completed: {states}\n{workers.clusters.logs()}") from None
    enters = [e["instance"] for e in sorted(read_log(log), key=lambda e: e["at"]) if e["event"] == "enter"]
    expected = [ids[n] for n in sorted(range(50), key=lambda n: (-priorities[n], n))]
    assert enters == ["holder", *expected]
