"""The API's default permission classes follow Django's model permissions, as the admin does:
every endpoint against users holding each permission."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import override_settings
from rest_framework.test import APIClient

from durable_workflows import client
from durable_workflows.models import InboxMessage, WorkflowInstance
from tests.helpers import staff_user

pytestmark = pytest.mark.django_db

BASE = "/api/workflows/"

#: name: (method, path, body, the permissions any one of which admits the request)
ENDPOINTS = {
    "list": ("get", "instances/", None, {"view", "change"}),
    "start": ("post", "instances/", {"workflow": "tests.greet", "input": ["Eve"]}, {"add"}),
    "detail": ("get", "instances/napping/", None, {"view", "change"}),
    "detail of an id ending in /cancel": ("get", "instances/napping/cancel/", None, {"view", "change"}),
    "cancel": ("post", "instances/napping/cancel/", {"reason": "r"}, {"change", "cancel"}),
    "events": ("post", "instances/napping/events/", {"name": "ping"}, {"change"}),
    "fork": ("post", "instances/failed/fork/", {}, {"change"}),
    "definitions": ("get", "definitions/", None, {"view", "change"}),
    "schema": ("get", "schema/", None, {"view", "change"}),
}
HOLDERS = {"nothing": (), "view": ("view",), "add": ("add",), "change": ("change",), "cancel": ("cancel",)}


@pytest.fixture
def instances():
    client.start("tests.nap", "1h", instance_id="napping")
    client.start("tests.nap", "1h", instance_id="napping/cancel")
    client.start("tests.flaky", 5, max_attempts=1, instance_id="failed")


def observed() -> tuple:
    """What any write would change."""
    return (WorkflowInstance.objects.count(), client.get("napping").state, InboxMessage.objects.count())


def call(user: User, endpoint: str):
    method, path, body, _ = ENDPOINTS[endpoint]
    api = APIClient()
    api.force_login(user)
    return getattr(api, method)(BASE + path, body, format="json")


@pytest.mark.parametrize("holder", sorted(HOLDERS))
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_a_staff_user_needs_the_permission_of_what_they_do(instances, holder, endpoint):
    user = staff_user("ops", HOLDERS[holder])
    before = observed()
    response = call(user, endpoint)
    needed = ENDPOINTS[endpoint][3]
    if set(HOLDERS[holder]) & needed:
        assert response.status_code in (200, 201, 202), response.content
        if ENDPOINTS[endpoint][0] == "post":
            assert observed() != before
        return
    assert response.status_code == 403
    order = ["view", "add", "change", "cancel"]
    names = " or ".join(f"durable_workflows.{a}_workflowinstance" for a in sorted(needed, key=order.index))
    assert response.json() == {"detail": f"This needs the permission {names}, which the user 'ops' lacks."}
    assert observed() == before


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_a_superuser_may_do_everything(instances, endpoint):
    user = User.objects.create_superuser("root", "root@example.com", "pw")
    assert call(user, endpoint).status_code in (200, 201, 202)


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_an_inactive_or_non_staff_user_with_every_permission_is_refused(instances, endpoint):
    inactive = staff_user("gone", ("view", "add", "change", "cancel"))
    inactive.is_active = False
    inactive.save()
    outsider = staff_user("outsider", ("view", "add", "change", "cancel"))
    outsider.is_staff = False
    outsider.save()
    before = observed()
    assert call(inactive, endpoint).status_code in (401, 403)
    response = call(outsider, endpoint)
    assert response.status_code == 403
    assert response.json() == {"detail": "Only staff users may use the workflows API."}
    assert observed() == before


def test_the_metrics_follow_the_api_classes(client):
    client.force_login(staff_user("ops", ()))
    assert client.get("/metrics/").status_code == 403
    client.force_login(staff_user("reader", ("view",)))
    assert client.get("/metrics/").status_code == 200


def test_a_project_may_let_in_every_staff_user(instances):
    with override_settings(DURABLE_WORKFLOWS={"API_PERMISSION_CLASSES": ["durable_workflows.api.permissions.StaffOnly"]}):
        assert call(staff_user("ops", ()), "cancel").status_code == 200
    assert client.get("napping").state == "cancelled"
