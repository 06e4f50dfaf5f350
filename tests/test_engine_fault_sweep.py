"""A fault at every write of a run, on every write path: the instance still ends correctly.

The sweep first runs a workflow that makes every kind of write (claim, checkpoints of new
and of existing records, a retry delay, a sleep, meta, the final transition) and counts its
write statements, the scans' included. Then it runs it once per write, failing that one,
and drives each instance on as workers would (recover, fire alarms) until it ends.

On PostgreSQL the same runs go through the single-statement writes and through the ORM,
and a parity test compares the rows both leave.
"""

from __future__ import annotations

import time

import pytest
from django.db import DatabaseError, connection
from django.test import override_settings

from durable_workflows import client, recover
from durable_workflows.engine import execute, fire_alarm_now
from durable_workflows.engine.eventlog import event_log
from durable_workflows.models import Event, StepRecord, WorkflowInstance
from tests.faults import FailNthWrite
from tests.testapp import fault_workflows
from tests.testapp.engine_workflows import SEEN

pytestmark = pytest.mark.django_db(transaction=True)

PATHS = ["single-statement", "orm"]


LEAKS: list[str] = []


class LeakCheckingDispatcher:
    """Runs instances inline, as InlineDispatcher does, and notes anything that escapes
    `execute` (the scans' own faults are tolerated by `drive`, this must not hide a run's)."""

    synchronous = True

    def dispatch(self, instance_id: str, mode: str, epoch: int) -> None:
        try:
            execute(instance_id, mode, epoch)
        except BaseException as error:
            LEAKS.append(f"{instance_id} {mode}: {error!r}")
            raise


def _settings(path: str) -> dict:
    return {
        "DISPATCHER": "tests.test_engine_fault_sweep.LeakCheckingDispatcher",
        "SINGLE_STATEMENT_WRITES": path == "single-statement",
        "LEASE_SECONDS": 1,
        "HEARTBEAT_SECONDS": 0.25,
        "REDISPATCH_AFTER_SECONDS": 0,
    }


def _skip_unless_available(path: str) -> None:
    if path == "single-statement" and connection.vendor != "postgresql":
        pytest.skip("single-statement writes are PostgreSQL's")


def drive(workflow: str, args: tuple, instance_id: str, wrapper=None, timeout: float = 20) -> client.WorkflowHandle:
    """Start an instance and move it along as workers would until it ends, with `wrapper`
    on the connection while the engine works (the test's own reads go around it)."""
    with override_settings(DURABLE_WORKFLOWS={"DISPATCHER": "tests.test_engine_client.NoDispatch"}):
        handle = client.start(workflow, *args, instance_id=instance_id)
    deadline = time.monotonic() + timeout
    LEAKS.clear()
    _wrapped(wrapper, execute, instance_id, "fresh", handle.instance.epoch)
    while not client.get(instance_id).is_finished:
        assert time.monotonic() < deadline, f"{instance_id} did not end: {client.get(instance_id).state}"
        try:
            if client.get(instance_id).state == "paused":
                _wrapped(wrapper, fire_alarm_now, instance_id)
            _wrapped(wrapper, recover)
        except DatabaseError:
            pass  # a scan's own statement met the fault; the workers' ticker tries again too
        time.sleep(0.02)
    assert LEAKS == []
    return client.get(instance_id)


def _wrapped(wrapper, fn, *args):
    if wrapper is None:
        return fn(*args)
    connection.execute_wrappers.append(wrapper)
    try:
        return fn(*args)
    finally:
        connection.execute_wrappers.remove(wrapper)


def _ended_correctly(handle: client.WorkflowHandle) -> None:
    assert handle.state == "completed", (handle.state, handle.error)
    assert handle.result() == ["a", "b", "c"]
    assert handle.meta == {"stage": "woke"}
    assert not Event.objects.filter(instance_id=handle.instance_id, kind="workflow.failed").exists()
    states = list(StepRecord.objects.filter(instance_id=handle.instance_id).order_by("position")
                  .values_list("name", "state"))
    assert states == [("A", "completed"), ("B", "completed"), ("sleep", "completed"), ("C", "completed")]


@pytest.mark.parametrize("path, reads", [(path, False) for path in PATHS] + [("orm", True)])
def test_a_fault_at_any_statement_of_a_run_still_ends_it_correctly(path, reads):
    """Every write on each path; every statement, reads included, on the ORM path."""
    _skip_unless_available(path)
    with override_settings(DURABLE_WORKFLOWS=_settings(path)):
        counter = FailNthWrite(None, reads=reads)
        _ended_correctly(drive("faults.sweep", ("clean",), "clean", counter))
        assert counter.writes >= 10
        failed_at = []
        for n in range(1, counter.writes + 1):
            fault = FailNthWrite(n, reads=reads)
            handle = drive("faults.sweep", (f"n{n}",), f"fault-{n}", fault)
            if fault.failed_sql is None:
                continue  # this run made fewer writes than the clean one (no scan needed)
            failed_at.append(fault.failed_sql.split()[0:3])
            _ended_correctly(handle)
            # A step runs again only when the fault lost its checkpoint: at least once, at most twice.
            assert 1 <= fault_workflows.RAN[f"n{n}:A"] <= 2
            assert 1 <= fault_workflows.RAN[f"n{n}:C"] <= 2
        assert len(failed_at) >= counter.writes - 2


# -- parity: both write paths leave the same rows ----------------------------------------------
HISTORIES = [
    ("faults.sweep", ("parity",)),
    ("engine.retrying", ("exponential", 3, "1h")),
    ("engine.no_retry", ()),
    ("engine.meta", (3,)),
    ("engine.loop", (5,)),
    ("engine.async", (4,)),
]
_TIMES = {"until", "deadline"}


def _rows(instance_id: str) -> dict:
    instance = WorkflowInstance.objects.filter(pk=instance_id).values(
        "workflow", "state", "result", "meta", "run_count", "epoch", "recovery_count",
        "error_type", "error_message", "cancel_requested", "last_mode", "lease_owner",
    ).get()
    instance["has_finished_at"] = WorkflowInstance.objects.get(pk=instance_id).finished_at is not None
    steps = list(StepRecord.objects.filter(instance_id=instance_id).order_by("position").values(
        "position", "name", "kind", "state", "result", "attempts", "error_type", "error_message",
        "error_replay",
    ))
    events = [
        (kind, position, {k: v for k, v in data.items() if k not in _TIMES})
        for kind, position, data in ((e.kind, e.position, e.data) for e in event_log(instance_id)[0])
    ]
    return {"instance": instance, "steps": steps, "events": events}


@pytest.mark.requires_postgres
@pytest.mark.parametrize("workflow, args", HISTORIES)
def test_both_write_paths_leave_the_same_rows(workflow, args):
    seen = {}
    for path in PATHS:
        SEEN.clear()
        fault_workflows.RAN.clear()
        with override_settings(DURABLE_WORKFLOWS=_settings(path)):
            handle = drive(workflow, args, f"{path}-{workflow}")
        assert handle.is_finished
        seen[path] = _rows(handle.instance_id)
    assert seen["single-statement"] == seen["orm"]
