"""`wf.continue_as_new` (DESIGN §22): the same instance over again with new arguments and an
empty history, so that a workflow that loops for ever replays only its last generation."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from rest_framework.test import APIClient

from durable_workflows import check_replay, client, recover, send_event
from durable_workflows.models import InboxMessage, StepRecord
from durable_workflows.signals import workflow_continued
from tests.faults import FailNthWrite
from tests.helpers import logged, staff_user, wait_until
from tests.testapp.generation_workflows import PEAK, RAN

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _clean():
    PEAK.clear()
    RAN.clear()


def test_a_loop_continues_as_new_fifty_times_with_a_short_history():
    between: list[int] = []

    def count_records(sender, instance_id, data, **kwargs):
        between.append(StepRecord.objects.filter(instance_id=instance_id).count())
        assert data == {"generation": len(between)}

    workflow_continued.connect(count_records)
    try:
        handle = client.start("generations.loop", 0, 50)
    finally:
        workflow_continued.disconnect(count_records)
    handle.refresh()
    assert handle.result() == sum(range(50))
    assert handle.generation == 49 and handle.instance.run_count == 50
    assert between == [0] * 49  # every generation starts with no records
    assert PEAK[handle.instance_id] < 10
    assert [s.name for s in handle.steps] == ["add", "probe"]  # the last generation's
    assert handle.meta == {"n": 49}
    assert all(RAN[f"add-{n}"] == 1 for n in range(50))
    log = logged(handle.instance_id)
    assert log.count("workflow.continued") == 49 and log.count("workflow.started") == 1
    assert log[-1] == "workflow.completed"


def test_an_async_workflow_continues_with_or_without_await():
    handle = client.start("generations.loop_async", 0, 6).refresh()
    assert handle.result() == sum(range(6)) and handle.generation == 5


def test_events_not_taken_carry_over_and_taken_ones_are_not_taken_again():
    handle = client.start("generations.inbox", []).refresh()
    for item in "abc":
        send_event(handle.instance_id, "item", item)
    assert handle.refresh().state == "paused" and InboxMessage.objects.count() == 3  # it waits for "go"
    send_event(handle.instance_id, "go")
    handle.refresh()
    assert handle.result() == ["a", "b", "c"] and handle.generation == 2
    # The messages the earlier generations took went with them; the last one's stays.
    assert list(InboxMessage.objects.values_list("name", "payload")) == [("item", '"c"')]


def test_an_event_sent_to_a_later_generation_is_taken_there():
    handle = client.start("generations.inbox", [], 2).refresh()
    send_event(handle.instance_id, "go")
    send_event(handle.instance_id, "item", 1)
    assert handle.refresh().state == "paused" and handle.generation == 1
    send_event(handle.instance_id, "item", 2)
    assert handle.refresh().result() == [1, 2]


def test_refusals_raise_into_the_workflow_and_change_nothing():
    handle = client.start("generations.refused", 0).refresh()
    caught = handle.result()
    assert caught[:3] == ["TypeError", "TypeError", "SerializationError"]
    assert len(caught) == 5
    assert all(c.startswith("wf.continue_as_new() was called inside a branch of wf.parallel() or wf.race()")
               for c in caught[3:])
    assert handle.generation == 1  # the one call that was allowed


def test_inside_a_step_it_fails_the_run_as_every_primitive_does():
    handle = client.start("generations.in_step", 0).refresh()
    assert handle.state == "failed" and handle.error["type"] == "StepScopeError"
    assert "wf.continue_as_new() was called inside a running step" in handle.error["message"]
    assert handle.generation == 0


def test_a_workflow_that_swallows_the_signal_still_continues():
    handle = client.start("generations.unwinding", 0).refresh()
    assert handle.result() == 1 and handle.generation == 1
    assert RAN["add-100"] == 0


def test_a_fault_before_the_next_generation_commits_replays_and_continues_once():
    fault = FailNthWrite(1, touching="alarm")  # the next generation's commit replaces the alarm
    with connection.execute_wrapper(fault):
        handle = client.start("generations.loop", 0, 3)
    assert fault.failed_sql is not None
    assert handle.refresh().state == "running" and handle.generation == 0
    assert {s.name for s in handle.steps} == {"add", "probe"}  # flushed before the continue

    def finished():
        recover()
        return handle.refresh().is_finished

    wait_until(finished, timeout=20, interval=0.1, message="the loop to be recovered and finish")
    assert handle.result() == 3 and handle.generation == 2
    assert RAN["add-0"] == 1  # its record was written before the fault
    assert logged(handle.instance_id).count("workflow.continued") == 2


def test_the_api_and_the_replay_check_know_generations():
    api = APIClient()
    api.force_login(staff_user("operator"))
    handle = client.start("generations.inbox", [], 2).refresh()
    send_event(handle.instance_id, "go")
    send_event(handle.instance_id, "item", 1)
    assert handle.refresh().generation == 1
    detail = api.get(f"/api/workflows/instances/{handle.instance_id}/").json()
    assert detail["generation"] == 1
    listed = api.get("/api/workflows/instances/").json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    assert [row["generation"] for row in rows if row["id"] == handle.instance_id] == [1]
    assert check_replay("generations.inbox") == []


def test_a_generation_has_its_own_start_and_deadline():
    handle = client.start("generations.clock", 0).refresh()
    instance = handle.instance
    assert instance.generation_started_at is not None and instance.generation_started_at > instance.created_at
    assert handle.result() == instance.generation_started_at.isoformat()
    assert instance.deadline_at == instance.generation_started_at + timedelta(hours=1)


def test_the_show_command_and_the_admin_show_the_generation(admin_client):
    handle = client.start("generations.clock", 0).refresh()
    out = StringIO()
    call_command("durable_workflows", "show", handle.instance_id, stdout=out)
    assert "Generation 1 (since " in out.getvalue()
    page = admin_client.get(f"/admin/durable_workflows/workflowinstance/{handle.instance_id}/change/")
    assert page.status_code == 200 and b"generation started" in page.content.lower()
    listed = admin_client.get("/admin/durable_workflows/workflowinstance/")
    assert listed.status_code == 200 and b"column-generation" in listed.content
