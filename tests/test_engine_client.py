"""The client: idempotent start, cancel from every state, and bad input that changes nothing."""

import pytest
from django.test import override_settings

from durable_workflows import (
    InvalidTransition,
    NonDeterminismError,
    SerializationError,
    UnknownWorkflow,
    WorkflowCancelled,
    WorkflowFailed,
    WorkflowNotFound,
    client,
    start,
)
from durable_workflows.engine import execute, fire_alarm_now
from durable_workflows.models import Alarm, Event, StepRecord, WorkflowInstance
from durable_workflows.registry import unregister, workflow
from tests.testapp.engine_workflows import SEEN, count

pytestmark = pytest.mark.django_db(transaction=True)

INLINE = {"DISPATCHER": "durable_workflows.dispatch.InlineDispatcher"}




def snapshot():
    return (
        list(WorkflowInstance.objects.order_by("pk").values()),
        list(StepRecord.objects.order_by("pk").values()),
        list(Alarm.objects.order_by("pk").values()),
        Event.objects.count(),
    )


def test_start_with_an_instance_id_is_idempotent():
    first = start("engine.between", "1h", instance_id="order-1")
    again = start("engine.between", "1h", instance_id="order-1")
    assert again.instance_id == first.instance_id == "order-1"
    assert WorkflowInstance.objects.filter(pk="order-1").count() == 1
    assert SEEN["first"] == 1 and again.instance.run_count == 1


def test_start_accepts_the_function_itself_and_keyword_arguments():
    from tests.testapp.workflows import greet

    handle = start(greet, name="Grace", punctuation="?")
    assert handle.result() == "Hello, Grace?"


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: start("no.such.workflow"), UnknownWorkflow),
        (lambda: start("engine.types", object()), SerializationError),
        (lambda: start("engine.types", {"when": {1, object()}}), SerializationError),
        (lambda: start("tests.greet"), TypeError),
        (lambda: start("tests.greet", "a", "b", "c"), TypeError),
        (lambda: start("tests.greet", nobody="x"), TypeError),
        (lambda: start("tests.greet", "a", instance_id=""), ValueError),
    ],
)
def test_bad_start_raises_and_creates_nothing(call, error):
    start("engine.between", "1h", instance_id="existing")
    before = snapshot()
    with pytest.raises(error) as info:
        call()
    assert snapshot() == before
    assert str(info.value)


def test_error_messages_name_the_problem():
    with pytest.raises(UnknownWorkflow, match="no.such"):
        start("no.such")
    with pytest.raises(TypeError, match="tests.greet"):
        start("tests.greet")
    with pytest.raises(SerializationError, match="input"):
        start("engine.types", object())


def test_unstorable_step_result_fails_the_instance_naming_the_step():
    handle = start("engine.unstorable_result")
    assert handle.state == "failed"
    assert handle.error["type"] == "SerializationError"
    assert "Make object" in handle.error["message"]
    assert handle.steps == []


def test_unparseable_duration_fails_the_instance_naming_the_text():
    handle = start("engine.bad_duration", "banana")
    assert handle.state == "failed"
    assert handle.error["type"] == "ValueError" and "banana" in handle.error["message"]
    assert not Alarm.objects.exists()


def test_replay_meeting_a_different_step_name_is_nondeterminism():
    handle = start("engine.versioned", "Old name")
    assert handle.state == "paused"
    WorkflowInstance.objects.filter(pk=handle.instance_id).update(
        input='{"args":["New name"],"kwargs":{}}'
    )
    fire_alarm_now(handle.instance_id)
    handle.refresh()
    assert handle.state == "failed"
    assert handle.error["type"] == NonDeterminismError.__name__
    assert "Old name" in handle.error["message"] and "New name" in handle.error["message"]
    assert SEEN["last"] == 0


def test_nondeterminism_cannot_be_swallowed_by_the_workflow():
    @workflow("engine.swallower")
    def swallower(wf, name):
        try:
            wf.step(name, count, name, 1)
        except Exception:
            pass
        wf.sleep("1h")
        return "carried on"

    try:
        handle = start("engine.swallower", "A")
        WorkflowInstance.objects.filter(pk=handle.instance_id).update(
            input='{"args":["B"],"kwargs":{}}'
        )
        fire_alarm_now(handle.instance_id)
        assert handle.refresh().state == "failed"
        assert handle.error["type"] == "NonDeterminismError"
    finally:
        unregister("engine.swallower")


def test_cancel_queued():
    with override_settings(DURABLE_WORKFLOWS={"DISPATCHER": "tests.test_engine_client.NoDispatch"}):
        handle = start("engine.between", "1h")
    assert handle.state == "queued"
    client.cancel(handle.instance_id, reason="not needed")
    handle.refresh()
    assert handle.state == "cancelled" and handle.instance.cancel_reason == "not needed"
    assert execute(handle.instance_id, "fresh") is None
    assert SEEN["first"] == 0


def test_cancel_paused_removes_its_alarm():
    handle = start("engine.between", "1h")
    assert Alarm.objects.filter(instance_id=handle.instance_id).exists()
    handle.cancel("changed my mind")
    assert handle.state == "cancelled"
    assert not Alarm.objects.filter(instance_id=handle.instance_id).exists()
    with pytest.raises(WorkflowCancelled, match="changed my mind"):
        handle.result()


def test_cancel_running_stops_at_the_next_step_boundary():
    handle = start("engine.cancel_self")
    assert handle.state == "cancelled"
    assert SEEN["never"] == 0
    assert handle.instance.cancel_reason == "from inside"


def test_cancel_finished_raises_invalid_transition():
    handle = start("tests.greet", "Ada")
    with pytest.raises(InvalidTransition, match="Completed"):
        client.cancel(handle.instance_id)
    assert client.get(handle.instance_id).state == "completed"


def test_unknown_ids_raise_workflow_not_found():
    for call in (client.get, client.cancel, client.meta):
        with pytest.raises(WorkflowNotFound, match="nope"):
            call("nope")


def test_failed_result_raises_with_the_error():
    handle = start("engine.no_retry")
    with pytest.raises(WorkflowFailed, match="bad value 1"):
        handle.result()


def test_list_is_newest_first_and_filters():
    a = start("tests.greet", "a")
    b = start("engine.between", "1h")
    c = start("tests.greet", "c")
    assert [h.instance_id for h in client.list()][:3] == [c.instance_id, b.instance_id, a.instance_id]
    assert [h.instance_id for h in client.list(state="paused")] == [b.instance_id]
    assert [h.instance_id for h in client.list(workflow="tests.greet")] == [c.instance_id, a.instance_id]
    assert [h.instance_id for h in client.list(state="Completed", workflow="tests.greet")] == [
        c.instance_id, a.instance_id
    ]


def test_inline_dispatcher_runs_without_a_queue():
    with override_settings(DURABLE_WORKFLOWS=INLINE):
        handle = start("tests.three_steps", 1)
    assert handle.result() == 4


class NoDispatch:
    """A dispatcher that loses every task, as a broker might."""

    synchronous = False

    def dispatch(self, instance_id, mode, epoch):
        return None


def test_result_of_an_unfinished_instance_says_so():
    from durable_workflows import WorkflowNotFinished

    handle = start("engine.between", "1h")
    with pytest.raises(WorkflowNotFinished, match="Paused"):
        handle.result()
