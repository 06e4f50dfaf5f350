"""Child workflows (DESIGN §9) through the public API."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from durable_workflows import (
    ChildHandle,
    ChildWorkflowFailed,
    client,
    fire_alarms,
    recover,
    send_event,
)
from durable_workflows.engine import fire_alarm_now
from durable_workflows.models import StepRecord, WorkflowInstance
from tests.helpers import in_thread, staff_user
from tests.testapp.fault_workflows import RAN

pytestmark = pytest.mark.django_db(transaction=True)


def test_fan_out_and_in_returns_the_results_in_order():
    handle = client.start("children.fan", [3, 1, 2])
    assert handle.refresh().result() == [9, 1, 4]
    assert handle.children == [f"{handle.instance_id}.{i}" for i in range(3)]
    for child_id in handle.children:
        child = client.get(child_id)
        assert child.parent_id == handle.instance_id and child.state == "completed"
    assert handle.parent_id is None


def test_a_parent_waits_for_its_children_and_is_woken_by_each():
    handle = client.start("children.wait_nappers", 2)
    assert handle.refresh().state == "paused"
    first, second = handle.children
    wait = StepRecord.objects.get(instance_id=handle.instance_id, kind="child", state="awaiting")
    assert wait.name == first
    fire_alarm_now(second)  # the one not waited for yet: the parent stays asleep
    assert client.get(second).state == "completed" and handle.refresh().state == "paused"
    fire_alarm_now(first)
    assert handle.refresh().result() == [0, 1]
    assert (RAN["napper-0"], RAN["napper-1"]) == (1, 1)


def test_a_replay_starts_no_second_child():
    handle = client.start("children.start_then_sleep")
    assert handle.refresh().state == "paused"
    fire_alarm_now(handle.instance_id)
    assert handle.refresh().result() == f"{handle.instance_id}.0=9"
    assert WorkflowInstance.objects.filter(parent_id=handle.instance_id).count() == 1
    assert RAN["square-3"] == 1


def test_a_failed_child_reaches_the_parent_as_child_workflow_failed():
    result = client.start("children.catches", "failing").refresh().result()
    assert result["type"] == "LookupError" and result["failed"].endswith(".0")
    assert "no such sku" in result["message"]
    assert issubclass(ChildWorkflowFailed, Exception)


def test_a_cancelled_child_reaches_the_parent_as_workflow_cancelled():
    handle = client.start("children.catches", "cancelled")
    assert handle.refresh().state == "paused"
    client.cancel(handle.children[0], reason="out of stock")
    assert handle.refresh().result() == {"cancelled": f"child workflow {handle.children[0]!r} was cancelled: out of stock"}


def test_cancelling_a_parent_cancels_its_children_and_theirs():
    handle = client.start("children.grandparent")
    assert handle.refresh().state == "paused"
    (middle,) = handle.children
    grandchildren = client.get(middle).children
    assert len(grandchildren) == 2
    client.cancel(handle.instance_id, reason="stop everything")
    states = {pk: client.get(pk).state for pk in [handle.instance_id, middle, *grandchildren]}
    assert set(states.values()) == {"cancelled"}, states
    assert "stop everything" not in client.get(middle).instance.cancel_reason
    assert handle.instance_id in client.get(middle).instance.cancel_reason


def test_a_completed_parent_leaves_its_children_running():
    handle = client.start("children.leaves_running")
    child_id = handle.refresh().result()
    assert client.get(child_id).state == "paused"


def test_a_parent_past_its_deadline_fails_and_cancels_its_children():
    handle = client.start("children.deadline")
    assert handle.refresh().state == "paused"
    WorkflowInstance.objects.filter(pk=handle.instance_id).update(deadline_at=timezone.now() - timedelta(seconds=1))
    fire_alarms()
    assert handle.refresh().error["type"] == "WorkflowTimeout"
    assert {client.get(pk).state for pk in handle.children} == {"cancelled"}


@pytest.mark.parametrize("how, error", [
    ("unknown", "UnknownWorkflow"), ("arguments", "TypeError"), ("not-mine", "ValueError"),
])
def test_bad_children_are_errors_in_the_workflow_and_store_no_child(how, error):
    outcome = client.start("children.bad", how).refresh().result()
    assert outcome.startswith(error)
    if how == "not-mine":
        assert "'not-a-child'" in outcome
    assert not WorkflowInstance.objects.filter(parent__isnull=False).exists()
    assert RAN[f"bad-{how}"] == 1


def test_async_parents_start_and_wait_for_children():
    assert client.start("children.async", 2).refresh().result() == 4 + 9


def test_a_child_with_a_given_id():
    handle = client.start("children.named", "my-child")
    assert handle.refresh().result() == 25
    assert client.get("my-child").parent_id == handle.instance_id
    other = client.start("children.named", "my-child")
    failed = other.refresh()
    assert failed.state == "failed" and failed.error["type"] == "WorkflowIdConflict"


def test_a_lost_wake_up_is_made_good_by_recover():
    handle = client.start("children.wait_nappers", 1)
    (child_id,) = handle.refresh().children
    # The child finishes, but its process dies before it tells the parent: its final move
    # (a while ago) left the flag that says so.
    WorkflowInstance.objects.filter(pk=child_id).update(
        state="completed", result="0", family_pending=True, finished_at=timezone.now() - timedelta(seconds=30))
    assert handle.refresh().state == "paused"
    recover()
    assert handle.refresh().result() == [0]


def test_api_and_admin_show_the_family(admin_client):
    handle = client.start("children.fan", [2])
    (child_id,) = handle.refresh().children
    api = APIClient()
    api.force_login(staff_user("ops"))
    parent_json = api.get(f"/api/workflows/instances/{handle.instance_id}/").json()
    assert parent_json["parent"] is None and parent_json["children"] == [child_id]
    assert api.get(f"/api/workflows/instances/{child_id}/").json()["parent"] == handle.instance_id
    page = admin_client.get(reverse("admin:durable_workflows_workflowinstance_change", args=[child_id])).content.decode()
    assert f">{handle.instance_id}</a>" in page
    page = admin_client.get(reverse("admin:durable_workflows_workflowinstance_change", args=[handle.instance_id])).content.decode()
    assert f">{child_id}</a>" in page
    changelist = reverse("admin:durable_workflows_workflowinstance_changelist")
    children_only = admin_client.get(changelist + "?has_parent=yes").content.decode()
    assert child_id in children_only and f">{handle.instance_id}<" not in children_only


def test_a_parent_with_more_children_than_its_page_lists_links_to_all_of_them(admin_client, monkeypatch):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from durable_workflows.admin import instance

    monkeypatch.setattr(instance, "CHILDREN_SHOWN", 2)
    handle = client.start("children.fan", [1, 2, 3], instance_id="fan&x=1#a+b%2")  # an id a URL must encode
    children = handle.refresh().children
    with CaptureQueriesContext(connection) as captured:
        page = admin_client.get(reverse("admin:durable_workflows_workflowinstance_change",
                                        args=[handle.instance_id])).content.decode()
    assert f">{html.escape(children[1])}</a>" in page and f">{html.escape(children[2])}</a>" not in page
    assert "all 3 children</a> (the first 2 are shown)" in page
    reads = [q for q in captured.captured_queries if '"parent_position" ASC' in q["sql"]]
    assert len(reads) == 1, "the children are read in one query"
    (link,) = re.findall(r'<a href="([^"]+)">all 3 children</a>', page)
    listed = admin_client.get(html.unescape(link))
    listing = listed.content.decode()
    assert listed.status_code == 200 and all(html.escape(child) in listing for child in children)
    assert f">{html.escape(handle.instance_id)}<" not in listing


def test_child_handle_is_public():
    assert ChildHandle("x").instance_id == "x"


class BeforeThePause:
    """An execute wrapper that, just before `instance_id`'s move to Paused is written, runs
    `action` to its end in another thread (with a connection of its own): what arrives
    while a run is pausing."""

    def __init__(self, instance_id: str, action) -> None:
        self.instance_id = instance_id
        self.action = action
        self.ran = False

    def __call__(self, execute, sql, params, many, context):
        values = [str(p) for p in (params or [])]
        if (not self.ran and sql.lstrip().upper().startswith("UPDATE") and "workflowinstance" in sql
                and "paused" in values and self.instance_id in values):
            self.ran = True
            in_thread(self.action).join(30)
        return execute(sql, params, many, context)


@pytest.mark.requires_postgres
def test_a_child_that_finishes_while_its_parent_pauses_still_wakes_it():
    race = BeforeThePause("race-parent", lambda: fire_alarm_now("race-parent.0"))
    with connection.execute_wrapper(race):
        handle = client.start("children.start_step_wait", instance_id="race-parent")
    assert race.ran and client.get("race-parent.0").state == "completed"
    assert handle.refresh().state == "paused"  # it paused, with its wait's alarm due at once
    fire_alarms()
    assert handle.refresh().result() == 0


@pytest.mark.requires_postgres
def test_an_event_sent_while_the_run_pauses_still_resumes_it():
    race = BeforeThePause("race-receiver", lambda: send_event("race-receiver", "ping", "pong"))
    with connection.execute_wrapper(race):
        handle = client.start("events.receiver", instance_id="race-receiver")
    assert race.ran and handle.refresh().state == "paused"
    fire_alarms()
    assert handle.refresh().result() == "pong"


def test_a_lost_cancel_cascade_is_made_good_by_recover():
    handle = client.start("children.wait_nappers", 2)
    kids = handle.refresh().children
    # The parent is cancelled, and its process dies before it cancels the children.
    WorkflowInstance.objects.filter(pk=handle.instance_id).update(
        state="cancelled", family_pending=True, finished_at=timezone.now() - timedelta(seconds=30))
    assert {client.get(pk).state for pk in kids} == {"paused"}
    recover()
    assert {client.get(pk).state for pk in kids} == {"cancelled"}
    assert not WorkflowInstance.objects.get(pk=handle.instance_id).family_pending


def test_children_are_inserted_in_one_commit_with_the_records_of_their_starts():
    from durable_workflows.engine import execute
    from tests.faults import FailNthWrite
    from tests.test_engine_faults import queued, recover_until_finished

    parent = queued("children.fan", [2, 3, 4])
    fault = FailNthWrite(1, touching="steprecord")  # the pause: the start records and the wait
    with connection.execute_wrapper(fault):
        assert execute(parent.instance_id, "fresh", parent.instance.epoch) is None
    assert fault.failed_sql is not None
    assert not WorkflowInstance.objects.filter(parent_id=parent.instance_id).exists()
    done = recover_until_finished(parent.instance_id)
    assert done.result() == [4, 9, 16]
    assert done.children == [f"{parent.instance_id}.{i}" for i in range(3)]
    assert (RAN["square-2"], RAN["square-3"], RAN["square-4"]) == (1, 1, 1)


def test_a_run_that_fails_leaves_the_children_it_just_started_cancelled_never_run():
    handle = client.start("children.start_then_fail").refresh()
    assert handle.state == "failed"
    (kid,) = handle.children
    child = client.get(kid)
    assert child.state == "cancelled" and "failed" in child.instance.cancel_reason
    assert RAN["square-5"] == 0
