"""Delayed starts: `delay=` and `start_at=` keep an instance Queued, with no task out, until
`fire_alarms()` finds its start due; bad values are refused before anything is stored."""

from __future__ import annotations

import datetime as dt
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from durable_workflows import client, fire_alarms, recover
from durable_workflows.engine import clock
from durable_workflows.models import Alarm, WorkflowInstance
from durable_workflows.testing import virtual_clock
from tests.testapp.limit_workflows import read_log

pytestmark = pytest.mark.django_db

INLINE = {"DISPATCHER": "durable_workflows.dispatch.InlineDispatcher"}


@pytest.fixture
def moving():
    with override_settings(DURABLE_WORKFLOWS=INLINE), virtual_clock() as virtual:
        yield virtual


def test_a_delayed_start_waits_for_its_time_then_runs(moving):
    handle = client.start("flow.digest", "ann", ["a"], delay="5m")
    assert handle.created and handle.state == "queued"
    assert handle.start_at == handle.instance.created_at + timedelta(minutes=5)
    assert Alarm.objects.get(instance_id=handle.instance_id).reason == "start"
    assert WorkflowInstance.objects.get(pk=handle.instance_id).dispatched_at is None  # no task out
    assert fire_alarms() == [] and recover() == []
    moving.advance(timedelta(minutes=4, seconds=59))
    assert fire_alarms() == []
    assert client.get(handle.instance_id).state == "queued"
    moving.advance(timedelta(seconds=2))
    assert fire_alarms() == [handle.instance_id]
    done = client.get(handle.instance_id)
    assert done.state == "completed" and done.result() == {"user": "ann", "items": ["a"]}
    assert done.start_at == handle.start_at  # still says when it was scheduled for
    assert not Alarm.objects.filter(instance_id=handle.instance_id).exists()
    assert fire_alarms() == []  # released once


def test_start_at_and_the_other_ways_to_give_a_delay(moving):
    at = clock.now() + timedelta(hours=2)
    later = client.start("flow.digest", "ann", [], start_at=at)
    assert later.state == "queued" and later.start_at == at
    in_seconds = client.start("flow.digest", "bob", [], delay=90)
    by_timedelta = client.start("flow.digest", "cy", [], delay=timedelta(minutes=1))
    assert in_seconds.start_at - in_seconds.instance.created_at == timedelta(seconds=90)
    assert by_timedelta.start_at - by_timedelta.instance.created_at == timedelta(minutes=1)
    moving.advance(timedelta(minutes=2))
    assert sorted(fire_alarms()) == sorted([in_seconds.instance_id, by_timedelta.instance_id])
    moving.advance_to(at)
    assert fire_alarms() == [later.instance_id]
    assert client.get(later.instance_id).state == "completed"


def test_no_delay_or_a_time_past_starts_at_once(moving):
    assert client.start("flow.digest", "ann", [], delay=0).state == "completed"
    past = client.start("flow.digest", "bob", [], start_at=clock.now() - timedelta(days=1))
    assert past.state == "completed" and past.start_at is None


def test_bad_delays_are_refused_and_store_nothing(moving):
    naive = dt.datetime(2030, 1, 1, 12, 0)
    for options, says in (
        ({"delay": "soon"}, "invalid delay 'soon'"),
        ({"delay": -5}, "invalid delay -5: must not be negative"),
        ({"delay": True}, "invalid delay True"),
        ({"start_at": naive}, "start_at must be an aware datetime"),
        ({"start_at": "2030-01-01T12:00:00Z"}, "start_at must be a datetime"),
        ({"delay": "5m", "start_at": timezone.now()}, "give delay= or start_at=, not both"),
    ):
        with pytest.raises(ValueError, match=says):
            client.start("flow.digest", "ann", [], **options)
        with pytest.raises(ValueError, match=says):
            client.start_many("flow.digest", [["ann", []]], **options)
    assert not WorkflowInstance.objects.exists() and not Alarm.objects.exists()


def test_start_many_with_a_delay_and_a_priority(moving):
    handles = client.start_many("flow.digest", [["a", []], {"user": "b", "items": [1]}], delay="1h", priority=5)
    assert [(h.state, h.priority) for h in handles] == [("queued", 5), ("queued", 5)]
    assert Alarm.objects.filter(reason="start").count() == 2
    moving.advance(timedelta(hours=1))
    assert sorted(fire_alarms()) == sorted(h.instance_id for h in handles)
    assert [client.get(h.instance_id).result()["user"] for h in handles] == ["a", "b"]


def test_a_cancelled_delayed_start_never_runs(moving):
    handle = client.start("flow.digest", "ann", [], delay="1m")
    client.cancel(handle.instance_id, "not needed")
    moving.advance(timedelta(minutes=2))
    assert fire_alarms() == []
    assert client.get(handle.instance_id).state == "cancelled"
    assert not Alarm.objects.exists()


@pytest.mark.django_db(transaction=True)  # a freed slot's admission is sent once its own transaction commits
def test_a_delayed_start_takes_no_slot_before_its_time(moving, tmp_path):
    log = str(tmp_path / "inside.log")
    holder = client.start("flow.one_at_a_time", log, True, instance_id="holder")
    delayed = client.start("flow.one_at_a_time", log, instance_id="delayed", priority=100, delay="1h")
    client.start("flow.one_at_a_time", log, instance_id="waiting")
    client.send_event(holder.instance_id, "done")
    assert [client.get(i).state for i in ("holder", "waiting", "delayed")] == ["completed", "completed", "queued"]
    moving.advance(timedelta(hours=1))
    assert fire_alarms() == ["delayed"]
    assert [e["instance"] for e in read_log(log) if e["event"] == "enter"] == ["holder", "waiting", "delayed"]
    assert delayed.start_at is not None and delayed.created


def test_the_api_starts_later(admin_client, moving):
    response = admin_client.post("/api/workflows/instances/", {"workflow": "flow.digest", "input": ["ann", []],
                                                               "delay": "10m", "priority": 2},
                                 content_type="application/json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["state"] == "queued" and body["priority"] == 2 and body["start_at"]
    assert body["alarm"]["reason"] == "start"
    at = (clock.now() + timedelta(hours=1)).isoformat()
    response = admin_client.post("/api/workflows/instances/", {"workflow": "flow.digest", "input": ["bob", []],
                                                               "start_at": at}, content_type="application/json")
    assert response.status_code == 201 and response.json()["state"] == "queued"
    for bad, field in (({"delay": "soon"}, "delay"), ({"delay": "5m", "start_at": at}, "delay"),
                       ({"start_at": "tomorrow"}, "start_at")):
        response = admin_client.post("/api/workflows/instances/", {"workflow": "flow.digest", "input": ["c", []],
                                                                   **bad}, content_type="application/json")
        assert response.status_code == 400 and field in response.json(), response.json()
    assert WorkflowInstance.objects.count() == 2


def test_the_admin_says_when_it_is_scheduled_for(admin_client, moving):
    from django.urls import reverse

    handle = client.start("flow.digest", "ann", [], delay="2h")
    listing = admin_client.get(reverse("admin:durable_workflows_workflowinstance_changelist")).content.decode()
    assert "scheduled start" in listing
    page = admin_client.get(reverse("admin:durable_workflows_workflowinstance_change", args=[handle.instance_id]))
    assert "scheduled for" in page.content.decode().lower()


def test_workflow_parameters_named_like_the_options_go_through_start_with(moving):
    handle = client.start_with("flow.options_as_parameters", [], {"delay": "1h", "priority": 3})
    assert handle.state == "completed" and handle.result() == {"delay": "1h", "priority": 3}
    assert handle.priority == 0 and handle.start_at is None
    later = client.start_with("flow.options_as_parameters", [], {"delay": "x"}, delay="1h", priority=4)
    assert later.state == "queued" and later.priority == 4


def test_waiting_on_a_synchronous_dispatcher_starts_it_when_due(moving):
    handle = client.start("flow.digest", "ann", [], delay="50ms")
    assert handle.wait(timeout=10).state == "completed"


def test_the_command_starts_later_and_with_a_priority(moving):
    from io import StringIO

    from django.core.management import CommandError, call_command

    out = StringIO()
    call_command("durable_workflows", "start", "flow.digest", "--input", '["ann", []]', "--id", "later",
                 "--priority", "4", "--delay", "1h", stdout=out)
    assert "Started: flow.digest later (Queued)" in out.getvalue()
    assert (client.get("later").priority, client.get("later").start_at is not None) == (4, True)
    with pytest.raises(CommandError, match="invalid delay 'soon'"):
        call_command("durable_workflows", "start", "flow.digest", "--input", '["bob", []]', "--delay", "soon")
    with pytest.raises(CommandError, match="priority must be a whole number"):
        call_command("durable_workflows", "start", "flow.digest", "--input", '["bob", []]', "--priority", "500")
    assert WorkflowInstance.objects.count() == 1
