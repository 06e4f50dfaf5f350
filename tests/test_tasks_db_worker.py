"""Workflows on django-tasks-db's own worker: `TasksDispatcher` sends each run as a task of its
DatabaseBackend, real `manage.py db_worker` processes run them, and a real `manage.py
durable_workflows ticker` does the periodic work (alarms, recovery) beside them.

Skipped where django-tasks-db is not installed (CI installs it in the Python 3.13 pass, and on
Django 5.2 with the django-tasks backport). Every wait is a condition with a deadline.
"""

from __future__ import annotations

import pytest

from durable_workflows import client, send_event
from durable_workflows.models import Event
from tests.helpers import wait_until
from tests.workers.db_workers import (
    db_workers_fixture,  # noqa: F401  (the `db_workers` fixture)
    needs_tasks_db,
    run_tasks,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), needs_tasks_db]


def test_a_workflow_of_several_steps_completes_on_a_db_worker(db_workers):
    worker = db_workers.worker("a")
    handle = client.start("workers.steps", 3)
    db_workers.wait_completed(handle)
    assert handle.result() == 3
    executions = db_workers.executions()
    assert [e.step for e in executions] == ["step-0", "step-1", "step-2"]
    assert {e.pid for e in executions} == {worker.pid}
    assert not [e for e in executions if e.in_transaction], "a step ran inside a transaction"
    assert run_tasks() == 1


def test_a_sleep_is_fired_by_the_ticker_and_resumes_on_the_db_worker(db_workers):
    worker, ticker = db_workers.worker("a"), db_workers.ticker()
    handle = client.start("workers.nap", 0.5)
    db_workers.wait_completed(handle)
    assert handle.result() == "rested"
    before, after = db_workers.executions()
    assert (before.step, after.step) == ("before", "after")
    assert before.pid == after.pid == worker.pid != ticker.pid
    assert Event.objects.filter(instance_id=handle.instance_id, kind="workflow.resumed").count() == 1
    assert run_tasks() == 2  # the start, and the resume the ticker sent


def test_an_event_wakes_a_waiting_workflow_on_the_db_worker(db_workers):
    worker = db_workers.worker("a")
    handle = client.start("workers.await_event")
    wait_until(lambda: handle.refresh().state == "paused", timeout=40, interval=0.1,
               message="the workflow to wait for its event")
    assert send_event(handle.instance_id, "go", {"n": 7})
    db_workers.wait_completed(handle)
    assert handle.result() == {"n": 7}
    assert [(e.step, e.pid) for e in db_workers.executions()] == [("after", worker.pid)]


def test_a_failing_step_is_retried_after_its_delays(db_workers):
    worker, _ = db_workers.worker("a"), db_workers.ticker()
    handle = client.start("workers.flaky", 2, 0.5)
    db_workers.wait_completed(handle)
    assert handle.result() == 3
    executions = db_workers.executions()
    assert [e.step for e in executions] == ["flaky"] * 3 and {e.pid for e in executions} == {worker.pid}
    assert Event.objects.filter(instance_id=handle.instance_id, kind="retry.scheduled").count() == 2
    (step,) = handle.steps
    assert step.attempts == 3
    assert run_tasks() == 3  # each retry is a run of its own, woken by the ticker


def test_a_db_worker_killed_mid_step_is_recovered_by_the_ticker_and_the_step_runs_again(db_workers):
    workers = {p.pid: p for p in (db_workers.worker("a"), db_workers.worker("b"))}
    db_workers.ticker()
    handle = client.start("workers.slow_once", 60)
    slow = wait_until(lambda: [e for e in db_workers.executions() if e.step == "slow-once"], timeout=40,
                      interval=0.05, message="the slow step to start on a worker")
    killed = slow[0].pid
    workers[killed].kill()
    db_workers.wait_completed(handle)
    assert handle.result() == "slow-once"
    first, second = [e for e in db_workers.executions() if e.step == "slow-once"]
    assert first.end is None and second.end is not None
    (survivor,) = set(workers) - {killed}
    assert (first.pid, second.pid) == (killed, survivor)
    assert Event.objects.filter(instance_id=handle.instance_id, kind="workflow.recovered").count() == 1
