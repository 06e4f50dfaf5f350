"""Pause and resume (client.pause, client.resume): nothing starts or resumes a held instance,
a running one stops before its next step with the step it ran kept, and resume runs what
became due meanwhile."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings

from durable_workflows import InvalidTransition, WorkflowNotFound, client
from durable_workflows.engine import clock, execute, fire_alarms, recover
from durable_workflows.engine.runs import claim
from durable_workflows.models import Alarm, InboxMessage, StepRecord, WorkflowInstance
from tests.helpers import in_thread, logged, queued
from tests.testapp.fault_workflows import RAN, gate

pytestmark = pytest.mark.django_db(transaction=True)

NO_DISPATCH = {"DISPATCHER": "tests.test_engine_client.NoDispatch", "REDISPATCH_AFTER_SECONDS": 0}


def steps(instance_id: str) -> dict[str, str]:
    return dict(StepRecord.objects.filter(instance_id=instance_id).values_list("name", "state"))


def test_a_held_queued_instance_is_not_started_until_resumed():
    handle = queued("pause.queued")
    held = client.pause(handle.instance_id, reason="fraud check")
    assert (held.state, held.held, held.held_reason) == ("queued", True, "fraud check")
    assert execute(handle.instance_id, "fresh", handle.instance.epoch) is None
    with override_settings(DURABLE_WORKFLOWS=NO_DISPATCH):
        assert handle.instance_id not in recover()  # no redispatch of a held instance either
    assert client.get(handle.instance_id).state == "queued" and RAN["only"] == 0
    resumed = client.resume(handle.instance_id)
    assert not resumed.held and resumed.held_reason == ""
    assert resumed.result() == "ran" and RAN["only"] == 1


def test_a_held_sleeping_instance_stays_paused_when_its_alarm_comes_due():
    handle = client.start("pause.nap")
    assert handle.state == "paused" and RAN["before"] == 1
    client.pause(handle.instance_id)
    Alarm.objects.filter(instance_id=handle.instance_id).update(fire_at=clock.now() - timedelta(seconds=1))
    assert fire_alarms() == [handle.instance_id]  # fired: its resume is refused
    with override_settings(DURABLE_WORKFLOWS=NO_DISPATCH):
        assert recover() == []
    after = client.get(handle.instance_id)
    assert (after.state, after.held, RAN["after"]) == ("paused", True, 0)
    assert client.resume(handle.instance_id).result() == 2 and RAN["after"] == 1


def test_resume_before_the_alarm_is_due_leaves_it_to_the_alarm():
    handle = client.start("pause.nap")
    client.pause(handle.instance_id)
    resumed = client.resume(handle.instance_id)
    assert (resumed.state, resumed.held, RAN["after"]) == ("paused", False, 0)
    assert Alarm.objects.get(instance_id=handle.instance_id).fired_at is None


# An atomic step's transaction holds SQLite's write lock while it runs: a pause there waits for it.
@pytest.mark.parametrize("workflow", ["pause.two_steps", "pause.two_steps_async",
                                      pytest.param("pause.two_steps_atomic", marks=pytest.mark.requires_postgres)])
@pytest.mark.parametrize("retried", [False, True], ids=["plain", "retried"])
def test_a_running_instance_finishes_its_step_and_stops_before_the_next(workflow, retried):
    handle = queued(workflow, retried=retried)
    pk = handle.instance_id
    thread = in_thread(lambda: execute(pk, "fresh", handle.instance.epoch))
    assert gate("first-started").wait(30)
    assert client.pause(pk, reason="look first").state == "running"
    gate("first").set()
    thread.join(30)
    stopped = client.get(pk)
    assert (stopped.state, stopped.held, stopped.held_reason) == ("paused", True, "look first")
    assert steps(pk) == {"First": "completed"} and stopped.steps[0].result == 1
    assert (RAN["first"], RAN["second"]) == (1, 0)
    assert not Alarm.objects.filter(instance_id=pk).exists()
    log = logged(pk)
    assert log[-1] == "workflow.paused" and log.count("step.started") == 1  # the first step's only
    assert client.resume(pk).result() == 3
    assert (RAN["first"], RAN["second"]) == (1, 1)
    assert StepRecord.objects.get(instance_id=pk, name="Second").attempts == 1


def test_parallel_branches_keep_what_they_finished_and_start_nothing_more():
    handle = queued("pause.branches")
    pk = handle.instance_id
    thread = in_thread(lambda: execute(pk, "fresh", handle.instance.epoch))
    assert gate("first-started").wait(30)
    client.pause(pk)
    gate("first").set()
    thread.join(30)
    assert client.get(pk).state == "paused"
    assert {"First", "Quick"} <= set(steps(pk)) and "After first" not in steps(pk)
    assert client.resume(pk).result() == [[1, 2], [3, 4]]
    assert (RAN["first"], RAN["after-first"], RAN["quick"], RAN["after-quick"]) == (1, 1, 1, 1)


def test_an_event_sent_to_a_held_instance_is_kept_and_taken_after_resume():
    handle = client.start("pause.await")
    client.pause(handle.instance_id)
    assert client.send_event(handle.instance_id, "go", {"n": 1})
    assert client.get(handle.instance_id).state == "paused" and RAN["use"] == 0
    assert InboxMessage.objects.get(instance_id=handle.instance_id).taken_at is None
    assert client.resume(handle.instance_id).result() == {"n": 1}


def test_the_parent_of_a_finished_child_stays_held():
    client.start("pause.parent", instance_id="holder")
    client.pause("holder")
    client.send_event("holder-child", "go", "done")
    assert client.get("holder-child").state == "completed"
    assert client.get("holder").state == "paused"
    assert client.resume("holder").result() == {"child": "done"}


def test_a_held_child_keeps_its_parent_waiting():
    client.start("pause.parent", instance_id="family")
    client.pause("family-child")
    client.send_event("family-child", "go", "late")
    assert (client.get("family-child").state, client.get("family").state) == ("paused", "paused")
    client.resume("family-child")
    assert client.get("family").result() == {"child": "late"}


def test_a_held_instance_neither_takes_a_free_slot_nor_keeps_a_younger_one_from_it():
    with override_settings(DURABLE_WORKFLOWS={"DISPATCHER": "tests.test_engine_client.NoDispatch"}):
        older = client.start("pause.limited", "older")
        younger = client.start("pause.limited", "younger")
    client.pause(older.instance_id)
    assert execute(older.instance_id, "fresh", older.instance.epoch) is None
    assert execute(younger.instance_id, "fresh", younger.instance.epoch) == "completed"
    assert client.get(older.instance_id).state == "queued"
    assert client.resume(older.instance_id).result() == "older"


def test_a_held_instance_whose_worker_died_is_recovered_only_once_resumed():
    handle = queued("pause.queued")
    assert claim(handle.instance_id, "fresh", handle.instance.epoch) is not None  # then its worker dies
    WorkflowInstance.objects.filter(pk=handle.instance_id).update(lease_expires_at=clock.now() - timedelta(seconds=1))
    client.pause(handle.instance_id)
    with override_settings(DURABLE_WORKFLOWS=NO_DISPATCH):
        assert recover() == []
    assert execute(handle.instance_id, "recover") is None
    assert client.resume(handle.instance_id).state == "running"  # left to recovery
    assert handle.instance_id in recover()
    assert client.get(handle.instance_id).result() == "ran"


def test_pausing_again_replaces_the_reason_and_resume_of_an_unheld_instance_changes_nothing():
    handle = client.start("pause.nap")
    client.pause(handle.instance_id, reason="first")
    assert client.pause(handle.instance_id, reason="second").held_reason == "second"
    client.resume(handle.instance_id)
    before = WorkflowInstance.objects.values().get(pk=handle.instance_id)
    again = client.resume(handle.instance_id)
    assert not again.held and WorkflowInstance.objects.values().get(pk=handle.instance_id) == before


def test_cancel_wins_over_a_hold():
    paused = client.start("pause.nap")
    client.pause(paused.instance_id)
    assert client.cancel(paused.instance_id).state == "cancelled"
    waiting = queued("pause.queued")
    client.pause(waiting.instance_id)
    assert client.cancel(waiting.instance_id).state == "cancelled"
    assert RAN["only"] == 0


def test_pause_refuses_a_finished_or_unknown_instance_and_changes_nothing():
    done = client.start("pause.queued")
    assert done.state == "completed"
    with pytest.raises(InvalidTransition, match="already Completed"):
        client.pause(done.instance_id)
    assert not client.get(done.instance_id).held
    for call in (client.pause, client.resume):
        with pytest.raises(WorkflowNotFound, match="nope"):
            call("nope")
    with pytest.raises(TypeError, match="pause reason must be text"):
        client.pause(done.instance_id, reason=3)


def test_pause_and_resume_are_exported_at_the_top():
    import durable_workflows

    assert durable_workflows.pause is client.pause and durable_workflows.resume is client.resume
    assert {"pause", "resume"} <= set(client.__all__) and {"pause", "resume"} <= set(durable_workflows.__all__)
