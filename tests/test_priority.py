"""Priority: where instances wait for a slot, the higher priority goes first, then the
oldest; a bad priority is refused wherever it is given, before anything is stored."""

from __future__ import annotations

import random
import re

import pytest
from django.test import override_settings
from django.urls import reverse

from durable_workflows import client, workflow
from durable_workflows.engine.concurrency import queued_behind
from durable_workflows.engine.priority import ORDER, ahead_of
from durable_workflows.models import WorkflowInstance
from tests.queueing import TASKS, drain  # noqa: E402
from tests.testapp.limit_workflows import read_log

pytestmark = pytest.mark.django_db(transaction=True)

@pytest.fixture(autouse=True)
def queue():
    TASKS.clear()
    with override_settings(DURABLE_WORKFLOWS={"DISPATCHER": "tests.queueing.QueueDispatcher"}):
        yield
    TASKS.clear()


def entered(log: str) -> list[str]:
    return [e["instance"] for e in sorted(read_log(log), key=lambda e: e["at"]) if e["event"] == "enter"]


def test_fifty_waiting_instances_go_in_priority_order_then_oldest_first(tmp_path):
    log = str(tmp_path / "inside.log")
    holder = client.start("flow.one_at_a_time", log, True, instance_id="holder")
    drain()
    rng = random.Random(7)
    priorities = [rng.choice((-100, -5, 0, 0, 3, 42, 100)) for _ in range(50)]
    for n, priority in enumerate(priorities):
        client.start("flow.one_at_a_time", log, instance_id=f"p-{n:02}", priority=priority)
    drain()
    assert WorkflowInstance.objects.filter(state="queued").count() == 50
    first = max(range(50), key=lambda n: (priorities[n], -n))
    assert queued_behind(WorkflowInstance.objects.get(pk=f"p-{first:02}")) == 1  # only the holder

    client.send_event(holder.instance_id, "done")
    drain()
    expected = [f"p-{n:02}" for n in sorted(range(50), key=lambda n: (-priorities[n], n))]
    assert entered(log) == ["holder", *expected]
    assert WorkflowInstance.objects.filter(state="completed").count() == 51


def test_a_later_start_of_higher_priority_overtakes_the_waiting_ones(tmp_path):
    log = str(tmp_path / "inside.log")
    holder = client.start("flow.one_at_a_time", log, True, instance_id="holder")
    low = client.start("flow.one_at_a_time", log, instance_id="low")
    drain()
    high = client.start("flow.one_at_a_time", log, instance_id="high", priority=10)
    drain()  # its claim finds the holder: it waits too, ahead of the older one
    assert [queued_behind(client.get(h.instance_id).instance) for h in (high, low)] == [1, 2]
    client.send_event(holder.instance_id, "done")
    drain()
    assert entered(log) == ["holder", "high", "low"]


def test_the_order_rule_is_one_filter_and_one_ordering(tmp_path):
    log = str(tmp_path / "inside.log")
    for name, priority in (("a", 0), ("b", 5), ("c", 0), ("d", -1)):
        client.start("flow.one_at_a_time", log, instance_id=name, priority=priority)
    rows = WorkflowInstance.objects.filter(pk__in="abcd")
    assert list(rows.order_by(*ORDER).values_list("pk", flat=True)) == ["b", "a", "c", "d"]
    c = rows.get(pk="c")
    assert sorted(rows.filter(ahead_of(c)).values_list("pk", flat=True)) == ["a", "b"]


def test_the_priority_is_stored_and_shown(admin_client):
    handle = client.start("flow.digest", "ann", [], priority=-7)
    assert handle.priority == -7 and client.get(handle.instance_id).priority == -7
    assert client.start("flow.digest", "bob", []).priority == 0
    assert client.start("flow.urgent").priority == 50  # the workflow's own
    assert client.start("flow.urgent", priority=0).priority == 0
    many = client.start_many("flow.digest", [["c", []], ["d", []]], priority=3)
    assert [h.priority for h in many] == [3, 3]
    detail = admin_client.get(f"/api/workflows/instances/{handle.instance_id}/").json()
    assert detail["priority"] == -7
    listed = admin_client.get("/api/workflows/instances/?workflow=flow.digest").json()["results"]
    assert sorted(row["priority"] for row in listed) == [-7, 0, 3, 3]
    page = admin_client.get(reverse("admin:durable_workflows_workflowinstance_change", args=[handle.instance_id]))
    assert "priority" in page.content.decode() and "-7" in page.content.decode()


def test_a_bad_priority_is_refused_everywhere_and_stores_nothing(admin_client):
    for bad in (True, 1.0, "5", 101, -101, [1]):
        with pytest.raises(ValueError, match=re.escape(f"priority must be a whole number from -100 to 100, got {bad!r}")):
            client.start("flow.digest", "ann", [], priority=bad)
        with pytest.raises(ValueError, match="priority"):
            client.start_many("flow.digest", [["ann", []]], priority=bad)
        response = admin_client.post("/api/workflows/instances/", {"workflow": "flow.digest", "input": ["ann", []],
                                                                   "priority": bad}, content_type="application/json")
        assert response.status_code == 400 and "priority" in response.json(), response.json()
    assert not WorkflowInstance.objects.exists()


def test_the_api_starts_with_a_priority(admin_client):
    response = admin_client.post("/api/workflows/instances/", {"workflow": "flow.digest", "input": ["ann", []],
                                                               "priority": 100}, content_type="application/json")
    assert response.status_code == 201 and response.json()["priority"] == 100


def test_a_bad_workflow_priority_fails_at_import():
    with pytest.raises(ValueError, match=r"workflow 'flow.bad': priority must be a whole number .* got 1000"):
        @workflow("flow.bad", priority=1000)
        def bad(wf):
            return None
    with pytest.raises(ValueError, match="got 'high'"):
        @workflow("flow.bad", priority="high")
        def also_bad(wf):
            return None


def test_a_fork_keeps_the_priority_of_its_original():
    handle = client.start("flow.digest", "ann", [], priority=9)
    drain()
    assert client.fork(handle.instance_id, from_position=0).priority == 9
