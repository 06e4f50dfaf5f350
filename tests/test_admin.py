"""The admin: a read-only list and instance page, and actions that change state only through
the engine, each refusal reported as a message."""

from __future__ import annotations

import re
import threading
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import Permission
from django.db import connection, connections
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from durable_workflows import client, fire_alarms, start, workflow
from durable_workflows.admin.badges import STATE_BADGES, STEP_STATE_BADGES
from durable_workflows.admin.display import alarm_text, humanize_seconds, pretty_input
from durable_workflows.engine import execute
from durable_workflows.models import Alarm, StepState, WorkflowInstance
from durable_workflows.states import State
from tests.helpers import wait_until
from tests.testapp import admin_workflows
from tests.testapp.admin_workflows import ENTERED, GATE

pytestmark = pytest.mark.django_db(transaction=True)

LIST_URL = reverse("admin:durable_workflows_workflowinstance_changelist")
NO_DISPATCH = {"DISPATCHER": "tests.testapp.admin_workflows.NoDispatch"}


def page_url(instance_id: str) -> str:
    return reverse("admin:durable_workflows_workflowinstance_change", args=[instance_id])


def operation_url(instance_id: str, name: str) -> str:
    return reverse(f"admin:durable_workflows_workflowinstance_{name}", args=[instance_id])


def run_action(client_, action: str, *ids: str, follow: bool = True):
    return client_.post(
        LIST_URL, {"action": action, "_selected_action": list(ids), "index": 0}, follow=follow
    )


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def state_of(instance_id: str) -> str:
    return WorkflowInstance.objects.get(pk=instance_id).state


@pytest.fixture
def staff_viewer(django_user_model):
    """A staff user who may look at instances but not act on them."""
    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_workflowinstance"))
    return user


@pytest.fixture(autouse=True)
def _gate():
    GATE.clear()
    ENTERED.clear()
    yield
    GATE.set()


# -- guards and wording ---------------------------------------------------------------------------

def test_every_state_has_a_badge():
    assert set(STATE_BADGES) == set(State)
    assert set(STEP_STATE_BADGES) == set(StepState)


@pytest.mark.parametrize("seconds, text", [
    (3 * 3600 + 12 * 60, "3 h 12 min"),
    (3 * 3600 + 12 * 60 + 40, "3 h 12 min"),
    (3 * 3600, "3 h"),
    (2 * 86400 + 4 * 3600 + 5, "2 d 4 h"),
    (45, "45 s"),
    (61, "1 min 1 s"),
    (2.5, "2.5 s"),
    (0.85, "850 ms"),
])
def test_durations_read_in_two_units_at_most(seconds, text):
    assert humanize_seconds(seconds) == text


def test_a_pending_alarm_reads_as_when_it_resumes():
    now = timezone.now()
    fire_at = now + timedelta(hours=3, minutes=12, seconds=5)
    assert alarm_text(fire_at, None, "Sleep", now) == "resumes in 3 h 12 min (sleep ends)"
    assert "waiting for the alarm dispatcher" in alarm_text(now - timedelta(seconds=3), None, "Sleep", now)


def test_input_shows_the_arguments_as_given():
    assert pretty_input('{"args":["A-1"],"kwargs":{}}') == '["A-1"]'
    assert pretty_input('{"args":[],"kwargs":{"n":1}}') == '{"n": 1}'
    assert pretty_input('{"args":["A-1"],"kwargs":{"n":1}}') == '{"args": ["A-1"], "kwargs": {"n": 1}}'
    long = pretty_input('{"args":[],"kwargs":{"note":"%s"}}' % ("x" * 90))
    assert long.startswith('{\n  "note": ')


# -- the list ---------------------------------------------------------------------------------

def test_the_list_shows_badges_and_counts_by_state_newest_first(admin_client):
    start("tests.greet", "Ada", instance_id="done-1")
    start("tests.nap", "1h", instance_id="paused-1")
    start("tests.nap", "1h", instance_id="paused-2")
    response = admin_client.get(LIST_URL)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'class="dw-badge dw-state-completed"' in html
    assert 'class="dw-badge dw-state-paused"' in html
    counts = {item["state"]: item["count"] for item in response.context["state_counts"]}
    assert counts[State.PAUSED] == 2 and counts[State.COMPLETED] == 1 and counts[State.FAILED] == 0
    assert set(counts) == set(State)
    shown = [row.pk for row in response.context["cl"].result_list]
    assert shown == ["paused-2", "paused-1", "done-1"]
    assert "in 59 min (sleep)" in html or "in 1 h (sleep)" in html


def test_the_list_filters_by_state_workflow_and_created(admin_client):
    start("tests.greet", "Ada", instance_id="greet-1")
    start("tests.nap", "1h", instance_id="nap-1")
    WorkflowInstance.objects.filter(pk="greet-1").update(created_at=timezone.now() - timedelta(days=30))

    def shown(query: str) -> list[str]:
        response = admin_client.get(LIST_URL + query)
        assert response.status_code == 200, query
        return [row.pk for row in response.context["cl"].result_list]

    assert shown("?state__exact=paused") == ["nap-1"]
    assert shown("?state__exact=completed") == ["greet-1"]
    assert shown("?workflow=tests.greet") == ["greet-1"]
    since = (timezone.now() - timedelta(days=7)).replace(microsecond=0)
    assert shown("?" + urlencode({"created_at__gte": str(since)})) == ["nap-1"]


def test_search_finds_by_the_start_of_an_id_or_a_workflow(admin_client):
    start("tests.greet", "Ada", instance_id="order-1001")
    start("tests.nap", "1h", instance_id="report-7")

    def found(term: str) -> list[str]:
        response = admin_client.get(LIST_URL, {"q": term})
        return sorted(row.pk for row in response.context["cl"].result_list)

    assert found("order-1001") == ["order-1001"]
    assert found("order-") == ["order-1001"]
    assert found("tests.nap") == ["report-7"]
    assert found("tests.") == ["order-1001", "report-7"]
    assert found("nothing-like-it") == []


def test_the_list_costs_the_same_queries_for_many_rows_as_for_few(admin_client):
    for i in range(3):
        start("tests.nap", "1h", instance_id=f"few-{i}")
    with CaptureQueriesContext(connection) as few:
        assert admin_client.get(LIST_URL).status_code == 200
    for i in range(40):
        start("tests.nap", "1h", instance_id=f"many-{i}")
    with CaptureQueriesContext(connection) as many:
        assert admin_client.get(LIST_URL).status_code == 200
    assert len(many.captured_queries) == len(few.captured_queries)
    listing = [q["sql"] for q in many.captured_queries if '"durable_workflows_alarm"' in q["sql"]]
    assert listing, "the alarm is read with the list, in one join"
    assert all('"input"' not in sql and '"error_traceback"' not in sql for sql in listing)


# -- the instance page --------------------------------------------------------------------------

def test_the_page_of_a_paused_instance_shows_input_alarm_and_timeline(admin_client):
    start("tests.nap", "3h", instance_id="nap-page")
    Alarm.objects.filter(instance_id="nap-page").update(
        fire_at=timezone.now() + timedelta(hours=3, minutes=12, seconds=30)
    )
    response = admin_client.get(page_url("nap-page"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "resumes in 3 h 12 min" in html
    assert "&quot;3h&quot;" in html  # the input
    steps = response.context["dw_steps"]
    assert [(s.position, s.name, s.kind) for s in steps] == [(0, "Before", "Step"), (1, "sleep", "Sleep")]
    assert steps[0].attempts == 1 and steps[0].result == "1"
    assert "Sleeping" in str(steps[1].badge) and steps[1].note.startswith("wakes in")
    assert [e.kind for e in response.context["dw_events"]][:2] == ["workflow.queued", "workflow.started"]
    assert 'id="dw-resume"' in html and 'id="dw-cancel"' in html and 'id="dw-recover"' not in html


def test_the_page_of_a_failed_instance_shows_the_error_and_its_traceback(admin_client):
    handle = start("admin.charge", "A-7", instance_id="failed-1")
    assert handle.state == State.FAILED
    html = admin_client.get(page_url("failed-1")).content.decode()
    assert "ValueError" in html and "card declined for order A-7" in html
    assert "Traceback (most recent call last)" in html
    assert "decline_card" in html
    assert 'id="dw-cancel"' not in html and 'id="dw-resume"' not in html


def test_the_page_of_a_completed_instance_shows_its_result(admin_client):
    start("tests.three_steps", 1, instance_id="done-2")
    response = admin_client.get(page_url("done-2"))
    html = response.content.decode()
    assert [s.result for s in response.context["dw_steps"]] == ["2", "3", "4"]
    assert '<pre class="dw-value">4</pre>' in html


def test_a_long_instance_shows_its_latest_steps(admin_client, monkeypatch):
    from durable_workflows.admin import timeline

    monkeypatch.setattr(timeline, "MAX_STEPS", 5)
    monkeypatch.setattr(timeline, "MAX_BARS", 3)
    start("engine.loop", 12, instance_id="long-loop")
    page = admin_client.get(reverse("admin:durable_workflows_workflowinstance_change", args=["long-loop"]))
    text = page.content.decode()
    assert "Showing the latest 5 of 12 steps." in text
    assert "The bars show the latest 3 of 12 steps." in text
    positions = [int(p) for p in re.findall(r"<tr class=\"dw-step\">\s*<td>(\d+)</td>", text)]
    assert positions == [7, 8, 9, 10, 11], positions


def test_a_huge_result_is_cut_on_the_page(admin_client):
    from durable_workflows.admin.display import LONG_VALUE_CHARS

    WorkflowInstance.objects.create(id="huge", workflow="tests.greet", state="completed",
                                    input='{"args": ["Ada"], "kwargs": {}}', result='"' + "x" * 300_000 + '"')
    text = admin_client.get(reverse("admin:durable_workflows_workflowinstance_change", args=["huge"])).content.decode()
    assert f"… ({300_002 - LONG_VALUE_CHARS:,} more characters)" in text
    assert len(text) < 100_000


def test_ids_with_slashes_and_spaces_open_and_act(admin_client):
    start("tests.nap", "1h", instance_id="tenant/42 order")
    assert admin_client.get(page_url("tenant/42 order")).status_code == 200
    admin_client.post(operation_url("tenant/42 order", "cancel"))
    assert state_of("tenant/42 order") == "cancelled"


# -- nothing is editable by hand -----------------------------------------------------------------

def test_no_add_no_edit_no_delete(admin_client):
    start("tests.nap", "1h", instance_id="locked")
    assert admin_client.get(reverse("admin:durable_workflows_workflowinstance_add")).status_code == 403
    page = admin_client.get(page_url("locked"))
    assert 'name="_save"' not in page.content.decode()
    form = page.content.decode().split('id="workflowinstance_form"')[1].split("</form>")[0]
    fields = re.findall(r"<(?:input|textarea|select)\b[^>]*>", form)
    assert [f for f in fields if "csrfmiddlewaretoken" not in f] == []
    admin_client.post(page_url("locked"), {"state": "completed", "workflow": "x"})
    assert state_of("locked") == "paused"
    delete = reverse("admin:durable_workflows_workflowinstance_delete", args=["locked"])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    response = admin_client.get(LIST_URL)
    assert "delete_selected" not in response.content.decode()
    assert WorkflowInstance.objects.filter(pk="locked").exists()


def test_operations_refuse_get(admin_client):
    start("tests.nap", "1h", instance_id="get-me")
    assert admin_client.get(operation_url("get-me", "cancel")).status_code == 405
    assert state_of("get-me") == "paused"


# -- actions ----------------------------------------------------------------------------------

def test_cancel_action_cancels_a_paused_instance_and_reports_a_finished_one(admin_client):
    start("tests.nap", "1h", instance_id="to-cancel")
    start("tests.greet", "Ada", instance_id="finished")
    response = run_action(admin_client, "cancel_selected", "to-cancel", "finished")
    assert response.status_code == 200
    assert state_of("to-cancel") == "cancelled" and state_of("finished") == "completed"
    assert not Alarm.objects.filter(instance_id="to-cancel").exists()
    text = messages_of(response)
    assert "Cancelled to-cancel." in text
    assert any(m.startswith("Not cancelled:") and "finished" in m and "Completed" in m for m in text)
    assert WorkflowInstance.objects.get(pk="to-cancel").cancel_reason == "cancelled in the admin by admin"


def test_cancel_from_the_page_keeps_the_reason(admin_client):
    start("tests.nap", "1h", instance_id="with-reason")
    response = admin_client.post(operation_url("with-reason", "cancel"), {"reason": "customer asked"}, follow=True)
    assert response.redirect_chain[-1][0] == page_url("with-reason")
    instance = WorkflowInstance.objects.get(pk="with-reason")
    assert instance.state == "cancelled" and instance.cancel_reason == "customer asked"
    assert "Cancelled with-reason." in messages_of(response)


def test_cancel_of_a_finished_instance_from_the_page_is_a_message_not_an_error(admin_client):
    start("tests.greet", "Ada", instance_id="over")
    response = admin_client.post(operation_url("over", "cancel"), follow=True)
    assert response.status_code == 200
    assert any("already Completed" in m for m in messages_of(response))
    assert state_of("over") == "completed"


@pytest.mark.parametrize("codename", ["change_workflowinstance", "cancel_workflowinstance"])
def test_cancel_needs_the_change_or_the_cancel_permission(client, staff_viewer, codename):
    start("tests.nap", "1h", instance_id="guarded")
    client.force_login(staff_viewer)
    listing = client.get(LIST_URL)
    assert listing.status_code == 200
    assert "cancel_selected" not in listing.content.decode()
    run_action(client, "cancel_selected", "guarded")
    assert client.post(operation_url("guarded", "cancel")).status_code == 403
    assert 'id="dw-cancel"' not in client.get(page_url("guarded")).content.decode()
    assert state_of("guarded") == "paused"
    staff_viewer.user_permissions.add(Permission.objects.get(codename=codename))
    run_action(client, "cancel_selected", "guarded")
    assert state_of("guarded") == "cancelled"


def test_resume_now_ends_a_sleep_early(admin_client):
    start("tests.nap", "1h", instance_id="sleeper")
    start("tests.greet", "Ada", instance_id="awake")
    response = run_action(admin_client, "resume_selected", "sleeper", "awake")
    assert state_of("sleeper") == "completed"
    assert client.get("sleeper").result() == "rested"
    text = messages_of(response)
    assert "Resumed sleeper; it is Completed now." in text
    assert any("instance awake is Completed: only a Paused instance can be resumed." in m for m in text)


def test_resume_now_from_the_page(admin_client):
    # `delay` is the workflow's own parameter here, not start()'s option: start_with passes it.
    client.start_with("tests.flaky", [], {"failures": 1, "max_attempts": 3, "delay": "1h"}, "retrying")
    assert state_of("retrying") == "paused"
    admin_client.post(operation_url("retrying", "resume"))
    assert state_of("retrying") == "completed"


@workflow("tests.admin.two_naps")
def two_naps(wf) -> str:
    wf.sleep("1h", name="First nap")
    wf.sleep("1h", name="Second nap")
    return "rested twice"


def _fire_first(instance_id: str) -> None:
    """What the ticker does when the alarm comes due: fire it and resume the instance."""
    Alarm.objects.filter(instance_id=instance_id).update(fire_at=timezone.now() - timedelta(seconds=1))
    assert fire_alarms(instance_id=instance_id) == [instance_id]


def test_resume_now_after_the_ticker_fired_the_alarm_says_it_resumed(admin_client):
    start("tests.admin.two_naps", instance_id="twice")
    page = admin_client.get(page_url("twice")).content.decode()
    form = page[page.index(f'action="{operation_url("twice", "resume")}"'):]
    epoch = re.search(r'name="epoch" value="(\d+)"', form[:form.index("</form>")]).group(1)
    _fire_first("twice")  # the page still shows the first nap
    second = Alarm.objects.get(instance_id="twice")
    response = admin_client.post(operation_url("twice", "resume"), {"epoch": epoch}, follow=True)
    assert [(m.level_tag, str(m)) for m in response.context["messages"]] == [
        ("success", "Resumed twice already: its alarm fired first. It is Paused now.")]
    assert state_of("twice") == "paused"  # the second nap was not cut short
    assert Alarm.objects.get(instance_id="twice").fire_at == second.fire_at
    admin_client.post(operation_url("twice", "resume"), {"epoch": str(int(epoch) + 1)})
    assert client.get("twice").result() == "rested twice"


def test_resume_now_of_an_alarm_fired_but_not_yet_taken_is_under_way(admin_client):
    start("tests.nap", "1h", instance_id="fired")
    with override_settings(DURABLE_WORKFLOWS=NO_DISPATCH):  # the resume is lost on its way
        _fire_first("fired")
    assert state_of("fired") == "paused"
    epoch = WorkflowInstance.objects.get(pk="fired").epoch
    response = admin_client.post(operation_url("fired", "resume"), {"epoch": epoch}, follow=True)
    assert [m.level_tag for m in response.context["messages"]] == ["success"]
    assert state_of("fired") == "completed"


def test_resume_and_recover_need_the_change_permission(client, staff_viewer):
    start("tests.nap", "1h", instance_id="napping")
    client.force_login(staff_viewer)
    assert client.post(operation_url("napping", "resume")).status_code == 403
    run_action(client, "resume_selected", "napping")
    assert state_of("napping") == "paused"


def _stale_running(instance_id: str) -> threading.Thread:
    """An instance whose worker stopped answering inside a step: Running, lease expired."""
    with override_settings(DURABLE_WORKFLOWS=NO_DISPATCH):
        start("admin.gated", instance_id=instance_id)
    def run() -> None:
        try:
            execute(instance_id, "fresh")
        finally:
            connections.close_all()

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    wait_until(lambda: ENTERED["gate"] == 1, message="the step to start")
    WorkflowInstance.objects.filter(pk=instance_id).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    return worker


def test_recover_takes_over_a_stale_running_instance(admin_client):
    worker = _stale_running("stale")
    try:
        page = admin_client.get(page_url("stale")).content.decode()
        assert 'id="dw-recover"' in page and "Running" in page
        response = run_action(admin_client, "recover_selected", "stale")
        assert "Recovering stale: it has been handed to a worker." in messages_of(response)
        assert state_of("stale") == "completed"
        assert client.get("stale").result() == "through"
    finally:
        GATE.set()
        worker.join(10)
    assert state_of("stale") == "completed"


def test_recover_refuses_a_live_or_finished_instance(admin_client):
    worker = _stale_running("live")
    try:
        WorkflowInstance.objects.filter(pk="live").update(
            lease_expires_at=timezone.now() + timedelta(seconds=30)
        )
        start("tests.greet", "Ada", instance_id="ended")
        response = run_action(admin_client, "recover_selected", "live", "ended")
        text = messages_of(response)
        assert any("instance live is not stale" in m for m in text)
        assert any("instance ended is Completed: only a Running instance can be recovered." in m for m in text)
        assert WorkflowInstance.objects.get(pk="live").epoch == 1
    finally:
        GATE.set()
        worker.join(10)
    assert state_of("live") == "completed"


@pytest.mark.parametrize("operation", ["cancel", "resume", "recover", "fork"])
def test_a_missing_instance_is_one_message_on_the_list(admin_client, operation):
    response = admin_client.post(operation_url("no-such-id", operation), follow=True)
    assert response.status_code == 200 and response.redirect_chain[-1][0] == LIST_URL
    assert [m for m in messages_of(response)] == ["no workflow instance with id 'no-such-id'"]


def test_anonymous_and_non_staff_users_are_sent_to_the_login(client, django_user_model):
    start("tests.nap", "1h", instance_id="private")
    for url in (LIST_URL, page_url("private")):
        assert client.get(url).status_code == 302
    assert client.post(operation_url("private", "cancel")).status_code == 302
    user = django_user_model.objects.create_user("customer", password="pw")
    client.force_login(user)
    assert client.get(LIST_URL).status_code == 302
    assert state_of("private") == "paused"


def test_admin_module_is_the_registered_admin():
    from django.contrib import admin

    from durable_workflows.admin import WorkflowInstanceAdmin

    assert isinstance(admin.site._registry[WorkflowInstance], WorkflowInstanceAdmin)
    assert admin_workflows.charge.workflow_name == "admin.charge"
