"""Real `qcluster` processes run workflows: sleeps resume, crashes recover, clusters share work.

ORM broker on SQLite, Redis broker on PostgreSQL (see tests/workers/fixtures.py). Every wait
is a condition with a deadline; none of these tests fails on a time.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

import tests.workers.workflows  # noqa: F401  (registers the workflows the clusters run)
from durable_workflows import client
from durable_workflows.models import Event, StepRecord, WorkflowInstance
from tests.helpers import wait_until
from tests.workers import steplog
from tests.workers.fixtures import workers  # noqa: F401  (fixture)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _finished(ids: list[str]) -> bool:
    return WorkflowInstance.objects.filter(pk__in=ids, state="completed").count() == len(ids)


def _wait_all_completed(ids: list[str], setup, timeout: float = 120) -> None:
    try:
        wait_until(lambda: _finished(ids), timeout=timeout, interval=0.2,
                   message=f"{len(ids)} workflows to complete")
    except AssertionError:
        states = dict(WorkflowInstance.objects.filter(pk__in=ids).values_list("pk", "state"))
        stuck = {pk: state for pk, state in states.items() if state != "completed"}
        raise AssertionError(f"not completed: {stuck}\n{setup.clusters.logs()}") from None


def test_fifty_workflows_with_a_sleep_complete_with_each_step_run_once(workers):
    workers.clusters.start("a")
    ids = [client.start("workers.nap", 1.0, instance_id=f"nap-{n}").instance_id for n in range(50)]
    _wait_all_completed(ids, workers)

    executions = workers.executions()
    counts = steplog.starts(executions)
    assert sorted(counts) == sorted((pk, step) for pk in ids for step in ("before", "after"))
    assert set(counts.values()) == {1}, [key for key, n in counts.items() if n != 1]
    assert all(e.end is not None for e in executions)
    assert not [e for e in executions if e.in_transaction], "a step ran inside a transaction"
    # Each alarm resumed its instance once.
    resumed = Event.objects.filter(instance_id__in=ids, kind="workflow.resumed")
    assert resumed.count() == 50
    assert all(client.get(pk).result() == "rested" for pk in ids[:5])
