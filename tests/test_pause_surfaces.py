"""Pause and resume where operators reach them: the API, the command and the admin."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from rest_framework.test import APIClient

from durable_workflows import client
from durable_workflows.models import WorkflowInstance
from tests.helpers import staff_user
from tests.testapp.fault_workflows import RAN

pytestmark = pytest.mark.django_db(transaction=True)

BASE = "/api/workflows/instances/"
LIST_URL = reverse("admin:durable_workflows_workflowinstance_changelist")


def napping(instance_id: str = "napping") -> str:
    return client.start("pause.nap", instance_id=instance_id).instance_id


@pytest.fixture
def api():
    api_client = APIClient()
    api_client.force_login(staff_user("operator"))
    return api_client


def test_the_api_pauses_and_resumes_answering_the_instance(api):
    napping()
    paused = api.post(f"{BASE}napping/pause/", {"reason": "audit"}, format="json")
    assert paused.status_code == 200
    assert (paused.json()["held"], paused.json()["held_reason"], paused.json()["state"]) == (True, "audit", "paused")
    assert "steps" in paused.json()
    listed = api.get(BASE).json()["results"][0]
    assert (listed["id"], listed["held"], listed["held_reason"]) == ("napping", True, "audit")
    resumed = api.post(f"{BASE}napping/resume/")
    assert resumed.status_code == 200 and resumed.json()["held"] is False
    assert api.post(f"{BASE}napping/resume/").status_code == 200  # not held: nothing to do


def test_the_api_answers_404_for_an_unknown_id_and_409_for_a_finished_one(api):
    for operation in ("pause", "resume"):
        response = api.post(f"{BASE}nope/{operation}/", {}, format="json")
        assert response.status_code == 404 and "nope" in response.json()["detail"]
    client.start("pause.queued", instance_id="done")
    response = api.post(f"{BASE}done/pause/", {"reason": "late"}, format="json")
    assert response.status_code == 409
    assert response.json() == {"detail": "cannot pause instance 'done': it is already Completed",
                                "state": "completed"}
    assert not WorkflowInstance.objects.get(pk="done").held


def test_the_api_refuses_a_bad_reason_and_a_user_without_the_permission(api):
    napping()
    assert api.post(f"{BASE}napping/pause/", {"reason": ["a"]}, format="json").status_code == 400
    reader = APIClient()
    reader.force_login(staff_user("reader", actions=("view",)))
    assert reader.post(f"{BASE}napping/pause/", {}, format="json").status_code == 403
    assert not WorkflowInstance.objects.get(pk="napping").held


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("durable_workflows", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_the_commands_pause_show_and_resume():
    napping()
    assert run("pause", "napping", "--reason", "audit").strip() == (
        "Paused napping (Paused): nothing runs it until `resume`.")
    assert "Held      audit (until `resume`)" in run("show", "napping")
    assert run("resume", "napping").strip() == "Resumed napping; it is Paused now."
    assert "not paused by an operator" in run("resume", "napping")
    with pytest.raises(CommandError, match="no workflow instance with id 'nope'"):
        run("pause", "nope")
    client.start("pause.queued", instance_id="done")
    with pytest.raises(CommandError, match="already Completed"):
        run("pause", "done")


def test_the_admin_actions_pause_and_resume_the_selected(admin_client):
    ids = [napping("one"), napping("two")]
    response = admin_client.post(LIST_URL, {"action": "pause_selected", "_selected_action": ids, "index": 0},
                                 follow=True)
    assert "Paused 2 instances." in [str(m) for m in response.context["messages"]]
    assert all(WorkflowInstance.objects.get(pk=pk).held for pk in ids)
    assert "admin" in WorkflowInstance.objects.get(pk="one").held_reason
    listed = admin_client.get(LIST_URL, {"held__exact": "1"}).content.decode()
    assert "dw-held" in listed and "one" in listed
    page = admin_client.get(reverse("admin:durable_workflows_workflowinstance_change", args=["one"]))
    html = page.content.decode()
    assert 'id="dw-release"' in html and 'id="dw-pause"' not in html and "paused in the admin" in html
    response = admin_client.post(LIST_URL, {"action": "release_selected", "_selected_action": ids, "index": 0},
                                 follow=True)
    assert "Resumed 2 instances." in [str(m) for m in response.context["messages"]]
    assert not WorkflowInstance.objects.filter(held=True).exists()


def test_the_admin_page_buttons_pause_and_resume(admin_client):
    napping()
    url = reverse("admin:durable_workflows_workflowinstance_pause", args=["napping"])
    assert admin_client.get(url).status_code == 405
    admin_client.post(url, {"reason": "from the page"})
    assert WorkflowInstance.objects.get(pk="napping").held_reason == "from the page"
    admin_client.post(reverse("admin:durable_workflows_workflowinstance_release", args=["napping"]))
    assert not WorkflowInstance.objects.get(pk="napping").held
    assert RAN["after"] == 0  # its alarm is still to come
