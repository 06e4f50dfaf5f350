"""Atomic steps (DESIGN §14): a step's database writes and its record commit together."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from durable_workflows import client, recover
from durable_workflows.engine import execute
from durable_workflows.models import StepRecord, WorkflowInstance
from tests.helpers import in_thread, manage, wait_until
from tests.testapp.atomic_workflows import HOLD
from tests.testapp.fault_workflows import RAN
from tests.testapp.models import Ledger

pytestmark = pytest.mark.django_db(transaction=True)


def rows(key: str) -> int:
    return Ledger.objects.filter(key=key).count()


def test_a_failed_attempt_s_writes_are_rolled_back_before_the_retry():
    handle = client.start("atomic.book", "retry", True).refresh()
    assert handle.result() == 1  # the second attempt saw only its own row
    assert RAN["retry"] == 2 and rows("retry") == 1
    (step,) = handle.steps
    assert step.attempts == 2 and step.state == "completed"


def test_an_atomic_step_in_an_async_workflow():
    handle = client.start("atomic.async_book", "async").refresh()
    assert handle.result() == 1 and RAN["async"] == 2 and rows("async") == 1


def test_atomic_steps_in_branches():
    handle = client.start("atomic.branches", "br").refresh()
    assert handle.result() == [1, 1] and rows("br-a") == 1 and rows("br-b") == 1


@pytest.mark.parametrize("how, message", [
    ("timeout", "ValueError: step 'T': an atomic step cannot have a timeout"),
    ("coroutine", "TypeError: step 'C': an atomic step must be a plain function"),
])
def test_bad_atomic_steps(how, message):
    assert client.start("atomic.bad", how).refresh().result().startswith(message)


@pytest.mark.requires_postgres
@pytest.mark.parametrize("workflow", ["atomic.book", "atomic.book_plain"])  # the ORM and single-statement paths
def test_a_fenced_out_worker_never_commits_its_atomic_writes(workflow):
    from tests.test_engine_faults import queued

    handle = queued(workflow, "fenced")  # run by hand in a thread below
    HOLD["fenced"] = threading.Event()
    outcome = {}
    try:
        worker = in_thread(lambda: outcome.update(state=execute(handle.instance_id, "fresh", handle.instance.epoch)))
        wait_until(lambda: RAN["fenced"] == 1, message="the step to write its row")
        # Another worker takes the instance over (a new epoch) while the step is held.
        WorkflowInstance.objects.filter(pk=handle.instance_id).update(epoch=handle.instance.epoch + 5)
    finally:
        HOLD["fenced"].set()
        HOLD.pop("fenced")
    worker.join(30)
    assert outcome["state"] is None  # the run gave up: its fence failed inside the transaction
    assert rows("fenced") == 0
    assert not StepRecord.objects.filter(instance_id=handle.instance_id, state="completed").exists()


def test_a_process_that_dies_inside_an_atomic_step_leaves_nothing_and_the_recovery_writes_once():
    result = manage("start", "atomic.book", "--input", '["crash"]', "--id", "atomic-crash",
                    env={"DW_EXIT_IN_STEP": "crash"})
    assert result.returncode == 3, result.stdout + result.stderr
    assert rows("crash") == 0
    assert WorkflowInstance.objects.get(pk="atomic-crash").state == "running"
    WorkflowInstance.objects.filter(pk="atomic-crash").update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    recover()
    wait_until(lambda: client.get("atomic-crash").is_finished, message="the recovered run")
    assert client.get("atomic-crash").result() == 1 and rows("crash") == 1
