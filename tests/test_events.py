"""Events and deadlines (DESIGN §8) through the public API."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from durable_workflows import (
    EventTimeout,
    InvalidTransition,
    NonDeterminismError,
    SerializationError,
    WorkflowNotFound,
    client,
    fire_alarms,
    send_event,
)
from durable_workflows.models import Alarm, InboxMessage, StepRecord, WorkflowInstance
from durable_workflows.registry import unregister, workflow
from tests.helpers import logged
from tests.testapp.fault_workflows import RAN

pytestmark = pytest.mark.django_db(transaction=True)

NO_DISPATCH = {"DISPATCHER": "tests.test_engine_client.NoDispatch"}


def kinds(instance_id: str) -> list[str]:
    return logged(instance_id)


def snapshot():
    return (
        list(WorkflowInstance.objects.order_by("pk").values()),
        list(StepRecord.objects.order_by("pk").values()),
        list(InboxMessage.objects.order_by("pk").values()),
        list(Alarm.objects.order_by("pk").values()),
    )


def past(instance_id: str) -> None:
    """Make the instance's wait timeout, or its alarm, due now, as if the time had passed."""
    Alarm.objects.filter(instance_id=instance_id).update(fire_at=timezone.now() - timedelta(seconds=1))
    StepRecord.objects.filter(instance_id=instance_id, kind="event", state="awaiting").update(
        wake_at=timezone.now() - timedelta(seconds=1))


def test_wait_then_send_resumes_with_the_payload():
    handle = client.start("events.approval", "C-1")
    assert handle.refresh().state == "paused"
    wait = StepRecord.objects.get(instance_id=handle.instance_id, kind="event")
    assert (wait.name, wait.state) == ("approval", "awaiting")
    assert Alarm.objects.get(instance_id=handle.instance_id).reason == "event"
    assert send_event(handle.instance_id, "approval", {"approved": True}) is True
    assert handle.refresh().result() == {"claim": "C-1", "decision": {"approved": True}}
    assert RAN["ask"] == 1 and RAN["apply"] == 1
    log = kinds(handle.instance_id)
    assert "event.waiting" in log and "event.received" in log
    assert log.index("event.waiting") < log.index("event.received")


def test_an_event_sent_before_the_wait_is_kept_for_it():
    with override_settings(DURABLE_WORKFLOWS=NO_DISPATCH):
        handle = client.start("events.approval", "C-2")
    assert send_event(handle.instance_id, "approval", "early") is True
    from durable_workflows.engine import execute

    assert execute(handle.instance_id, "fresh", handle.instance.epoch) == "completed"
    assert handle.refresh().result()["decision"] == "early"
    assert "event.waiting" not in kinds(handle.instance_id)


def test_waits_take_events_first_in_first_out_each_once():
    with override_settings(DURABLE_WORKFLOWS=NO_DISPATCH):
        handle = client.start("events.three")
    for name, item in (("item", "a"), ("other", "not this name"), ("item", "b"), ("item", "c"), ("item", "d")):
        assert send_event(handle.instance_id, name, item)
    from durable_workflows.engine import execute

    assert execute(handle.instance_id, "fresh", handle.instance.epoch) == "completed"
    assert handle.refresh().result() == ["a", "b", "c"]
    left = InboxMessage.objects.filter(instance_id=handle.instance_id, taken_at__isnull=True).order_by("id")
    assert [(m.name, m.payload) for m in left] == [("other", '"not this name"'), ("item", '"d"')]
    assert [m.taken_position for m in InboxMessage.objects.filter(
        instance_id=handle.instance_id, taken_at__isnull=False).order_by("id")] == [0, 1, 2]


def test_each_send_resumes_the_next_wait():
    handle = client.start("events.three")
    for item in ("a", "b"):
        assert send_event(handle.instance_id, "item", item)
        assert handle.refresh().state == "paused"
    send_event(handle.instance_id, "item", "c")
    assert handle.refresh().result() == ["a", "b", "c"]


def test_a_repeated_event_id_is_ignored():
    handle = client.start("events.three")
    assert send_event(handle.instance_id, "item", 1, event_id="hook-1") is True
    assert send_event(handle.instance_id, "item", 2, event_id="hook-1") is False
    assert send_event(handle.instance_id, "item", 3, event_id="hook-2") is True
    assert send_event(handle.instance_id, "item", 4) is True
    assert handle.refresh().result() == [1, 3, 4]
    assert InboxMessage.objects.filter(instance_id=handle.instance_id).count() == 3


def test_a_timeout_the_workflow_catches():
    handle = client.start("events.approval", "C-3")
    past(handle.instance_id)
    fire_alarms()
    assert handle.refresh().result()["decision"] == {"approved": False, "why": "no answer"}
    assert "event.timeout" in kinds(handle.instance_id)
    record = StepRecord.objects.get(instance_id=handle.instance_id, kind="event")
    assert (record.state, record.error_type) == ("failed", "EventTimeout")


def test_an_uncaught_timeout_fails_the_instance():
    handle = client.start("events.strict")
    past(handle.instance_id)
    fire_alarms()
    failed = handle.refresh()
    assert failed.state == "failed" and failed.error["type"] == "EventTimeout"
    assert "'go'" in failed.error["message"]
    assert issubclass(EventTimeout, TimeoutError)


def test_replay_after_a_later_sleep_returns_the_same_payload():
    handle = client.start("events.then_sleep")
    send_event(handle.instance_id, "data", {"n": 1})
    assert handle.refresh().state == "paused"  # now at the sleep
    send_event(handle.instance_id, "data", {"n": 2})  # kept, not taken by the replay
    from durable_workflows.engine import fire_alarm_now

    fire_alarm_now(handle.instance_id)
    assert handle.refresh().result() == {"n": 1}
    assert InboxMessage.objects.filter(instance_id=handle.instance_id, taken_at__isnull=True).count() == 1


def test_async_workflows_wait_for_events():
    handle = client.start("events.async")
    send_event(handle.instance_id, "one", 1)
    assert handle.refresh().state == "paused"
    send_event(handle.instance_id, "two", 2)
    from durable_workflows.engine import fire_alarm_now

    fire_alarm_now(handle.instance_id)
    assert handle.refresh().result() == [1, 2]


def test_a_workflow_messages_another_from_a_step():
    target = client.start("events.receiver")
    assert target.refresh().state == "paused"
    sender = client.start("events.sender", target.instance_id)
    assert sender.refresh().result() is True
    assert target.refresh().result() == {"from": sender.instance_id}


def test_a_workflow_messages_another_with_the_inline_dispatcher():
    with override_settings(DURABLE_WORKFLOWS={"DISPATCHER": "durable_workflows.dispatch.InlineDispatcher"}):
        target = client.start("events.receiver")
        sender = client.start("events.sender", target.instance_id)
        assert sender.refresh().result() is True
        assert target.refresh().result() == {"from": sender.instance_id}


def test_wait_for_event_inside_a_step_is_a_scope_error():
    handle = client.start("events.in_step")
    failed = handle.refresh()
    assert failed.state == "failed" and failed.error["type"] == "StepScopeError"


def test_a_wait_where_a_step_was_recorded_is_non_determinism():
    @workflow("events.changing")
    def first(wf):
        wf.step("Step", RAN.__getitem__, "x")
        wf.sleep("1h")

    handle = client.start("events.changing")
    assert handle.refresh().state == "paused"

    @workflow("events.changing")
    def second(wf):
        wf.wait_for_event("Step")
        wf.sleep("1h")

    try:
        from durable_workflows.engine import fire_alarm_now

        fire_alarm_now(handle.instance_id)
        failed = handle.refresh()
        assert failed.state == "failed" and failed.error["type"] == NonDeterminismError.__name__
    finally:
        unregister("events.changing")


@pytest.mark.parametrize("call, error", [
    (lambda i: send_event("no-such-instance", "x"), WorkflowNotFound),
    (lambda i: send_event(i, "", 1), ValueError),
    (lambda i: send_event(i, 7, 1), ValueError),
    (lambda i: send_event(i, "x", object()), SerializationError),
    (lambda i: send_event(i, "x", 1, event_id=""), ValueError),
])
def test_bad_sends_change_nothing(call, error):
    handle = client.start("events.three")
    before = snapshot()
    with pytest.raises(error):
        call(handle.instance_id)
    assert snapshot() == before


def test_a_send_to_a_finished_instance_is_refused_and_stores_nothing():
    handle = client.start("events.three")
    client.cancel(handle.instance_id)
    before = snapshot()
    with pytest.raises(InvalidTransition, match="already Cancelled"):
        send_event(handle.instance_id, "item", 1)
    assert snapshot() == before


def test_a_bad_timeout_names_it():
    @workflow("events.bad_timeout")
    def bad(wf):
        wf.wait_for_event("x", timeout="soon")

    try:
        failed = client.start("events.bad_timeout").refresh()
        assert failed.state == "failed" and "soon" in failed.error["message"]
    finally:
        unregister("events.bad_timeout")


def test_a_deadline_fails_a_paused_instance_at_the_next_alarm_pass():
    handle = client.start("events.deadline")
    instance = handle.refresh().instance
    assert instance.state == "paused"
    assert instance.deadline_at - instance.created_at == timedelta(hours=1)
    WorkflowInstance.objects.filter(pk=handle.instance_id).update(deadline_at=timezone.now() - timedelta(seconds=1))
    assert handle.instance_id in fire_alarms()
    failed = handle.refresh()
    assert failed.state == "failed" and failed.error["type"] == "WorkflowTimeout"
    assert "events.deadline" in failed.error["message"]
    assert fire_alarms() == []


def test_a_deadline_fails_a_queued_instance():
    with override_settings(DURABLE_WORKFLOWS=NO_DISPATCH):
        handle = client.start("events.deadline")
    now = timezone.now()
    WorkflowInstance.objects.filter(pk=handle.instance_id).update(
        dispatched_at=now - timedelta(hours=2), deadline_at=now - timedelta(hours=1))
    assert handle.instance_id in fire_alarms()
    assert handle.refresh().error["type"] == "WorkflowTimeout"
    assert RAN["deadline-start"] == 0


def test_a_deadline_stops_a_running_instance_at_its_next_step():
    handle = client.start("events.deadline_running")
    failed = handle.refresh()
    assert failed.state == "failed" and failed.error["type"] == "WorkflowTimeout"
    assert RAN["dr-start"] == 1 and RAN["dr-after"] == 0
    # The timeout in the words the decorator was given.
    assert "workflow 'events.deadline_running' ran past its timeout of 2s" in failed.error["message"]


def test_a_run_whose_last_step_outlives_the_deadline_does_not_complete():
    failed = client.start("events.deadline_last").refresh()
    assert failed.state == "failed" and failed.error["type"] == "WorkflowTimeout", failed.error
    assert "ran past its timeout of 2 seconds" in failed.error["message"]




def test_a_webhook_redelivered_after_the_instance_finished_is_still_a_repeat():
    handle = client.start("events.receiver")
    assert send_event(handle.instance_id, "ping", "hello", event_id="delivery-1") is True
    assert handle.refresh().result() == "hello"
    before = snapshot()
    assert send_event(handle.instance_id, "ping", "hello", event_id="delivery-1") is False
    with pytest.raises(InvalidTransition):
        send_event(handle.instance_id, "ping", "hello", event_id="delivery-2")
    assert snapshot() == before
