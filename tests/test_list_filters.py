"""The instance filters of client.list, the API's instance list, the admin's list and the
command: each alone, several states, combinations, and bad input refused by name."""

import io
from datetime import datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from durable_workflows import State, client, start
from durable_workflows.models import WorkflowInstance
from tests.helpers import queued, staff_user

pytestmark = pytest.mark.django_db(transaction=True)

LIST_URL = "/api/workflows/instances/"
ADMIN_URL = "/admin/durable_workflows/workflowinstance/"
HOUR = timedelta(hours=1)


@pytest.fixture
def family():
    """Instances of three workflows and four states, with known times, a child and a fork."""
    done = start("tests.greet", "a", instance_id="done-1")
    napping = start("tests.nap", instance_id="nap-1")
    waiting = queued("tests.greet", "b", instance_id="wait-1")
    failed = start("engine.no_retry", instance_id="fail-1")
    fork = client.fork("fail-1", new_id="fail-1-fork")
    WorkflowInstance.objects.filter(pk="nap-1").update(parent_id="done-1")
    now = timezone.now()
    for offset, handle in enumerate((done, napping, waiting, failed, fork)):
        WorkflowInstance.objects.filter(pk=handle.instance_id).update(created_at=now - (5 - offset) * HOUR)
    return now


def ids(handles):
    return sorted(h.instance_id for h in handles)


def test_each_filter_alone(family):
    now = family
    assert ids(client.list(state="completed")) == ["done-1"]
    assert ids(client.list(state=State.PAUSED)) == ["nap-1"]
    assert ids(client.list(workflow="tests.greet")) == ["done-1", "wait-1"]
    assert ids(client.list(parent="done-1")) == ["nap-1"]
    assert ids(client.list(forked_from="fail-1")) == ["fail-1-fork"]
    assert ids(client.list(id_prefix="fail-1")) == ["fail-1", "fail-1-fork"]
    assert ids(client.list(created_after=now - 2 * HOUR)) == ["fail-1-fork"]  # strict: fail-1 is at -2h
    assert ids(client.list(created_before=now - 4 * HOUR)) == ["done-1"]  # strict: nap-1 is at -4h
    finished = ids(client.list(finished_after=now - HOUR))
    assert finished == ids(h for h in client.list() if h.is_finished)
    assert client.list(finished_before=now - HOUR) == []


def test_several_states_and_combinations(family):
    now = family
    assert ids(client.list(state=["completed", State.FAILED])) == ["done-1", "fail-1", "fail-1-fork"]
    assert ids(client.list(state=("Queued", "paused"))) == ["nap-1", "wait-1"]
    assert ids(client.list(state=["queued", "paused"], workflow="tests.greet")) == ["wait-1"]
    assert ids(client.list(id_prefix="fail", created_before=now - 1.5 * HOUR, state="failed")) == ["fail-1"]
    # Positional state, workflow, limit still work, newest first.
    assert [h.instance_id for h in client.list(None, None, 2)] == ["fail-1-fork", "fail-1"]
    assert [h.instance_id for h in client.list("completed", "tests.greet", 5)] == ["done-1"]


BAD_FILTERS = [
    ({"state": "sleeping"}, "unknown state 'sleeping'"),
    ({"state": ["failed", "nope"]}, "unknown state 'nope'"),
    ({"state": []}, "state must name at least one state"),
    ({"colour": "red"}, "unknown filter 'colour'"),
    ({"created_after": datetime(2026, 1, 1)}, "created_after must be an aware datetime"),
    ({"finished_before": datetime(2026, 1, 1)}, "finished_before must be an aware datetime"),
    ({"id_prefix": ""}, "id_prefix must not be empty"),
    ({"parent": "a\x00b"}, "parent must not contain a null character"),
    ({"id_prefix": "a\ud800"}, "id_prefix must be valid text"),
]


def test_bad_filters_are_value_errors_naming_them():
    for filters, message in BAD_FILTERS:
        with pytest.raises(ValueError, match=message):
            client.list(**filters)


def test_filters_of_the_wrong_type_are_type_errors():
    with pytest.raises(TypeError, match="created_before must be a datetime"):
        client.list(created_before="2026-01-01T00:00:00Z")
    with pytest.raises(TypeError, match="forked_from must be text"):
        client.list(forked_from=5)


def api(user=None):
    browser = Client()
    browser.force_login(user or staff_user())
    return browser


def test_the_api_takes_the_same_filters(family):
    now = family
    browser = api()

    def listed(query):
        response = browser.get(LIST_URL, query)
        assert response.status_code == 200, response.content
        return sorted(row["id"] for row in response.json()["results"])

    assert listed({"state": ["failed", "completed"]}) == ["done-1", "fail-1", "fail-1-fork"]
    assert listed({"state": "queued,paused"}) == ["nap-1", "wait-1"]
    assert listed({"workflow": "tests.greet", "state": "queued"}) == ["wait-1"]
    assert listed({"parent": "done-1"}) == ["nap-1"]
    assert listed({"forked_from": "fail-1"}) == ["fail-1-fork"]
    assert listed({"id_prefix": "fail"}) == ["fail-1", "fail-1-fork"]
    assert listed({"created_after": (now - 2.5 * HOUR).isoformat()}) == ["fail-1", "fail-1-fork"]
    assert listed({"created_before": (now - 4 * HOUR).isoformat().replace("+00:00", "Z")}) == ["done-1"]
    assert listed({"finished_before": (now - HOUR).isoformat()}) == []
    # An offset PostgreSQL would refuse, read as the moment it names.
    assert listed({"created_after": "1970-01-01T19:04:00+19:04"}) == ["done-1", "fail-1", "fail-1-fork", "nap-1",
                                                                        "wait-1"]
    assert listed({"page_size": "2", "state": "failed"}) == ["fail-1", "fail-1-fork"]


BAD_QUERIES = [
    ({"state": "sleeping"}, "state", "unknown state 'sleeping'"),
    ({"created_after": "yesterday"}, "created_after", "ISO 8601"),
    ({"created_after": "2026-01-01T00:00:00"}, "created_after", "aware datetime"),
    ({"id_prefix": ""}, "id_prefix", "must not be empty"),
    ({"workflow": ["a", "b"]}, "workflow", "takes one value"),
    ({"finished_before": "9999-12-31T23:59:59-23:59"}, "finished_before", "out of range"),
]


def test_the_api_answers_400_naming_the_parameter():
    browser = api()
    for query, field, message in BAD_QUERIES:
        response = browser.get(LIST_URL, query)
        assert response.status_code == 400, query
        assert message in " ".join(response.json()[field]), query


def test_the_admin_filters_the_list(family, admin_client):
    def shown(query):
        response = admin_client.get(ADMIN_URL, query)
        assert response.status_code == 200
        return sorted(obj.pk for obj in response.context["cl"].result_list)

    assert shown({"state__in": "failed,completed"}) == ["done-1", "fail-1", "fail-1-fork"]
    assert shown({"forked_from": "fail-1"}) == ["fail-1-fork"]
    assert shown({"parent__id__exact": "done-1"}) == ["nap-1"]
    assert shown({"q": "fail-1-"}) == ["fail-1-fork"]
    assert shown({"finished": "yes"}) == ["done-1", "fail-1", "fail-1-fork"]
    assert shown({"finished": "no"}) == ["nap-1", "wait-1"]


def test_the_command_lists_with_the_filters(family):
    out = io.StringIO()
    call_command("durable_workflows", "list", "--state", "failed", "--state", "completed", "--id-prefix", "fail",
                 stdout=out)
    assert "fail-1-fork" in out.getvalue() and "done-1" not in out.getvalue()
    with pytest.raises(CommandError, match="--created-after: created_after must be an ISO 8601"):
        call_command("durable_workflows", "list", "--created-after", "soon", stdout=out)
