"""Text the database refuses (a NUL character, a lone surrogate) in what a run records: the
instance fails once with its real error, stored escaped; meta refuses it where it is given."""

from __future__ import annotations

import pytest

from durable_workflows import SerializationError, client, workflow
from durable_workflows.models import Event, StepRecord, WorkflowInstance

pytestmark = pytest.mark.django_db(transaction=True)

RAN: dict[str, int] = {}
REFUSED = {"nul": ("bad\x00byte", "bad\\x00byte"), "surrogate": ("bad\udc80byte", "bad\\udc80byte")}


def raising(message: str) -> None:
    RAN["step"] = RAN.get("step", 0) + 1
    raise ValueError(message)


@workflow("text.step_raises")
def step_raises(wf, kind: str):
    wf.step("Raise", raising, REFUSED[kind][0])


@workflow("text.workflow_raises")
def workflow_raises(wf, kind: str):
    wf.step("Before", RAN.__setitem__, "before", 1)
    raise ValueError(REFUSED[kind][0])


@workflow("text.meta")
def meta_refused(wf, kind: str):
    try:
        wf.set_meta("progress", {"note": REFUSED[kind][0]})
    except SerializationError as error:
        return f"refused: {error}"
    return "kept"


@workflow("text.meta_key")
def meta_key_refused(wf, kind: str):
    try:
        wf.set_meta("progress", {REFUSED[kind][0]: 1})
    except SerializationError:
        return "refused"
    return "kept"


@workflow("text.step_name")
def step_name_refused(wf):
    wf.step("bad\udc80name", RAN.__setitem__, "step", 1)


@pytest.fixture(autouse=True)
def _clear():
    RAN.clear()
    yield
    RAN.clear()


def failed_once(instance_id: str, kind: str) -> WorkflowInstance:
    instance = WorkflowInstance.objects.get(pk=instance_id)
    assert instance.state == "failed"
    assert instance.run_count == 1 and instance.recovery_count == 0
    assert instance.error_type == "ValueError"
    assert instance.error_message == REFUSED[kind][1]
    assert REFUSED[kind][1] in instance.error_traceback
    failed = Event.objects.get(instance_id=instance_id, kind="workflow.failed")
    assert failed.data["error"] == f"ValueError: {REFUSED[kind][1]}"
    return instance


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_a_step_error_the_database_refuses_fails_the_instance_once(kind):
    handle = client.start("text.step_raises", kind)
    failed_once(handle.instance_id, kind)
    assert RAN["step"] == 1
    record = StepRecord.objects.get(instance_id=handle.instance_id, name="Raise")
    assert (record.state, record.attempts, record.error_type) == ("failed", 1, "ValueError")
    assert record.error_message == REFUSED[kind][1]
    assert handle.refresh().error["message"] == REFUSED[kind][1]


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_a_workflow_error_the_database_refuses_fails_the_instance_once(kind):
    handle = client.start("text.workflow_raises", kind)
    failed_once(handle.instance_id, kind)
    assert StepRecord.objects.get(instance_id=handle.instance_id, name="Before").state == "completed"


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_meta_the_database_refuses_is_a_serialization_error_at_set_meta(kind):
    handle = client.start("text.meta", kind)
    assert handle.refresh().state == "completed"
    assert handle.result().startswith("refused: meta value 'progress' cannot be stored")
    assert handle.instance.meta == {}
    assert client.start("text.meta_key", kind).result() == "refused"


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_a_cancel_reason_the_database_refuses_is_stored_escaped(kind):
    from tests.helpers import queued

    handle = queued("text.step_raises", kind)
    client.cancel(handle.instance_id, reason=REFUSED[kind][0])
    instance = WorkflowInstance.objects.get(pk=handle.instance_id)
    assert (instance.state, instance.cancel_reason) == ("cancelled", REFUSED[kind][1])
    assert Event.objects.get(instance_id=handle.instance_id, kind="workflow.cancelled").data == {
        "reason": REFUSED[kind][1]}


def test_a_step_name_with_a_lone_surrogate_is_refused_as_bad_input():
    handle = client.start("text.step_name")
    instance = WorkflowInstance.objects.get(pk=handle.instance_id)
    assert (instance.state, instance.error_type, instance.run_count) == ("failed", "ValueError", 1)
    assert "a step name must be at most 255 characters, without NUL or lone surrogates" in instance.error_message
    assert "step" not in RAN


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_an_event_id_the_database_refuses_is_bad_input_and_nothing_is_stored(kind):
    from durable_workflows import send_event
    from durable_workflows.models import InboxMessage
    from tests.helpers import queued

    handle = queued("text.step_raises", kind)
    with pytest.raises(ValueError, match="without NUL or lone surrogates"):
        send_event(handle.instance_id, "go", 1, event_id=REFUSED[kind][0])
    assert not InboxMessage.objects.filter(instance_id=handle.instance_id).exists()
