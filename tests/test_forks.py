"""`client.fork` (DESIGN §10): repair a failed instance once the fix is deployed."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.urls import reverse
from rest_framework.test import APIClient

from durable_workflows import (
    InvalidTransition,
    WorkflowIdConflict,
    WorkflowNotFound,
    client,
    workflow,
)
from durable_workflows.models import StepRecord, WorkflowInstance
from tests.testapp.fault_workflows import RAN
from tests.testapp.patch_workflows import FIXED

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def broken():
    FIXED["yes"] = False
    yield
    FIXED["yes"] = False


@pytest.fixture
def failed():
    handle = client.start("repair.flow", "A-1").refresh()
    assert handle.state == "failed" and handle.error["type"] == "ValueError"
    return handle


def test_a_fork_after_the_fix_completes_without_running_the_copied_steps_again(failed):
    FIXED["yes"] = True
    ran = dict(RAN)
    fork = client.fork(failed.instance_id).refresh()
    assert fork.state == "completed", fork.error
    assert fork.result() == "charged A-1, 36, ['r-left', 'r-right'], shipped A-1"
    assert fork.forked_from == failed.instance_id and fork.workflow == "repair.flow"
    # Only the failed step ran again; the charge, the child and the branches were copied.
    assert {k: RAN[k] - ran.get(k, 0) for k in ("r-charge", "square-6", "r-left", "r-right", "r-buggy")} == {
        "r-charge": 0, "square-6": 0, "r-left": 0, "r-right": 0, "r-buggy": 1}
    assert client.get(failed.instance_id).state == "failed"  # the original stays as it was
    assert fork.children == []  # it waited for the original's child, copied with its record


def test_fork_from_a_position_runs_the_rest_again(failed):
    FIXED["yes"] = True
    ran = dict(RAN)
    fork = client.fork(failed.instance_id, from_position=1, new_id="repair-from-1").refresh()
    assert fork.instance_id == "repair-from-1" and fork.state == "completed", fork.error
    assert RAN["r-charge"] == ran["r-charge"] and RAN["r-left"] == ran["r-left"] + 1
    assert [(s.branch, s.position) for s in fork.steps][:1] == [("", 0)]


def test_bad_forks_are_refused_and_create_nothing(failed):
    before = WorkflowInstance.objects.count(), StepRecord.objects.count()
    with pytest.raises(WorkflowNotFound):
        client.fork("no-such-instance")
    with pytest.raises(ValueError, match="from_position must be between 0 and 5"):
        client.fork(failed.instance_id, from_position=6)
    with pytest.raises(ValueError, match="got -1"):
        client.fork(failed.instance_id, from_position=-1)
    with pytest.raises(WorkflowIdConflict):
        client.fork(failed.instance_id, new_id=failed.instance_id)
    assert (WorkflowInstance.objects.count(), StepRecord.objects.count()) == before


def test_fork_through_the_api_and_the_command(failed):
    FIXED["yes"] = True
    api = APIClient()
    api.force_authenticate(User.objects.create_superuser("ops", "ops@example.com", "pw"))
    url = reverse("durable_workflows_api:instance-fork", args=[failed.instance_id])
    response = api.post(url, {"new_id": "from-api"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["id"] == "from-api" and response.json()["forked_from"] == failed.instance_id
    assert api.post(url, {"new_id": "from-api"}, format="json").status_code == 409
    assert api.post(url, {"from_position": 99}, format="json").status_code == 400
    missing = reverse("durable_workflows_api:instance-fork", args=["nope"])
    assert api.post(missing, {}, format="json").status_code == 404
    call_command("durable_workflows", "fork", failed.instance_id, "--from", "0", "--id", "from-command")
    assert client.get("from-command").state == "completed"
    with pytest.raises(CommandError, match="from_position must be between"):
        call_command("durable_workflows", "fork", failed.instance_id, "--from", "9")


def test_fork_from_the_admin_page_and_the_list_action(failed, admin_client):
    FIXED["yes"] = True
    page = reverse("admin:durable_workflows_workflowinstance_change", args=[failed.instance_id])
    assert 'id="dw-fork"' in admin_client.get(page).content.decode()
    response = admin_client.post(
        reverse("admin:durable_workflows_workflowinstance_fork", args=[failed.instance_id]), follow=True)
    forked = WorkflowInstance.objects.get(forked_from=failed.instance_id)
    assert forked.state == "completed"
    text = response.content.decode()
    assert f"Forked {failed.instance_id} as {forked.pk}; it is Completed now." in text
    assert "forked from" in text.lower()  # the fork's page links back
    listing = reverse("admin:durable_workflows_workflowinstance_changelist")
    admin_client.post(listing, {"action": "fork_selected", "_selected_action": [failed.instance_id]})
    assert WorkflowInstance.objects.filter(forked_from=failed.instance_id).count() == 2


def test_an_instance_the_code_deployed_now_cannot_call_is_not_forked(admin_client):
    # Stored before a deploy that changed the workflow's arguments.
    WorkflowInstance.objects.create(id="old-args", workflow="tests.greet", state="failed",
                                    input='{"args": ["Ada", "!", "Lovelace"], "kwargs": {}}')
    with pytest.raises(TypeError, match="workflow 'tests.greet' cannot take these arguments"):
        client.fork("old-args")
    api = APIClient()
    api.force_authenticate(User.objects.create_superuser("ops", "ops@example.com", "pw"))
    response = api.post(reverse("durable_workflows_api:instance-fork", args=["old-args"]), {}, format="json")
    assert response.status_code == 409 and "cannot take these arguments" in response.json()["detail"]
    with pytest.raises(CommandError, match="cannot take these arguments"):
        call_command("durable_workflows", "fork", "old-args")
    response = admin_client.post(reverse("admin:durable_workflows_workflowinstance_fork", args=["old-args"]),
                                 follow=True)
    assert "Not forked: workflow &#x27;tests.greet&#x27; cannot take these arguments" in response.content.decode()
    assert list(WorkflowInstance.objects.values_list("pk", flat=True)) == ["old-args"]


def test_an_unfinished_instance_is_not_forked(admin_client):
    paused = client.start("tests.nap", "1h")
    assert paused.refresh().state == "paused"
    before = WorkflowInstance.objects.count()
    with pytest.raises(InvalidTransition, match=r"cannot fork instance .*: it is Paused, not finished; cancel it first"):
        client.fork(paused.instance_id)
    api = APIClient()
    api.force_authenticate(User.objects.create_superuser("ops", "ops@example.com", "pw"))
    response = api.post(reverse("durable_workflows_api:instance-fork", args=[paused.instance_id]), {}, format="json")
    assert response.status_code == 409 and "cancel it first" in response.json()["detail"]
    with pytest.raises(CommandError, match="cancel it first"):
        call_command("durable_workflows", "fork", paused.instance_id)
    assert WorkflowInstance.objects.count() == before
    client.cancel(paused.instance_id)
    assert client.fork(paused.instance_id).refresh().state == "paused"  # finished now: it may be forked


#: The code deployed: version 1 leaves its child running, version 2 waits for it.
DEPLOYED = {"version": 1}


@workflow("forks.child")
def forks_child(wf):
    return {"answer": wf.wait_for_event("go")}


@workflow("forks.parent")
def forks_parent(wf):
    child = wf.start_child("forks.child")
    if DEPLOYED["version"] == 1:
        return "left it running"
    return wf.wait_child(child)


def test_forks_however_deep_wait_for_the_child_their_copied_records_started_and_are_woken_by_it():
    DEPLOYED["version"] = 1
    try:
        original = client.start("forks.parent").refresh()
        assert original.result() == "left it running"
        (child_id,) = original.children
        DEPLOYED["version"] = 2
        first = client.fork(original.instance_id, from_position=1).refresh()
        assert first.state == "paused"  # waiting for the original's child
        client.cancel(first.instance_id)
        assert client.get(child_id).state == "paused"  # not the fork's child: not cancelled with it
        second = client.fork(first.instance_id, from_position=1).refresh()
        assert second.state == "paused", second.error
        assert client.send_event(child_id, "go", 42)
        assert client.get(child_id).result() == {"answer": 42}
        assert second.refresh().result() == {"answer": 42}  # woken by the child's end
        third = client.fork(second.instance_id, from_position=1).refresh()
        assert third.result() == {"answer": 42}, third.error  # three forks deep, the child finished
    finally:
        DEPLOYED["version"] = 1
