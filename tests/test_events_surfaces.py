"""Sending events from outside: the REST endpoint and the management command."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from durable_workflows import client
from durable_workflows.models import InboxMessage, StepRecord, WorkflowInstance
from tests.helpers import manage, staff_user

pytestmark = pytest.mark.django_db(transaction=True)

BASE = "/api/workflows/"


@pytest.fixture
def api():
    api_client = APIClient()
    api_client.force_login(staff_user("operator"))
    return api_client


def send(api, instance_id, body, **extra):
    return api.post(f"{BASE}instances/{instance_id}/events/", body, format="json", **extra)


def stored():
    return (list(InboxMessage.objects.order_by("pk").values()), list(WorkflowInstance.objects.order_by("pk").values()))


def test_the_api_sends_an_event_and_the_instance_resumes(api):
    handle = client.start("events.approval", "A-1")
    answer = send(api, handle.instance_id, {"name": "approval", "payload": {"approved": True}, "event_id": "mail-1"})
    assert answer.status_code == 202 and answer.json() == {"accepted": True}
    assert handle.refresh().result()["decision"] == {"approved": True}


def test_a_repeated_event_id_answers_200_and_changes_nothing(api):
    handle = client.start("events.three")
    assert send(api, handle.instance_id, {"name": "item", "payload": 1, "event_id": "k"}).status_code == 202
    before = stored()
    again = send(api, handle.instance_id, {"name": "item", "payload": 2, "event_id": "k"})
    assert again.status_code == 200 and again.json() == {"accepted": False}
    assert stored() == before


@pytest.mark.parametrize("body, field", [
    ({}, "name"),
    ({"name": ""}, "name"),
    ({"name": "   "}, "name"),
    ({"name": 12}, "name"),
    ({"name": "x" * 256}, "name"),
    ({"name": "ok", "event_id": ""}, "event_id"),
    ({"name": "ok", "event_id": 5}, "event_id"),
    ({"name": "bad\x00name"}, "name"),
])
def test_a_bad_body_is_a_400_naming_the_field_and_stores_nothing(api, body, field):
    handle = client.start("events.three")
    before = stored()
    answer = send(api, handle.instance_id, body)
    assert answer.status_code == 400, answer.content
    assert field in answer.json()
    assert stored() == before


def test_unknown_and_finished_instances(api):
    assert send(api, "nobody", {"name": "x"}).status_code == 404
    handle = client.start("events.three")
    client.cancel(handle.instance_id)
    before = stored()
    answer = send(api, handle.instance_id, {"name": "item"})
    assert answer.status_code == 409
    assert answer.json()["state"] == "cancelled"
    assert stored() == before


def test_the_schema_describes_the_events_endpoint(api):
    schema = api.get(f"{BASE}schema/").json()
    operation = schema["paths"]["/api/workflows/instances/{instance_id}/events/"]["post"]
    assert set(operation["responses"]) >= {"200", "202", "400", "404", "409"}


def test_the_command_sends_an_event():
    handle = client.start("events.approval", "A-2")
    done = manage("send-event", handle.instance_id, "approval", "--payload", '{"approved": false}', "--event-id", "k1")
    assert done.returncode == 0, done.stderr
    assert "Sent 'approval'" in done.stdout
    assert handle.refresh().result()["decision"] == {"approved": False}


def test_the_command_reports_a_repeat_and_bad_input():
    handle = client.start("events.three")
    assert manage("send-event", handle.instance_id, "item", "--event-id", "k").returncode == 0
    again = manage("send-event", handle.instance_id, "item", "--event-id", "k")
    assert again.returncode == 0 and "Already received" in again.stdout
    bad = manage("send-event", handle.instance_id, "item", "--payload", "{nope")
    assert bad.returncode == 1 and "--payload is not valid JSON" in bad.stderr
    missing = manage("send-event", "nobody", "item")
    assert missing.returncode == 1 and "no workflow instance" in missing.stderr
    assert InboxMessage.objects.filter(instance_id=handle.instance_id).count() == 1
    assert StepRecord.objects.filter(instance_id=handle.instance_id, kind="event").count() == 2


def test_the_admin_page_shows_the_wait_and_the_events_not_yet_taken(admin_client):
    from django.urls import reverse

    handle = client.start("events.approval", "A-3")
    client.send_event(handle.instance_id, "reminder", {"n": 1}, event_id="mail-77")
    page = admin_client.get(reverse("admin:durable_workflows_workflowinstance_change", args=[handle.instance_id]))
    assert page.status_code == 200
    text = page.content.decode()
    assert "Waiting for" in text and "event &#x27;approval&#x27; until" in text
    assert "Events received, not yet taken" in text
    assert "reminder" in text and "mail-77" in text
    assert "times out in" in text  # the wait's row in the step timeline
    assert "Deadline" not in text  # events.approval has no workflow timeout


def test_the_admin_page_says_how_many_events_it_leaves_out(admin_client, monkeypatch):
    from django.urls import reverse

    from durable_workflows.admin import instance

    monkeypatch.setattr(instance, "INBOX_SHOWN", 2)
    handle = client.start("events.approval", "A-4")
    for n in range(3):
        client.send_event(handle.instance_id, "reminder", {"n": n, "body": "y" * 5000})
    text = admin_client.get(reverse("admin:durable_workflows_workflowinstance_change",
                                    args=[handle.instance_id])).content.decode()
    assert "Showing the oldest 2 of 3 events received." in text
    assert "more characters)" in text and "y" * 5000 not in text  # each payload is cut
