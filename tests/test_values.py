"""Values round-trip exactly: whatever a user stores comes back equal and of the same type,
user data shaped like the serializer's own tags included; text no database keeps is refused
where it is given."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from durable_workflows import SerializationError, client, start, workflow
from durable_workflows.models import StepRecord, WorkflowInstance

pytestmark = pytest.mark.django_db(transaction=True)

LOOKALIKES = [
    {"__dw__": "bytes", "v": "aGk="},
    {"__dw__": "datetime", "v": "not a date"},
    {"__dw__": "dict", "v": {"__dw__": "uuid", "v": "nope"}},
    {"__dw__": "tuple", "v": [1, 2]},
    {"__dw__": "x"},
    {"outer": {"__dw__": "set", "v": [1]}, "list": [{"__dw__": "decimal", "v": "1.5"}]},
    {"__dw__": "dict", "v": [["a", 1]]},
]

RAN: list[object] = []


def echo(value):
    RAN.append(value)
    return value


@workflow("values.echo")
def echo_workflow(wf, value):
    stepped = wf.step("Echo", echo, value)
    received = wf.wait_for_event("value")
    return {"input": value, "step": stepped, "event": received}


@pytest.mark.parametrize("value", LOOKALIKES)
def test_a_user_dict_shaped_like_a_tag_comes_back_as_that_dict(value):
    handle = start("values.echo", value)
    assert client.send_event(handle.instance_id, "value", value)
    result = handle.refresh().result()
    assert result == {"input": value, "step": value, "event": value}
    assert type(result["step"]) is dict
    # And again from the stored rows, in a replay's eyes.
    assert StepRecord.objects.get(instance_id=handle.instance_id, position=0).name == "Echo"
    assert client.get(handle.instance_id).result() == result


def test_lookalikes_nested_in_tagged_values_round_trip():
    value = ({"__dw__": "bytes", "v": "aGk="}, [{"__dw__": "time", "v": "12:00"}], b"hi",
             dt.date(2026, 10, 25))
    handle = start("values.echo", value)
    client.send_event(handle.instance_id, "value", value)
    assert handle.refresh().result()["step"] == value


def test_lookalikes_round_trip_through_the_api():
    user = User.objects.create_superuser(username="root", password="x")
    api = APIClient()
    api.force_login(user)
    value = {"__dw__": "bytes", "v": "aGk="}
    answer = api.post("/api/workflows/instances/", {"workflow": "values.echo", "input": [value]}, format="json")
    assert answer.status_code in (201, 202), answer.content
    instance_id = answer.json()["id"]
    sent = api.post(f"/api/workflows/instances/{instance_id}/events/", {"name": "value", "payload": value},
                    format="json")
    assert sent.status_code == 202, sent.content
    detail = api.get(f"/api/workflows/instances/{instance_id}/").json()
    assert detail["state"] == "completed"
    assert detail["result"] == {"input": value, "step": value, "event": value}


@pytest.mark.parametrize("text", ["a\x00b", "lone \udc80 surrogate", "\ud800"])
def test_text_no_database_keeps_is_refused_at_the_start_and_nothing_is_stored(text):
    with pytest.raises(SerializationError, match="the workflow input cannot be stored"):
        start("values.echo", {"note": text})
    with pytest.raises(SerializationError, match="cannot be stored"):
        start("values.echo", {text: "as a key"})
    assert not WorkflowInstance.objects.exists()


@pytest.mark.parametrize("text", ["a\x00b", "lone \udc80 surrogate"])
def test_such_text_in_an_event_payload_is_refused_and_nothing_is_stored(text):
    handle = start("values.echo", "fine")
    with pytest.raises(SerializationError):
        client.send_event(handle.instance_id, "value", {"note": text})
    assert handle.refresh().state == "paused"
    assert client.send_event(handle.instance_id, "value", "later")
    assert handle.refresh().result()["event"] == "later"


def unstorable_result(text_hex):
    RAN.append(text_hex)
    return bytes.fromhex(text_hex).decode("utf-8", "surrogatepass")


@workflow("values.unstorable_result")
def unstorable(wf, text_hex):
    return wf.step("Decode", unstorable_result, text_hex)


@pytest.mark.parametrize("text", ["a\x00b", "lone \udc80 surrogate"])
def test_a_step_result_with_such_text_is_a_serialization_error_and_the_body_ran_once(text):
    RAN.clear()
    handle = start("values.unstorable_result", text.encode("utf-8", "surrogatepass").hex())
    assert handle.state == "failed", handle.error
    assert handle.error["type"] == "SerializationError"
    assert "step 'Decode'" in handle.error["message"]
    assert len(RAN) == 1
