"""Faults inside a run (DESIGN §4): database errors, unwinding, cancels, signals and meta.

Each test goes through the public API and a real database; the faults are real where the
database can make them (a held row lock, a terminated backend) and injected through
Django's `execute_wrapper` elsewhere.
"""

from __future__ import annotations

import logging
import threading

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from durable_workflows import WorkflowIdConflict, client, fire_alarms, recover
from durable_workflows.engine import execute, failures, fire_alarm_now
from durable_workflows.models import Alarm, StepRecord, WorkflowInstance
from durable_workflows.signals import lifecycle_event
from tests.faults import FailNthWrite, failing_in_thread
from tests.helpers import in_thread, logged, other_connection, queued, wait_until
from tests.testapp.engine_workflows import GATES, SEEN
from tests.testapp.fault_workflows import DURING, OBSERVED, RAN, gate

pytestmark = pytest.mark.django_db(transaction=True)



def state_of(instance_id: str) -> str:
    return WorkflowInstance.objects.get(pk=instance_id).state


def recover_until_finished(instance_id: str, timeout: float = 20) -> client.WorkflowHandle:
    def settled():
        recover()
        return client.get(instance_id).is_finished

    wait_until(settled, timeout=timeout, interval=0.1, message=f"{instance_id} to be recovered and finish")
    return client.get(instance_id)


def kinds(instance_id: str) -> list[str]:
    return logged(instance_id)


# -- database errors unwind the run, not the workflow ------------------------------------------
@pytest.mark.requires_postgres
def test_a_checkpoint_lock_timeout_never_takes_the_workflows_fallback_branch():
    handle = queued("faults.fallback")
    locked, release = threading.Event(), threading.Event()

    def hold_row_lock():
        with other_connection() as other, other.cursor() as cursor:
            other.set_autocommit(False)
            cursor.execute("SELECT 1 FROM durable_workflows_workflowinstance WHERE id = %s FOR UPDATE",
                           [handle.instance_id])
            locked.set()
            release.wait(30)
            other.rollback()

    holder = threading.Thread(target=hold_row_lock)
    DURING["charge"] = lambda: (holder.start(), locked.wait(10))
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '300ms'")
    try:
        with override_settings(DURABLE_WORKFLOWS={"LEASE_SECONDS": 2, "HEARTBEAT_SECONDS": 0.5}):
            assert execute(handle.instance_id, "fresh", handle.instance.epoch) is None
            instance = WorkflowInstance.objects.get(pk=handle.instance_id)
            assert instance.state == "running" and instance.error is None
            assert "workflow.failed" not in kinds(handle.instance_id)
            assert not StepRecord.objects.filter(instance_id=handle.instance_id).exists()
            release.set()
            holder.join(10)
            with connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = 0")
            done = recover_until_finished(handle.instance_id)
    finally:
        release.set()
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = 0")
    assert done.state == "completed"
    assert done.result() == "charged and shipped"
    assert RAN["charge"] == 2 and RAN["ship"] == 1  # the step whose checkpoint failed ran again


@pytest.mark.requires_postgres
def test_a_connection_dropped_during_a_step_is_recovered():
    handle = queued("faults.fallback")

    def drop_engine_connection():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            (pid,) = cursor.fetchone()
        with other_connection() as other, other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])

            def gone() -> bool:
                cursor.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid])
                return cursor.fetchone() is None

            wait_until(gone, message="the backend to exit")

    DURING["charge"] = drop_engine_connection
    assert execute(handle.instance_id, "fresh", handle.instance.epoch) is None
    assert state_of(handle.instance_id) == "running"  # and its lease given up
    done = recover_until_finished(handle.instance_id)
    assert done.result() == "charged and shipped"
    assert "workflow.failed" not in kinds(handle.instance_id)


def test_an_injected_checkpoint_fault_is_recovered_not_caught():
    handle = queued("faults.fallback")
    fault = FailNthWrite(1, touching="steprecord")  # the checkpoint of "Charge"
    with connection.execute_wrapper(fault):
        assert execute(handle.instance_id, "fresh", handle.instance.epoch) is None
    assert fault.failed_sql is not None
    assert state_of(handle.instance_id) == "running"
    done = recover_until_finished(handle.instance_id)
    assert done.result() == "charged and shipped"
    assert done.instance.recovery_count == 0  # reset once a step finished again


def test_a_fault_that_keeps_coming_back_ends_through_max_recovery_attempts():
    handle = queued("faults.fallback")
    with override_settings(DURABLE_WORKFLOWS={"MAX_RECOVERY_ATTEMPTS": 2}):
        with connection.execute_wrapper(FailNthWrite(None, every=True, touching="steprecord")):
            execute(handle.instance_id, "fresh", handle.instance.epoch)
            done = recover_until_finished(handle.instance_id)
    assert done.state == "failed"
    assert done.error["message"] == "failed after 2 recovery attempts"
    assert RAN["charge"] == 3


# -- the pause is committed after the function unwinds -----------------------------------------
def test_a_finally_that_calls_a_step_runs_nothing_while_the_run_pauses():
    handle = client.start("faults.finally")
    assert handle.refresh().state == "paused"
    assert RAN["cleanup"] == 0
    records = StepRecord.objects.filter(instance_id=handle.instance_id).order_by("position")
    assert [(r.position, r.name) for r in records] == [(0, "Work"), (1, "sleep")]
    fire_alarm_now(handle.instance_id)
    assert handle.refresh().result() == "done"
    assert (RAN["work"], RAN["more"], RAN["cleanup"]) == (1, 1, 1)
    names = list(StepRecord.objects.filter(instance_id=handle.instance_id).order_by("position")
                 .values_list("name", flat=True))
    assert names == ["Work", "sleep", "More work", "Clean up"]


# -- cancels and lost leases are noticed before the next step starts ---------------------------
def test_a_cancel_requested_during_a_step_stops_the_run_before_the_next_step():
    handle = queued("engine.gated", "c1")
    outcome = {}
    runner = in_thread(lambda: outcome.update(
        state=execute(handle.instance_id, "fresh", handle.instance.epoch)))

    try:
        wait_until(lambda: SEEN["gate:c1"] == 1, message="the step to start")
        client.cancel(handle.instance_id, reason="changed my mind")
    finally:
        GATES.setdefault("c1", threading.Event()).set()
        runner.join(30)
    assert state_of(handle.instance_id) == "cancelled"
    assert SEEN["after-gate"] == 0


def test_a_cancel_seen_by_the_heartbeat_stops_the_run_before_the_next_step():
    handle = queued("faults.between", "b1")
    outcome = {}
    settings = {"LEASE_SECONDS": 1, "HEARTBEAT_SECONDS": 0.1}
    with override_settings(DURABLE_WORKFLOWS=settings):
        runner = in_thread(lambda: outcome.update(
            state=execute(handle.instance_id, "fresh", handle.instance.epoch)))

        try:
            wait_until(lambda: RAN["first"] == 1, message="the first step to finish")
            client.cancel(handle.instance_id)
            asked = timezone.now()
            # A beat after the cancel extends the lease past `asked` + LEASE_SECONDS.
            wait_until(lambda: WorkflowInstance.objects.get(pk=handle.instance_id).lease_expires_at
                       >= asked + timezone.timedelta(seconds=1), message="a heartbeat after the cancel")
        finally:
            gate("b1").set()
            runner.join(30)
    assert outcome["state"] is None
    assert state_of(handle.instance_id) == "cancelled"
    assert RAN["second"] == 0


def test_failing_heartbeats_let_another_worker_take_over_and_the_run_ends_once():
    handle = queued("engine.contested", "hb")
    outcome = {}
    with override_settings(DURABLE_WORKFLOWS={"LEASE_SECONDS": 1, "HEARTBEAT_SECONDS": 0.2}):
        with failing_in_thread("durable-heartbeat", FailNthWrite(None, every=True)):
            first = in_thread(lambda: outcome.update(
                state=execute(handle.instance_id, "fresh", handle.instance.epoch)))

            try:
                wait_until(lambda: SEEN["gate:hb"] == 1, message="the first run's step to start")
                wait_until(lambda: handle.instance_id in recover(), timeout=15, interval=0.1,
                           message="the lease to lapse without heartbeats")
            finally:
                GATES.setdefault("hb", threading.Event()).set()
                first.join(30)
    assert outcome["state"] is None
    done = client.get(handle.instance_id)
    assert done.result() == "hb:2"
    assert SEEN["after-gate"] == 1


# -- scope, signals, meta, replayed failures, ids, async ----------------------------------------
def test_a_run_started_inside_a_step_in_sync_mode_completes():
    handle = client.start("faults.parent", instance_id="p1")
    assert handle.refresh().result() == {"child": "p1-child", "state": "completed"}
    assert client.get("p1-child").result() == "child done"


def test_a_receiver_that_raises_breaks_nothing(caplog):
    def broken(**kwargs):
        raise RuntimeError(f"receiver bug on {kwargs['event']}")

    lifecycle_event.connect(broken, weak=False)
    try:
        with caplog.at_level(logging.ERROR, logger="durable_workflows"):
            handle = client.start("engine.between", "1h")
            assert handle.refresh().state == "paused"
            fire_alarm_now(handle.instance_id)
            assert handle.refresh().result() == 2
    finally:
        lifecycle_event.disconnect(broken)
    logged = [r for r in caplog.records if "receiver" in r.getMessage() and r.exc_info]
    assert any("workflow.completed" in r.getMessage() for r in logged)
    assert SEEN["first"] == 1 and SEEN["second"] == 1


def test_set_meta_never_goes_backwards_across_replays():
    handle = client.start("faults.meta")
    assert handle.refresh().state == "paused"
    assert client.meta(handle.instance_id, "progress") == 2
    fire_alarm_now(handle.instance_id)
    assert handle.refresh().result() == 3
    # First run: the meta set before step One is written as One starts, so that a client
    # reads it while One runs; the replay reads 2 there, never 1 again.
    assert OBSERVED == [1, 2]
    assert client.meta(handle.instance_id, "progress") == 3


def test_set_meta_before_a_step_can_be_read_while_the_step_runs():
    assert client.start("faults.progress").refresh().result() == "fetching"


def test_set_meta_is_not_written_by_a_cancelled_run():
    handle = queued("faults.between", "m1")
    runner = in_thread(lambda: execute(handle.instance_id, "fresh", handle.instance.epoch))
    try:
        wait_until(lambda: RAN["between"] == 1, message="the run to set its meta and wait")
        client.cancel(handle.instance_id)
    finally:
        gate("m1").set()
        runner.join(30)
    assert state_of(handle.instance_id) == "cancelled"
    assert client.meta(handle.instance_id) == {}


def test_set_meta_goes_out_with_the_next_write():
    gate("m2").set()
    handle = client.start("faults.between", "m2")
    assert handle.refresh().result() == "both"
    assert client.meta(handle.instance_id) == {"stage": "between"}


def test_a_step_error_the_workflow_caught_is_replayed_as_the_workflows_not_the_engines():
    handle = client.start("faults.caught_db_error")
    assert handle.refresh().state == "paused"
    fire_alarm_now(handle.instance_id)
    done = handle.refresh()
    assert done.result() == "caught IntegrityError"
    assert RAN["insert"] == 1 and done.instance.recovery_count == 0


def test_a_lost_lease_seen_by_the_heartbeat_stops_the_run_before_the_next_step():
    handle = queued("faults.between", "l1")
    outcome = {}
    beats = FailNthWrite(None)  # counts the heartbeat's writes, fails none
    with override_settings(DURABLE_WORKFLOWS={"LEASE_SECONDS": 1, "HEARTBEAT_SECONDS": 0.1}):
        with failing_in_thread("durable-heartbeat", beats):
            first = in_thread(lambda: outcome.update(
                state=execute(handle.instance_id, "fresh", handle.instance.epoch)))

            try:
                wait_until(lambda: RAN["between"] == 1, message="the first run to wait between its steps")
                # Another worker takes the instance over (its lease lapsed, say) and finishes it.
                WorkflowInstance.objects.filter(pk=handle.instance_id).update(
                    lease_expires_at=timezone.now() - timezone.timedelta(seconds=1))
                assert execute(handle.instance_id, "recover") == "completed"
                seen = beats.writes
                wait_until(lambda: beats.writes >= seen + 2, message="the first run's heartbeat to beat")
            finally:
                gate("l1").set()
                first.join(30)
    assert outcome["state"] is None
    assert RAN["second"] == 1  # only the run that took over ran it


def test_a_replayed_failure_whose_class_is_gone_fails_the_instance_naming_it():
    handle = client.start("faults.lost_class")
    assert handle.refresh().state == "paused"
    failures._seen.clear()  # as in another process, which never saw the class
    fire_alarm_now(handle.instance_id)
    failed = handle.refresh()
    assert failed.state == "failed"
    assert failed.error["type"] == "ReplayError"
    assert "tests.testapp.nowhere:Vanishing" in failed.error["message"]


def test_an_id_of_another_workflow_is_a_conflict_and_changes_nothing():
    first = client.start("engine.types", 1, instance_id="taken")
    before = list(WorkflowInstance.objects.values())
    with pytest.raises(WorkflowIdConflict, match="already exists for workflow 'engine.types'"):
        client.start("tests.greet", "Ada", instance_id="taken")
    with pytest.raises(WorkflowIdConflict):
        client.run_inline("tests.greet", "Ada", instance_id="taken")
    assert list(WorkflowInstance.objects.values()) == before
    again = client.start("engine.types", 1, instance_id="taken")
    assert again.instance_id == first.instance_id and not again.created and first.created


def test_gathered_async_steps_take_positions_in_call_order():
    handle = client.start("faults.gather").refresh()
    assert handle.state == "completed" and handle.result() == [1, 2]
    assert [(s.position, s.name) for s in handle.steps] == [(0, "A"), (1, "B")]


def test_claim_fault_leaves_the_instance_to_be_dispatched_again():
    handle = queued("faults.fallback")
    with connection.execute_wrapper(FailNthWrite(1)):
        assert execute(handle.instance_id, "fresh", handle.instance.epoch) is None
    assert state_of(handle.instance_id) == "queued"
    with override_settings(DURABLE_WORKFLOWS={"REDISPATCH_AFTER_SECONDS": 0}):
        done = recover_until_finished(handle.instance_id)
    assert done.result() == "charged and shipped"


def test_a_lease_the_heartbeat_renewed_can_still_be_taken_over():
    """The recovery scan reserves a stale instance with a compare-and-set on the lease's
    expiry it read: the heartbeat must store that value as the ORM does."""
    handle = queued("engine.gated", "hb-format")
    renewed = {}
    with override_settings(DURABLE_WORKFLOWS={"LEASE_SECONDS": 1, "HEARTBEAT_SECONDS": 0.1}):
        runner = in_thread(lambda: execute(handle.instance_id, "fresh", handle.instance.epoch))
        try:
            wait_until(lambda: SEEN["gate:hb-format"] == 1, message="the step to start")
            first = WorkflowInstance.objects.get(pk=handle.instance_id).lease_expires_at
            wait_until(lambda: WorkflowInstance.objects.get(pk=handle.instance_id).lease_expires_at != first,
                       message="a heartbeat")
            renewed["at"] = WorkflowInstance.objects.get(pk=handle.instance_id).lease_expires_at
            renewed["found"] = WorkflowInstance.objects.filter(
                pk=handle.instance_id, lease_expires_at=renewed["at"]).exists()
        finally:
            GATES.setdefault("hb-format", threading.Event()).set()
            runner.join(30)
    assert renewed["found"]


def test_a_scan_late_to_claim_an_alarm_never_fires_the_next_one():
    """Two workers' alarm scans read the same due alarm; one fires it first, and the run
    resumes and sleeps again with a new alarm before the other gets to its claim."""
    handle = client.start("faults.two_sleeps")
    Alarm.objects.filter(instance_id=handle.instance_id).update(fire_at=timezone.now() - timezone.timedelta(seconds=1))
    first_claim = {}

    def other_scan_first(execute_, sql, params, many, context):
        if not first_claim and sql.lstrip().startswith('UPDATE "durable_workflows_alarm" SET "fired_at"'):
            first_claim["ran"] = True
            in_thread(lambda: fire_alarms(instance_id=handle.instance_id)).join(30)
        return execute_(sql, params, many, context)

    with connection.execute_wrapper(other_scan_first):
        fire_alarms(instance_id=handle.instance_id)
    assert first_claim.get("ran") or connection.vendor == "postgresql"
    alarm = Alarm.objects.get(instance_id=handle.instance_id)
    assert (alarm.position, alarm.fired_at) == (1, None)  # the second sleep's, not fired
    assert handle.refresh().state == "paused"
