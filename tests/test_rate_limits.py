"""Workflow rate limits: at most N first claims in any window of the period (per key), the
rest held Queued with an alarm and released oldest first as the window moves."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from durable_workflows import client, fire_alarms, recover, workflow
from durable_workflows.engine import clock, execute
from durable_workflows.engine.ratelimit import limited_until
from durable_workflows.models import Alarm, WorkflowInstance
from tests.helpers import in_thread
from tests.queueing import TASKS, drain  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=True)

class Frozen:
    """The engine's time, moved only by the test."""

    def __init__(self) -> None:
        self.at = timezone.now()

    def now(self):
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@pytest.fixture(autouse=True)
def queue():
    TASKS.clear()
    with override_settings(DURABLE_WORKFLOWS={"DISPATCHER": "tests.queueing.QueueDispatcher"}):
        yield
    TASKS.clear()


@pytest.fixture
def frozen():
    with clock.using(Frozen()) as source:
        yield source


def states(handles) -> list[str]:
    return [str(client.get(h.instance_id).state) for h in handles]


def started(frozen, workflow: str, count: int, *args) -> list:
    """`count` instances, created in this order (the oldest go first)."""
    handles = []
    for _ in range(count):
        handles.append(client.start(workflow, *args))
        frozen.advance(0.001)
    return handles


@pytest.mark.parametrize("limit", ["10/x", "0/s", "-1/m", "ten/s", "10", "", 10])
def test_a_limit_that_does_not_parse_is_refused_at_import(limit):
    with pytest.raises(ValueError, match=r"workflow 'rates.bad': rate_limit: .* is not a rate"):
        @workflow("rates.bad", rate_limit=limit)
        def bad(wf): ...


def test_a_rate_key_that_is_not_a_parameter_is_refused_at_import():
    with pytest.raises(ValueError, match=r"rate_key 'acount' is not a parameter of the function \(its parameters: account\)"):
        @workflow("rates.bad", rate_limit="1/s", rate_key="acount")
        def bad(wf, account): ...
    with pytest.raises(ValueError, match="rate_key is given without rate_limit"):
        @workflow("rates.bad", rate_key="account")
        def bad_too(wf, account): ...


def test_first_claims_are_capped_per_window_and_released_oldest_first_as_it_moves(frozen):
    handles = started(frozen, "rates.three_a_minute", 7)
    drain()
    assert states(handles) == ["completed"] * 3 + ["queued"] * 4
    first_window_ends = client.get(handles[0].instance_id).instance.started_at + timedelta(minutes=1)
    held = WorkflowInstance.objects.get(pk=handles[3].instance_id)
    # Held with no task out (the lost-task scans leave it alone) and its alarm at the window's end.
    assert held.dispatched_at is None and limited_until(held) == first_window_ends
    assert recover() == [] and TASKS == []

    frozen.advance(30)
    assert fire_alarms() == [] and TASKS == []
    frozen.at = first_window_ends
    assert fire_alarms() == [h.instance_id for h in handles[3:6]]  # the three oldest
    drain()
    assert states(handles) == ["completed"] * 6 + ["queued"]
    last = WorkflowInstance.objects.get(pk=handles[6].instance_id)
    assert limited_until(last) == client.get(handles[3].instance_id).instance.started_at + timedelta(minutes=1)

    frozen.advance(60)
    assert fire_alarms() == [handles[6].instance_id]
    drain()
    assert states(handles) == ["completed"] * 7
    assert Alarm.objects.count() == 0
    starts = sorted(WorkflowInstance.objects.values_list("started_at", flat=True))
    assert all(later - earlier >= timedelta(minutes=1) for earlier, later in zip(starts, starts[3:], strict=False))


def test_instances_waiting_for_the_window_go_by_priority_then_oldest(frozen):
    first = started(frozen, "rates.three_a_minute", 3)
    drain()
    waiting = []
    for priority in (0, 5, -3, 5, 10):
        waiting.append(client.start("rates.three_a_minute", priority=priority))
        frozen.advance(0.001)
    drain()
    assert states(first) == ["completed"] * 3 and states(waiting) == ["queued"] * 5
    frozen.advance(61)
    assert fire_alarms() == [waiting[i].instance_id for i in (4, 1, 3)]  # 10, then the older 5, then 5


def test_the_limit_is_counted_per_value_of_the_rate_key(frozen):
    acme = started(frozen, "rates.per_account", 3, "acme")
    globex = [client.start("rates.per_account", "globex") for _ in range(2)]
    drain()
    assert states(acme) == ["completed", "completed", "queued"]
    assert states(globex) == ["completed", "completed"]
    frozen.advance(3600)
    fire_alarms()
    drain()
    assert states(acme) == ["completed"] * 3


def test_a_redispatched_or_duplicate_task_of_a_held_instance_does_not_start_it(frozen):
    handles = started(frozen, "rates.three_a_minute", 4)
    duplicate = list(TASKS[-1])
    drain()
    execute(*duplicate)
    assert states(handles) == ["completed"] * 3 + ["queued"]
    assert Alarm.objects.filter(instance_id=handles[3].instance_id, reason="rate").exists()


def test_a_cancelled_instance_stops_waiting_for_the_window(frozen):
    handles = started(frozen, "rates.three_a_minute", 5)
    drain()
    client.cancel(handles[3].instance_id)
    drain()
    frozen.advance(60)
    assert fire_alarms() == [handles[4].instance_id]
    drain()
    assert states(handles) == ["completed"] * 3 + ["cancelled", "completed"]


def test_claims_at_once_let_only_the_limit_in():
    handles = [client.start("rates.three_a_minute") for _ in range(8)]
    tasks, TASKS[:] = list(TASKS), []
    barrier = threading.Barrier(len(tasks))

    def claim(task):
        barrier.wait(timeout=10)
        execute(*task)

    for thread in [in_thread(lambda task=task: claim(task)) for task in tasks]:
        thread.join(timeout=60)
    assert Counter(states(handles)) == {"completed": 3, "queued": 5}


def test_the_api_and_the_admin_show_until_when_an_instance_is_rate_limited(frozen, admin_client):
    handles = started(frozen, "rates.per_account", 3, "acme")
    drain()
    held = handles[2].instance_id
    until = limited_until(WorkflowInstance.objects.get(pk=held))
    detail = admin_client.get(f"/api/workflows/instances/{held}/").json()
    assert detail["state"] == "queued" and detail["rate_limited_until"] is not None
    assert detail["rate_limited_until"].startswith(until.isoformat()[:19])
    assert admin_client.get(f"/api/workflows/instances/{handles[0].instance_id}/").json()["rate_limited_until"] is None
    definition = next(d for d in admin_client.get("/api/workflows/definitions/").json()
                      if d["name"] == "rates.per_account")
    assert (definition["rate_limit"], definition["rate_key"]) == ("2/h", "account")

    shown = f"rate-limited until {timezone.localtime(until):%Y-%m-%d %H:%M:%S} (2/h per &quot;acme&quot;)"
    listing = admin_client.get("/admin/durable_workflows/workflowinstance/").content.decode()
    assert shown in listing
    page = admin_client.get(f"/admin/durable_workflows/workflowinstance/{held}/change/").content.decode()
    assert shown in page


def test_the_testing_helpers_run_a_held_instance_when_its_window_moves():
    from durable_workflows import testing

    with testing.virtual_clock() as virtual:
        began = virtual.now()
        handles = [testing.run("rates.three_a_minute") for _ in range(4)]
        assert [h.state for h in handles] == ["completed"] * 4
        assert virtual.now() - began >= timedelta(minutes=1)  # the fourth waited for the window
