"""The REST API: every endpoint, every error code, and who may call it."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.test import override_settings
from rest_framework.test import APIClient

from durable_workflows import client, workflow
from durable_workflows.models import WorkflowInstance
from tests.helpers import run_python, staff_user
from tests.testapp.workflows import CALLS

pytestmark = pytest.mark.django_db

BASE = "/api/workflows/"


@workflow("tests.api.typed")
def typed(wf, day: str) -> dict:
    """Returns values JSON has no type for, to check how the API spells them."""
    when = wf.step("Parse", dt.date.fromisoformat, day)
    return {"when": when, "amount": Decimal("12.50"), "pair": (1, 2)}


@pytest.fixture
def staff():
    return staff_user("operator")


@pytest.fixture
def api(staff):
    api_client = APIClient()
    api_client.force_login(staff)
    return api_client


def start(api, body, **extra):
    return api.post(f"{BASE}instances/", body, format="json", **extra)


# -- permissions -----------------------------------------------------------------------------


ENDPOINTS = [
    ("get", "instances/"),
    ("post", "instances/"),
    ("get", "instances/some-id/"),
    ("post", "instances/some-id/cancel/"),
    ("post", "instances/some-id/events/"),
    ("get", "definitions/"),
    ("get", "schema/"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_anonymous_caller_is_refused_everywhere(method, path):
    client.start("tests.nap", instance_id="some-id")
    response = getattr(APIClient(), method)(
        BASE + path, {"workflow": "tests.greet", "input": {"name": "Eve"}}, format="json"
    )
    assert response.status_code in (401, 403)
    assert set(response.json()) == {"detail"}
    assert WorkflowInstance.objects.count() == 1
    assert client.get("some-id").state == "paused"


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_logged_in_non_staff_user_is_refused(method, path):
    client.start("tests.nap", instance_id="some-id")
    visitor = APIClient()
    visitor.force_login(User.objects.create(username="visitor"))
    response = getattr(visitor, method)(BASE + path, {"workflow": "tests.greet", "input": ["Eve"]}, format="json")
    assert response.status_code == 403
    assert response.json() == {"detail": "Only staff users may use the workflows API."}
    assert WorkflowInstance.objects.count() == 1
    assert client.get("some-id").state == "paused"


def test_staff_without_superuser_status_is_let_in(api, staff):
    assert not staff.is_superuser
    assert api.get(f"{BASE}instances/").status_code == 200


def test_permission_classes_come_from_settings_at_request_time():
    visitor = APIClient()
    visitor.force_login(User.objects.create(username="visitor"))
    assert visitor.get(f"{BASE}definitions/").status_code == 403
    allow_users = {"API_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"]}
    with override_settings(DURABLE_WORKFLOWS=allow_users):
        assert visitor.get(f"{BASE}definitions/").status_code == 200
        assert APIClient().get(f"{BASE}definitions/").status_code == 403
    with override_settings(DURABLE_WORKFLOWS={"API_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"]}):
        assert APIClient().get(f"{BASE}definitions/").status_code == 200
    assert visitor.get(f"{BASE}definitions/").status_code == 403


# -- list ------------------------------------------------------------------------------------


def test_list_is_paginated_newest_first(api):
    ids = [client.start("tests.greet", f"user {n}", instance_id=f"greet-{n}").instance_id for n in range(3)]
    body = api.get(f"{BASE}instances/").json()
    assert set(body) == {"count", "count_is_estimate", "next", "previous", "results"}
    assert body["count"] == 3 and body["count_is_estimate"] is False
    assert body["next"] is None and body["previous"] is None
    assert [item["id"] for item in body["results"]] == ids[::-1]
    first = body["results"][-1]
    assert first["workflow"] == "tests.greet"
    assert first["state"] == "completed"
    assert first["result"] == "Hello, user 0!"
    assert first["error"] is None
    assert first["input"] == ["user 0"]
    assert first["created_at"] and first["finished_at"]
    assert "steps" not in first


def test_list_pages(api):
    for n in range(3):
        client.start("tests.greet", f"user {n}", instance_id=f"greet-{n}")
    page_one = api.get(f"{BASE}instances/", {"page_size": 2}).json()
    assert [item["id"] for item in page_one["results"]] == ["greet-2", "greet-1"]
    assert "cursor=" in page_one["next"] and "page_size=2" in page_one["next"]
    page_two = api.get(page_one["next"]).json()
    assert [item["id"] for item in page_two["results"]] == ["greet-0"]
    assert page_two["next"] is None and page_two["previous"]
    assert [item["id"] for item in api.get(f"{BASE}instances/", {"page": 2, "page_size": 2}).json()["results"]] \
        == ["greet-0"]
    missing = api.get(f"{BASE}instances/", {"page": 9})
    assert missing.status_code == 404
    assert "detail" in missing.json()


def test_list_filters_by_state_and_workflow(api):
    client.start("tests.greet", "Ada", instance_id="done")
    client.start("tests.nap", instance_id="sleeping")
    client.start("tests.three_steps", instance_id="counted")

    def ids(**params):
        return sorted(item["id"] for item in api.get(f"{BASE}instances/", params).json()["results"])

    assert ids(state="paused") == ["sleeping"]
    assert ids(state="completed") == ["counted", "done"]
    assert ids(workflow="tests.greet") == ["done"]
    assert ids(state="completed", workflow="tests.three_steps") == ["counted"]
    assert ids(workflow="no.such.workflow") == []
    assert ids(state="Paused") == ["sleeping"]


def test_list_refuses_an_unknown_state(api):
    response = api.get(f"{BASE}instances/", {"state": "asleep"})
    assert response.status_code == 400
    assert "asleep" in response.json()["state"][0]
    assert "paused" in response.json()["state"][0]


# -- start -----------------------------------------------------------------------------------


def test_start_with_keyword_arguments(api):
    response = start(api, {"workflow": "tests.greet", "input": {"name": "Ada", "punctuation": "?"}})
    assert response.status_code == 201
    body = response.json()
    assert body["state"] == "completed"
    assert body["result"] == "Hello, Ada?"
    assert body["input"] == {"name": "Ada", "punctuation": "?"}
    assert [step["name"] for step in body["steps"]] == ["Compose"]
    assert client.get(body["id"]).result() == "Hello, Ada?"


def test_start_with_positional_arguments(api):
    response = start(api, {"workflow": "tests.three_steps", "input": [10]})
    assert response.status_code == 201
    assert response.json()["result"] == 13


def test_start_without_input(api):
    response = start(api, {"workflow": "tests.three_steps"})
    assert response.status_code == 201
    assert response.json()["result"] == 3
    assert response.json()["input"] == {}


def test_start_is_idempotent_on_instance_id(api):
    first = start(api, {"workflow": "tests.greet", "input": ["Ada"], "instance_id": "greet-ada"})
    again = start(api, {"workflow": "tests.greet", "input": ["Ada"], "instance_id": "greet-ada"})
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"] == "greet-ada"
    assert again.json()["created_at"] == first.json()["created_at"]
    assert CALLS["compose"] == 1
    assert WorkflowInstance.objects.count() == 1
    # A repeat is answered before its input is checked, as client.start() answers it.
    other = start(api, {"workflow": "tests.greet", "instance_id": "greet-ada"})
    assert other.status_code == 200 and other.json()["id"] == "greet-ada"
    assert start(api, {"workflow": "tests.greet", "instance_id": "greet-bob"}).status_code == 400


def test_start_with_an_id_taken_by_another_workflow_is_a_conflict(api):
    client.start("tests.nap", instance_id="taken")
    response = start(api, {"workflow": "tests.greet", "input": ["Ada"], "instance_id": "taken"})
    assert response.status_code == 409
    assert "tests.nap" in response.json()["detail"]
    assert response.json()["state"] == "paused"
    assert CALLS["compose"] == 0


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"workflow": "no.such.flow", "input": {}}, "workflow", ["no.such.flow", "tests.greet"]),
        ({"input": {"name": "Ada"}}, "workflow", ["required"]),
        ({"workflow": "tests.greet", "input": "Ada"}, "input", ["object", "array", "text"]),
        ({"workflow": "tests.greet", "input": 3}, "input", ["object", "array", "int"]),
        ({"workflow": "tests.greet", "input": None}, "input", ["object", "array", "null"]),
        ({"workflow": "tests.greet", "input": {"nom": "Ada"}}, "input", ["tests.greet", "name"]),
        ({"workflow": "tests.greet", "input": []}, "input", ["tests.greet", "name"]),
        ({"workflow": "tests.greet", "input": ["a", "b", "c"]}, "input", ["tests.greet", "too many"]),
        ({"workflow": "tests.greet", "input": ["Ada"], "instance_id": "  "}, "instance_id", ["blank"]),
        ({"workflow": "tests.greet", "input": ["Ada"], "instance_id": "x" * 256}, "instance_id", ["255"]),
        ({"workflow": "tests.greet", "input": ["Ada"], "instance_id": 12}, "instance_id", ["text", "int"]),
        ({"workflow": "tests\x00greet", "input": ["Ada"]}, "workflow", ["Null characters"]),
    ],
)
def test_start_refuses_bad_input_and_creates_nothing(api, body, field, words):
    response = start(api, body)
    assert response.status_code == 400, response.json()
    errors = response.json()
    assert field in errors, errors
    message = " ".join(errors[field])
    for word in words:
        assert word in message, message
    assert WorkflowInstance.objects.count() == 0
    assert not CALLS


def test_start_refuses_a_body_that_is_not_an_object(api):
    response = start(api, ["tests.greet"])
    assert response.status_code == 400
    assert "non_field_errors" in response.json()
    malformed = api.post(f"{BASE}instances/", "{not json", content_type="application/json")
    assert malformed.status_code == 400
    assert "detail" in malformed.json()
    text = api.post(f"{BASE}instances/", "tests.greet", content_type="text/plain")
    assert text.status_code == 415
    assert "text/plain" in text.json()["detail"]
    # Form data is taken, but cannot carry an input object.
    form = api.post(f"{BASE}instances/", {"workflow": "tests.greet", "input": "Ada"})
    assert form.status_code == 400
    assert "input must be a JSON object" in form.json()["input"][0]
    assert WorkflowInstance.objects.count() == 0


def test_start_renders_stored_types_as_plain_json(api):
    response = start(api, {"workflow": "tests.api.typed", "input": {"day": "2024-02-29"}})
    assert response.status_code == 201
    assert response.json()["result"] == {"when": "2024-02-29", "amount": "12.50", "pair": [1, 2]}
    assert response.json()["steps"][0]["result"] == "2024-02-29"


# -- detail ----------------------------------------------------------------------------------


def test_detail_of_a_paused_instance_shows_steps_and_alarm(api):
    handle = client.start("tests.nap", "2h", instance_id="napping")
    response = api.get(f"{BASE}instances/napping/")
    assert response.status_code == 200
    body = response.json()
    assert body["state"] == "paused"
    assert body["input"] == ["2h"]
    assert body["result"] is None and body["error"] is None
    assert [(s["position"], s["name"], s["kind"], s["state"]) for s in body["steps"]] == [
        (0, "Before", "step", "completed"),
        (1, "sleep", "sleep", "sleeping"),
    ]
    assert body["steps"][0]["attempts"] == 1
    assert body["steps"][0]["duration"] >= 0
    assert body["steps"][1]["wake_at"]
    assert body["alarm"]["reason"] == "sleep"
    assert body["alarm"]["fire_at"].startswith(str(handle.alarm.fire_at.date()))
    assert body["run_count"] == 1


def test_detail_of_a_failed_instance_carries_the_error(api):
    client.start("tests.flaky", failures=5, max_attempts=1, instance_id="broken")
    body = api.get(f"{BASE}instances/broken/").json()
    assert body["state"] == "failed"
    assert body["error"]["type"] == "ConnectionError"
    assert body["error"]["message"] == "failure 1"
    assert "Traceback" in body["error"]["traceback"]
    assert body["steps"][0]["error"]["message"] == "failure 1"


@pytest.mark.parametrize("instance_id", ["nope", "with space", "%00", "x" * 300])
def test_detail_of_an_unknown_id_is_404(api, instance_id):
    response = api.get(f"{BASE}instances/{instance_id}/")
    assert response.status_code == 404
    assert "detail" in response.json()


# -- cancel ----------------------------------------------------------------------------------


def test_cancel_a_paused_instance(api):
    client.start("tests.nap", instance_id="napping")
    response = api.post(f"{BASE}instances/napping/cancel/", {"reason": "not needed"}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["state"] == "cancelled"
    assert body["cancel_reason"] == "not needed"
    assert body["alarm"] is None
    assert client.get("napping").state == "cancelled"


def test_cancel_without_a_body(api):
    client.start("tests.nap", instance_id="napping")
    response = api.post(f"{BASE}instances/napping/cancel/")
    assert response.status_code == 200
    assert response.json()["state"] == "cancelled"


def test_cancel_with_a_form_body(api):
    client.start("tests.nap", instance_id="napping")
    response = api.post(f"{BASE}instances/napping/cancel/", {"reason": "from a form"})
    assert response.status_code == 200
    assert response.json()["cancel_reason"] == "from a form"
    assert client.get("napping").state == "cancelled"


def test_cancel_a_finished_instance_is_a_conflict(api):
    client.start("tests.greet", "Ada", instance_id="done")
    response = api.post(f"{BASE}instances/done/cancel/", {"reason": "late"}, format="json")
    assert response.status_code == 409
    assert response.json()["state"] == "completed"
    assert "Completed" in response.json()["detail"]
    assert client.get("done").state == "completed"


def test_cancel_an_unknown_id_is_404(api):
    response = api.post(f"{BASE}instances/nope/cancel/", {}, format="json")
    assert response.status_code == 404
    assert "nope" in response.json()["detail"]


def test_cancel_with_a_bad_body_changes_nothing(api):
    client.start("tests.nap", instance_id="napping")
    response = api.post(f"{BASE}instances/napping/cancel/", {"reason": ["a", "b"]}, format="json")
    assert response.status_code == 400
    assert "reason" in response.json()
    assert client.get("napping").state == "paused"


def test_unsupported_methods_are_405(api):
    client.start("tests.nap", instance_id="napping")
    assert api.delete(f"{BASE}instances/napping/").status_code == 405
    assert api.get(f"{BASE}instances/napping/cancel/").status_code == 404  # the id "napping/cancel"
    assert client.get("napping").state == "paused"


# -- definitions and schema ------------------------------------------------------------------


def test_definitions_list_registered_workflows(api):
    response = api.get(f"{BASE}definitions/")
    assert response.status_code == 200
    by_name = {item["name"]: item for item in response.json()}
    greet = by_name["tests.greet"]
    assert greet["module"] == "tests.testapp.workflows"
    assert greet["is_async"] is False
    assert greet["parameters"] == [
        {"name": "name", "kind": "positional_or_keyword", "required": True},
        {"name": "punctuation", "kind": "positional_or_keyword", "required": False},
    ]
    assert by_name["tests.api.typed"]["description"].startswith("Returns values")
    assert list(by_name) == sorted(by_name)


def test_schema_is_openapi_3_for_this_api_only(api):
    response = api.get(f"{BASE}schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert sorted(schema["paths"]) == [
        "/api/workflows/definitions/",
        "/api/workflows/instances/",
        "/api/workflows/instances/bulk/",
        "/api/workflows/instances/{instance_id}/",
        "/api/workflows/instances/{instance_id}/cancel/",
        "/api/workflows/instances/{instance_id}/events/",
        "/api/workflows/instances/{instance_id}/fork/",
        "/api/workflows/instances/{instance_id}/pause/",
        "/api/workflows/instances/{instance_id}/resume/",
    ]
    start_op = schema["paths"]["/api/workflows/instances/"]["post"]
    assert {"200", "201", "400", "401", "403", "409"} <= set(start_op["responses"])
    cancel_op = schema["paths"]["/api/workflows/instances/{instance_id}/cancel/"]["post"]
    assert {"200", "404", "409"} <= set(cancel_op["responses"])
    states = schema["components"]["schemas"]["InstanceStateEnum"]["enum"]
    assert states == ["pending", "queued", "running", "paused", "completed", "failed", "cancelled"]


def test_schema_needs_no_schema_setting_in_the_project():
    """A project that never set DEFAULT_SCHEMA_CLASS (DRF's own AutoSchema) still gets the
    document: the API's views carry drf-spectacular's schema class themselves."""
    script = (
        "import tests.settings as s\n"
        "s.REST_FRAMEWORK = {}\n"
        "s.DURABLE_WORKFLOWS = {'API_PERMISSION_CLASSES': ['rest_framework.permissions.AllowAny']}\n"
        "import django; django.setup()\n"
        "from django.test import Client\n"
        "response = Client().get('/api/workflows/schema/')\n"
        "print(response.status_code)\n"
        "print(response.content.decode())\n"
    )
    done = run_python(script)
    assert done.returncode == 0, done.stderr
    status, document = done.stdout.split("\n", 1)
    assert status == "200"
    assert "/api/workflows/instances/{instance_id}/cancel/" in json.loads(document)["paths"]


def test_an_id_with_slashes_is_reached_by_every_endpoint(api):
    assert start(api, {"workflow": "tests.nap", "input": ["1h"], "instance_id": "orders/1001"}).status_code == 201
    detail = api.get(f"{BASE}instances/orders/1001/")
    assert detail.status_code == 200 and detail.json()["id"] == "orders/1001"
    assert api.get(f"{BASE}instances/orders%2F1001/").json()["id"] == "orders/1001"
    sent = api.post(f"{BASE}instances/orders/1001/events/", {"name": "ping"}, format="json")
    assert sent.status_code == 202
    assert api.post(f"{BASE}instances/orders/1001/cancel/", {}, format="json").status_code == 200
    assert api.get(f"{BASE}instances/orders/1001/").json()["state"] == "cancelled"
    forked = api.post(f"{BASE}instances/orders/1001/fork/", {"new_id": "orders/1001/again"}, format="json")
    assert forked.status_code == 201 and forked.json()["forked_from"] == "orders/1001"
    missing = api.get(f"{BASE}instances/orders/1002/")
    assert missing.status_code == 404 and missing.json()["detail"].startswith("No workflow instance")


def test_json_nested_too_deeply_is_a_bad_request(api):
    client.start("tests.nap", "1h", instance_id="x")
    body = "[" * 5000 + "]" * 5000
    for url in (f"{BASE}instances/", f"{BASE}instances/x/cancel/", f"{BASE}instances/x/events/"):
        response = api.post(url, body, content_type="application/json")
        assert response.status_code == 400 and "nested too deeply" in response.json()["detail"], url
    assert WorkflowInstance.objects.count() == 1 and client.get("x").state == "paused"


@workflow("tests.api.takes_instance_id")
def takes_instance_id(wf, instance_id: str) -> str:
    return instance_id


def test_a_workflow_argument_named_instance_id_is_the_workflows(api):
    response = start(api, {"workflow": "tests.api.takes_instance_id", "input": {"instance_id": "mine"}})
    assert response.status_code == 201 and response.json()["result"] == "mine"
    assert response.json()["id"] != "mine"
