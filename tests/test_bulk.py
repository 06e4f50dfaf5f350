"""Bulk actions (client.bulk, the API's instances/bulk/, the admin's "select all", the
command): what they act on and skip, their counts, chunking, and bad input that changes nothing."""

import io
from datetime import datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from durable_workflows import bulk, client, start
from durable_workflows.engine.instances import create, enqueue
from durable_workflows.models import Alarm, Event, WorkflowInstance
from durable_workflows.signals import lifecycle_event
from durable_workflows.states import State
from tests.helpers import queued, staff_user

pytestmark = pytest.mark.django_db(transaction=True)

BULK_URL = "/api/workflows/instances/bulk/"
ADMIN_LIST = reverse("admin:durable_workflows_workflowinstance_changelist")


def states():
    return dict(WorkflowInstance.objects.values_list("pk", "state"))


def snapshot():
    return (sorted(WorkflowInstance.objects.values_list("pk", "state", "cancel_requested", "updated_at")),
            Event.objects.count(), Alarm.objects.count())


@pytest.fixture
def mixed():
    """Three Queued greets, one Paused nap, one Completed greet and one Failed instance."""
    for n in range(3):
        queued("tests.greet", f"q{n}", instance_id=f"queued-{n}")
    start("tests.nap", instance_id="napping")
    start("tests.greet", "done", instance_id="done")
    start("engine.no_retry", instance_id="failed")


@pytest.fixture
def chunks(monkeypatch):
    """The size of each chunk the cancel action is given, with a chunk size of 2."""
    sizes = []
    real = bulk.ACTIONS["cancel"]

    def recorded(ids, reason):
        sizes.append(len(ids))
        return real.chunk(ids, reason)

    monkeypatch.setattr(bulk, "CHUNK_SIZE", 2)
    monkeypatch.setitem(bulk.ACTIONS, "cancel", bulk.Action(real.states, recorded))
    return sizes


def test_bulk_cancel_cancels_what_matches_and_skips_the_finished(mixed):
    signalled = []

    def receiver(sender, event, instance_id, **kwargs):
        signalled.append((event, instance_id))

    lifecycle_event.connect(receiver)
    try:
        count = client.bulk("cancel", state=["queued", "paused", "completed"], reason="cleanup")
    finally:
        lifecycle_event.disconnect(receiver)
    assert count == 4
    assert states() == {"queued-0": "cancelled", "queued-1": "cancelled", "queued-2": "cancelled",
                        "napping": "cancelled", "done": "completed", "failed": "failed"}
    napping = WorkflowInstance.objects.get(pk="napping")
    assert napping.cancel_reason == "cleanup" and napping.finished_at is not None
    assert not Alarm.objects.filter(instance_id="napping").exists()
    assert Event.objects.filter(kind="workflow.cancelled").count() == 4
    assert sorted(i for e, i in signalled if e == "workflow.cancelled") == ["napping", "queued-0", "queued-1",
                                                                              "queued-2"]
    assert client.bulk("cancel", workflow="tests.greet") == 0  # all finished now
    with pytest.raises(Exception, match="cancelled: cleanup"):
        client.get("napping").result()


def test_bulk_cancel_asks_an_instance_not_yet_queued_to_stop():
    pending, _ = create("tests.greet", ("p",), {}, "pending-1")
    assert client.bulk("cancel", id_prefix="pending-") == 1
    instance = WorkflowInstance.objects.get(pk="pending-1")
    assert instance.state == "pending" and instance.cancel_requested and instance.cancel_reason == ""
    enqueue("pending-1")  # its run, on the synchronous queue, ends it
    assert client.get("pending-1").state == State.CANCELLED


def test_bulk_cancel_takes_the_family_with_it():
    parent = start("children.wait_nappers", 2, instance_id="parent")
    kids = parent.refresh().children
    assert len(kids) == 2 and all(client.get(kid).state == State.PAUSED for kid in kids)
    assert client.bulk("cancel", workflow="children.wait_nappers") == 1
    assert client.get("parent").state == State.CANCELLED
    assert all(client.get(kid).state == State.CANCELLED for kid in kids)


def test_bulk_cancel_frees_the_slots_it_held(tmp_path):
    log = str(tmp_path / "inside.log")
    first = start("limits.sync_account", "acme", log, instance_id="holder")
    second = start("limits.sync_account", "acme", log, instance_id="waiting")
    assert (client.get("holder").state, client.get("waiting").state) == (State.PAUSED, State.QUEUED)
    assert client.bulk("cancel", id_prefix="holder") == 1
    assert (first.refresh().state, second.refresh().state) == (State.CANCELLED, State.PAUSED)


def test_bulk_cancel_goes_in_chunks(mixed, chunks):
    assert client.bulk("cancel", workflow="tests.greet", id_prefix="queued") == 3
    assert chunks == [2, 1]
    chunks.clear()
    for n in range(4):
        queued("tests.greet", f"more{n}", instance_id=f"more-{n}")
    # Finished instances are not even read: only the 4 unfinished ones are chunked.
    assert client.bulk("cancel", workflow="tests.greet") == 4
    assert chunks == [2, 2]
    assert all(state == "cancelled" for pk, state in states().items() if pk.startswith(("more", "queued")))


def test_bulk_fork_forks_each_finished_instance_once(chunks):
    for n in range(3):
        start("engine.no_retry", instance_id=f"broken-{n}")
    queued("engine.no_retry", instance_id="not-yet")
    # The forks fail again at once (the dispatcher is synchronous): none is forked in turn.
    assert client.bulk("fork", workflow="engine.no_retry") == 3
    forks = WorkflowInstance.objects.filter(forked_from__isnull=False)
    assert sorted(forks.values_list("forked_from", flat=True)) == ["broken-0", "broken-1", "broken-2"]
    assert client.list(forked_from="not-yet") == []


BAD_CALLS = [
    ("destroy", {"state": "queued"}, "unknown bulk action 'destroy'"),
    ("cancel", {}, "bulk cancel needs at least one filter"),
    ("cancel", {"state": None}, "bulk cancel needs at least one filter"),
    ("cancel", {"colour": "red"}, "unknown filter 'colour'"),
    ("cancel", {"state": ["queued", "asleep"]}, "unknown state 'asleep'"),
    ("cancel", {"created_before": datetime(2030, 1, 1)}, "created_before must be an aware datetime"),
    ("fork", {"id_prefix": ""}, "id_prefix must not be empty"),
]


def test_bad_input_is_a_value_error_and_changes_nothing(mixed):
    before = snapshot()
    for action, filters, message in BAD_CALLS:
        with pytest.raises(ValueError, match=message):
            client.bulk(action, **filters)
    assert snapshot() == before


def test_bulk_takes_the_time_filters(mixed):
    WorkflowInstance.objects.filter(pk="queued-0").update(created_at=timezone.now() - timedelta(days=2))
    assert client.bulk("cancel", created_before=timezone.now() - timedelta(days=1)) == 1
    assert states()["queued-0"] == "cancelled" and states()["queued-1"] == "queued"


# -- API ---------------------------------------------------------------------------------------


def api(actions=("view", "change")):
    browser = Client()
    browser.force_login(staff_user("-".join(actions), actions=actions))
    return browser


def post(browser, body):
    return browser.post(BULK_URL, body, content_type="application/json")


def test_the_api_acts_and_answers_the_count(mixed):
    response = post(api(), {"action": "cancel", "filter": {"state": ["queued", "paused"], "workflow": "tests.greet"},
                            "reason": "by api"})
    assert response.status_code == 200, response.content
    assert response.json() == {"action": "cancel", "count": 3}
    assert WorkflowInstance.objects.get(pk="queued-1").cancel_reason == "by api"
    assert states()["napping"] == "paused"
    response = post(Client(), {"action": "cancel", "filter": {"state": "paused"}})
    assert response.status_code in (401, 403)


BAD_BODIES = [
    ({"action": "explode", "filter": {"state": "queued"}}, "action", "not a valid choice"),
    ({"action": "cancel", "filter": {}}, "filter", "needs at least one filter"),
    ({"action": "cancel", "filter": {"colour": "red"}}, "filter", "unknown filter 'colour'"),
    ({"action": "cancel", "filter": {"state": "asleep"}}, "filter", "state: unknown state 'asleep'"),
    ({"action": "cancel", "filter": {"created_after": "2026-01-01"}}, "filter", "created_after must be an aware"),
    ({"action": "cancel", "filter": {"created_after": "Tuesday"}}, "filter", "created_after must be an ISO 8601"),
    ({"action": "cancel", "filter": {"workflow": 5}}, "filter", "workflow must be text"),
    ({"action": "cancel", "filter": "all"}, "filter", "dictionary"),
]


def test_the_api_answers_400_and_changes_nothing(mixed):
    before = snapshot()
    browser = api()
    for body, field, message in BAD_BODIES:
        response = post(browser, body)
        assert response.status_code == 400, body
        assert message in " ".join(response.json()[field]), body
    assert snapshot() == before


def test_the_api_asks_the_permissions_of_each_action(mixed):
    canceller = api(("view", "cancel"))
    assert post(canceller, {"action": "fork", "filter": {"state": "failed"}}).status_code == 403
    assert post(canceller, {"action": "cancel", "filter": {"id_prefix": "queued-0"}}).json()["count"] == 1
    assert post(api(("view",)), {"action": "cancel", "filter": {"state": "queued"}}).status_code == 403
    assert states()["queued-1"] == "queued"
    # GET reads the instance whose id is "bulk", as for any other id.
    assert canceller.get(BULK_URL).status_code == 404
    queued("tests.greet", "x", instance_id="bulk")
    assert canceller.get(BULK_URL).json()["id"] == "bulk"


def test_the_schema_documents_the_bulk_operation():
    schema = api().get("/api/workflows/schema/").json()
    operation = schema["paths"]["/api/workflows/instances/bulk/"]["post"]
    assert operation["operationId"] == "workflow_instances_bulk"
    assert set(operation["responses"]) >= {"200", "400", "403"}


# -- admin and command -------------------------------------------------------------------------


def test_the_admin_select_across_action_goes_through_bulk(mixed, chunks, admin_client):
    for n in range(3):
        queued("tests.nap", instance_id=f"nap-{n}")
    response = admin_client.post(
        f"{ADMIN_LIST}?workflow=tests.greet",
        {"action": "cancel_selected", "_selected_action": ["queued-0"], "select_across": "1", "index": 0},
        follow=True)
    assert response.status_code == 200
    assert any("Cancelled 3 instances" in str(m) for m in response.context["messages"])
    assert chunks == [2, 1]
    now = states()
    assert [now[f"queued-{n}"] for n in range(3)] == ["cancelled"] * 3
    assert {now[f"nap-{n}"] for n in range(3)} == {"queued"} and now["napping"] == "paused"
    response = admin_client.post(f"{ADMIN_LIST}?state__exact=failed", {
        "action": "fork_selected", "_selected_action": ["failed"], "select_across": "1", "index": 0}, follow=True)
    assert any("Made 1 forks" in str(m) for m in response.context["messages"])
    assert client.list(forked_from="failed")


def run(*args):
    out = io.StringIO()
    call_command("durable_workflows", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_the_command_prints_the_count(mixed):
    assert run("bulk", "cancel", "--state", "queued", "--state", "paused", "--workflow", "tests.greet").strip() == (
        "cancel: 3 instances.")
    assert states()["napping"] == "paused"
    assert run("bulk", "cancel", "--created-before", "2000-01-01T00:00Z").strip() == "cancel: 0 instances."


BAD_ARGS = [
    (("bulk", "cancel"), "needs at least one filter"),
    (("bulk", "melt", "--state", "queued"), "unknown bulk action 'melt'"),
    (("bulk", "cancel", "--state", "asleep"), "--state: unknown state 'asleep'"),
    (("bulk", "cancel", "--created-before", "2026-01-01"), "--created-before: created_before must be an aware"),
]


def test_the_command_refuses_bad_input_and_changes_nothing(mixed):
    before = snapshot()
    for args, message in BAD_ARGS:
        with pytest.raises(CommandError, match=message):
            run(*args)
    assert snapshot() == before


def test_bulk_pause_holds_what_matches_and_bulk_resume_lets_it_go(mixed):
    assert client.bulk("pause", state=["queued", "paused", "completed"], reason="deploy") == 4
    held = dict(WorkflowInstance.objects.filter(held=True).values_list("pk", "held_reason"))
    assert held == {"queued-0": "deploy", "queued-1": "deploy", "queued-2": "deploy", "napping": "deploy"}
    assert client.bulk("resume", id_prefix="queued-") == 3
    assert set(WorkflowInstance.objects.filter(held=True).values_list("pk", flat=True)) == {"napping"}
    assert client.bulk("resume", id_prefix="queued-") == 0  # none of them is held now
    assert client.get("napping").held and client.get("napping").held_reason == "deploy"
