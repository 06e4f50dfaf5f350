"""No page answers 500, whatever the id (newlines, slashes, one ending in "/cancel") or the
filter value (a NUL, which PostgreSQL refuses as a query parameter): the admin's dashboard,
list, pages and operations, and every API endpoint."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import quote as percent

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth.models import User
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from durable_workflows import client, send_event
from durable_workflows.exceptions import WorkflowNotFound
from durable_workflows.models import Alarm, StepRecord, WorkflowInstance

pytestmark = pytest.mark.django_db(transaction=True)

INLINE = {"DISPATCHER": "durable_workflows.dispatch.InlineDispatcher"}
DASHBOARD = reverse("admin:durable_workflows_workflowinstance_dashboard")
LIST_URL = reverse("admin:durable_workflows_workflowinstance_changelist")
API = "/api/workflows/"
ODD_IDS = ["line\nbreak", "abc/cancel", "tenant/7/fork", "x_2Fy", "50%", "q?x#y", "a//b", "trail/", "cr\rtab\t"]
NUL = "nul\x00id"


def admin_url(name: str, instance_id: str) -> str:
    return reverse(f"admin:durable_workflows_workflowinstance_{name}", args=[quote(instance_id)])


@pytest.fixture
def api():
    api_client = APIClient()
    api_client.force_login(User.objects.create_superuser("ops", "ops@example.com", "pw"))
    return api_client


def test_the_dashboard_links_instances_of_any_id(admin_client):
    with override_settings(DURABLE_WORKFLOWS=INLINE):
        for instance_id in ODD_IDS:
            client.start("tests.greet", "Ada", instance_id=instance_id)  # a finished step each
        client.start("tests.nap", "1h", instance_id="late\nsleeper")
        Alarm.objects.filter(instance_id="late\nsleeper").update(fire_at=timezone.now() - timedelta(minutes=5))
    client.start("tests.nap", "1h", instance_id="stuck\none")
    WorkflowInstance.objects.filter(pk="stuck\none").update(
        state="running", lease_owner="gone:1:1", lease_expires_at=timezone.now() - timedelta(minutes=3))
    StepRecord.objects.filter(instance_id="line\nbreak").update(started_at=timezone.now() - timedelta(minutes=7))
    response = admin_client.get(DASHBOARD)
    assert response.status_code == 200
    text = response.content.decode()
    for panel, instance_id in (("dw-stuck", "stuck\none"), ("dw-slowest", "line\nbreak"), ("dw-lag", "late\nsleeper")):
        part = text[text.index(f'id="{panel}"'):]
        assert admin_url("change", instance_id) in part[:part.index("</table>")], panel
    links = set(re.findall(r'href="(/admin/durable_workflows/workflowinstance/[^"]+/change/)"', text))
    assert len(links) >= 10
    for link in links:  # each opens the page of its own instance
        assert link == admin_url("change", admin_client.get(link).context["original"].pk)


@pytest.mark.parametrize("instance_id", ODD_IDS)
def test_every_admin_page_and_operation_takes_any_id(admin_client, instance_id):
    client.start("tests.nap", "1h", instance_id=instance_id)
    assert admin_client.get(LIST_URL, {"q": instance_id}).context["cl"].result_count == 1
    page = admin_client.get(admin_url("change", instance_id))
    assert page.status_code == 200 and page.context["original"].pk == instance_id
    history = admin_client.get(admin_url("history", instance_id))
    assert history.status_code == 200 and history.context["object"].pk == instance_id
    for operation in ("resume", "recover", "fork", "cancel"):
        response = admin_client.post(admin_url(operation, instance_id), follow=True)
        assert response.status_code == 200, operation
    assert client.get(instance_id).state == "completed"  # resumed before the cancel came


@pytest.mark.parametrize("parameter", ["workflow__exact", "workflow", "state__exact", "parent__id__exact",
                                       "id__exact", "has_parent"])
def test_a_nul_in_a_filter_is_a_message_on_the_list(admin_client, parameter):
    client.start("tests.nap", "1h", instance_id="napping")
    response = admin_client.get(LIST_URL, {parameter: "a\x00b"}, follow=True)
    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == f"{LIST_URL}?e=1"
    assert f"Null characters are not allowed in the filter {parameter!r}." in [
        str(m) for m in response.context["messages"]]
    searched = admin_client.get(LIST_URL, {"q": "\x00"})
    assert searched.status_code == 200 and searched.context["cl"].result_count == 1  # Django ignores it


def test_an_id_with_a_nul_is_not_found_in_the_admin(admin_client):
    client.start("tests.nap", "1h", instance_id="napping")
    for name in ("change", "history"):
        response = admin_client.get(admin_url(name, NUL), follow=True)
        assert response.status_code == 200
        assert any("doesn’t exist" in str(m) for m in response.context["messages"]), name
    assert admin_client.get(admin_url("delete", NUL)).status_code == 403  # nothing is deleted by hand
    for operation in ("cancel", "resume", "recover", "fork"):
        response = admin_client.post(admin_url(operation, NUL), follow=True)
        assert response.redirect_chain[-1][0] == LIST_URL
        assert [str(m) for m in response.context["messages"]] == [f"no workflow instance with id {NUL!r}"]
    for action in ("cancel_selected", "resume_selected", "fork_selected", "recover_selected"):
        response = admin_client.post(LIST_URL, {"action": action, "_selected_action": [NUL, "napping"],
                                                "index": 0}, follow=True)
        assert response.status_code == 200
    assert client.get("napping").state == "cancelled"
    assert admin_client.post(LIST_URL + "?workflow=%00", {"action": "cancel_selected", "select_across": "1",
                                                          "_selected_action": ["x"], "index": 0}).status_code == 302


def test_the_client_finds_no_instance_with_a_nul_in_its_id():
    client.start("tests.nap", "1h", instance_id="napping")
    for call in (lambda: client.get(NUL), lambda: client.cancel(NUL), lambda: client.fork(NUL),
                 lambda: client.meta(NUL), lambda: send_event(NUL, "ping")):
        with pytest.raises(WorkflowNotFound, match="no workflow instance with id 'nul\\\\x00id'"):
            call()


@pytest.mark.parametrize("instance_id", ODD_IDS)
def test_the_api_reaches_any_id_by_every_endpoint(api, instance_id):
    client.start("tests.nap", "1h", instance_id=instance_id)
    for path in (percent(instance_id, safe=""), percent(instance_id, safe="/")):
        detail = api.get(f"{API}instances/{path}/")
        assert detail.status_code == 200 and detail.json()["id"] == instance_id, path
    sent = api.post(f"{API}instances/{percent(instance_id, safe='/')}/events/", {"name": "ping"}, format="json")
    assert sent.status_code == 202
    cancelled = api.post(f"{API}instances/{percent(instance_id, safe='')}/cancel/", {}, format="json")
    assert cancelled.status_code == 200 and cancelled.json()["id"] == instance_id
    forked = api.post(f"{API}instances/{percent(instance_id, safe='/')}/fork/", {}, format="json")
    assert forked.status_code == 201 and forked.json()["forked_from"] == instance_id


@pytest.mark.parametrize("operation", ["cancel", "fork", "events"])
def test_get_of_an_id_ending_in_an_operation_reads_it_and_post_operates_on_the_rest(api, operation):
    client.start("tests.nap", "1h", instance_id="abc")
    client.start("tests.nap", "1h", instance_id=f"abc/{operation}")
    read = api.get(f"{API}instances/abc/{operation}/")
    assert read.status_code == 200 and read.json()["id"] == f"abc/{operation}"
    assert api.get(f"{API}instances/abc%2F{operation}/").json()["id"] == f"abc/{operation}"
    if operation == "cancel":
        done = api.post(f"{API}instances/abc/cancel/", {}, format="json")
        assert done.status_code == 200 and done.json()["id"] == "abc"
        assert client.get("abc").state == "cancelled" and client.get("abc/cancel").state == "paused"
        assert api.post(f"{API}instances/abc/cancel/cancel/", {}, format="json").json()["id"] == "abc/cancel"
    missing = api.get(f"{API}instances/nope/{operation}/")
    assert missing.status_code == 404
    assert missing.json()["detail"] == f"No workflow instance with id 'nope/{operation}' " \
                                       f"({operation}/ of 'nope' takes POST)."


@pytest.mark.parametrize("query", ["state=%00", "workflow=a%00b", "page=%00", "page_size=%00", "format=%00"])
def test_a_nul_in_an_api_query_is_never_a_server_error(api, query):
    client.start("tests.nap", "1h", instance_id="napping")
    for path in ("instances/", "definitions/", "instances/napping/", "schema/"):
        assert api.get(f"{API}{path}?{query}").status_code < 500, path


def test_a_nul_in_an_id_is_404_in_the_api(api):
    for method, path in (("get", ""), ("post", "cancel/"), ("post", "fork/"), ("post", "events/")):
        response = getattr(api, method)(f"{API}instances/nul%00id/{path}", {"name": "ping"}, format="json")
        assert response.status_code == 404, path
