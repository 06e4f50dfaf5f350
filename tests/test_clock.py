"""One clock for leases and due times: on PostgreSQL the engine judges them by the database
server's clock, so a process whose own clock is 20 s off neither takes over a live lease,
writes a lease that has already lapsed, nor ends a wait early.

A process's clock is moved with tests.clock_skew (its `time.time` and `timezone.now`, as on a
machine whose clock drifted); the engine is the real one. The worker tests do the same to
whole `qcluster` processes (test_workers_clock.py).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import timedelta

import pytest
from django.test import override_settings

from durable_workflows import client, fire_alarms, recover, testing, workflow
from durable_workflows.engine import execute
from durable_workflows.models import WorkflowInstance
from tests.clock_skew import skewed
from tests.helpers import in_thread, wait_until
from tests.settings import DURABLE_WORKFLOWS as TEST_SETTINGS
from tests.testapp.engine_workflows import GATES, SEEN

pytestmark = [pytest.mark.requires_postgres, pytest.mark.django_db(transaction=True)]

SKEW = 20
# Leases far shorter than the skew; no dispatcher, so that nothing runs unless the test runs it.
SHORT_LEASES = {**TEST_SETTINGS, "LEASE_SECONDS": 5, "HEARTBEAT_SECONDS": 1,
                "DISPATCHER": "tests.test_engine_client.NoDispatch"}


@workflow("clock.deadline", timeout="15s")
def deadline(wf) -> str:
    wf.sleep("1h")
    return "too late"


@contextmanager
def _run_in_a_step(gate: str, claim_skew: float = 0) -> Iterator[str]:
    """An instance whose run (in a thread) holds its lease inside a step until the block
    ends; the process's clock is `claim_skew` seconds off while the run claims it. Checks,
    once the step is let go, that the run finished the instance with that one claim."""
    outcome: dict[str, str | None] = {}
    pk = client.start("engine.gated", gate).instance_id
    with skewed(claim_skew) if claim_skew else nullcontext():
        thread = in_thread(lambda: outcome.update(run=execute(pk, "fresh")))
        wait_until(lambda: SEEN[f"gate:{gate}"] == 1, message="the run to enter its step")
    try:
        yield pk
    finally:
        GATES.setdefault(gate, threading.Event()).set()
        thread.join(30)
    assert outcome["run"] == "completed"
    assert SEEN[f"gate:{gate}"] == 1, "the step ran again"
    assert WorkflowInstance.objects.get(pk=pk).epoch == 1


@override_settings(DURABLE_WORKFLOWS=SHORT_LEASES)
def test_a_recovery_scan_on_a_clock_running_ahead_leaves_a_live_lease_alone():
    with _run_in_a_step("ahead") as pk:
        with skewed(SKEW):
            assert pk not in recover()
        instance = WorkflowInstance.objects.get(pk=pk)
        assert (instance.state, instance.epoch) == ("running", 1)
        assert not instance.lease_owner.startswith("recovery:")


@override_settings(DURABLE_WORKFLOWS=SHORT_LEASES)
def test_a_lease_written_on_a_clock_running_behind_has_not_lapsed():
    with _run_in_a_step("behind", claim_skew=-SKEW) as pk:
        assert pk not in recover()
        assert WorkflowInstance.objects.get(pk=pk).epoch == 1


def test_alarms_and_sleeps_are_not_due_early_on_a_clock_running_ahead():
    handle = client.start("engine.between", "10s")
    assert handle.refresh().state == "paused"
    with skewed(SKEW):
        assert fire_alarms() == []
        # A resume that comes anyway (a duplicate task) replays up to the sleep, which is
        # not over by the server's clock, and pauses again.
        execute(handle.instance_id, "resume", handle.instance.epoch)
    assert handle.refresh().state == "paused"
    assert SEEN["after-sleep"] == 0


def test_a_workflow_deadline_is_not_due_early_on_a_clock_running_ahead():
    with override_settings(DURABLE_WORKFLOWS=SHORT_LEASES):
        handle = client.start("clock.deadline")
        assert handle.refresh().state == "queued"
        with skewed(SKEW):
            assert fire_alarms() == []  # nor is a Queued one past its deadline
            execute(handle.instance_id, "fresh", handle.instance.epoch)
    assert handle.refresh().state == "paused", handle.error


@pytest.mark.parametrize("skew", [SKEW, -SKEW])
def test_the_virtual_clock_of_testing_skips_just_the_sleep_on_a_machine_whose_clock_is_off(skew):
    with skewed(skew), testing.virtual_clock() as clock:
        handle = testing.run("engine.between", "30 days")
    assert handle.state == "completed"
    assert (SEEN["first"], SEEN["second"]) == (1, 1)
    assert abs(clock.skipped - timedelta(days=30)) < timedelta(seconds=5), clock.skipped
