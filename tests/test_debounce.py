"""Debounced starts: calls with the same key while one instance is pending make no other;
they give it their arguments and push its start back, never past `debounce_max` after the
first call; concurrent calls make one instance."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.test import override_settings

from durable_workflows import client, fire_alarms
from durable_workflows.models import Alarm, WorkflowInstance
from durable_workflows.testing import virtual_clock
from tests.helpers import in_thread

pytestmark = pytest.mark.django_db

INLINE = {"DISPATCHER": "durable_workflows.dispatch.InlineDispatcher"}


@pytest.fixture
def moving():
    with override_settings(DURABLE_WORKFLOWS=INLINE), virtual_clock() as virtual:
        yield virtual


def digest(user: str, items: list, **options):
    return client.start("flow.digest", user, items, debounce="30s", debounce_key=user, **options)


def test_calls_within_the_window_make_one_start_with_the_last_arguments(moving):
    first = digest("ann", [1])
    assert first.created and first.state == "queued"
    assert first.start_at == first.instance.created_at + timedelta(seconds=30)
    moving.advance(timedelta(seconds=20))
    second = digest("ann", [1, 2])
    assert not second.created and second.instance_id == first.instance_id
    assert second.start_at == second.instance.updated_at + timedelta(seconds=30) > first.start_at
    other = digest("bob", [9])  # another key: an instance of its own
    assert other.created and other.instance_id != first.instance_id
    moving.advance(timedelta(seconds=29))
    assert fire_alarms() == []
    assert client.get(first.instance_id).state == "queued"
    moving.advance(timedelta(seconds=2))
    assert set(fire_alarms()) == {first.instance_id, other.instance_id}
    assert client.get(first.instance_id).result() == {"user": "ann", "items": [1, 2]}
    assert WorkflowInstance.objects.filter(workflow="flow.digest").count() == 2
    # Once it has started, the next call begins another window.
    third = digest("ann", [3])
    assert third.created and third.instance_id != first.instance_id


def test_debounce_max_caps_the_wait_from_the_first_call(moving):
    first = digest("ann", [0], debounce_max="1m")
    created = first.instance.created_at
    handles = [first]
    for n in range(1, 6):
        moving.advance(timedelta(seconds=20))
        handles.append(digest("ann", [n], debounce_max="1m"))
        assert handles[-1].start_at <= handles[-1].instance.created_at + timedelta(minutes=1)
        fire_alarms()
    # The calls at 0s, 20s and 40s reach the first (the last pushes it to the cap, 60s); the
    # one just after 60s finds it due and starts another, which the next two reach.
    ids = [h.instance_id for h in handles]
    assert ids[:3] == [first.instance_id] * 3 and ids[3:] == [ids[3]] * 3 and ids[3] != first.instance_id
    assert [h.created for h in handles] == [True, False, False, True, False, False]
    done = client.get(first.instance_id)
    assert done.state == "completed" and done.result()["items"] == [2]
    assert done.start_at == created + timedelta(minutes=1)


def test_no_key_debounces_the_whole_workflow_and_a_key_is_any_json(moving):
    first = client.start("flow.digest", "ann", [], debounce="1m")
    again = client.start("flow.digest", "bob", [], debounce="1m")
    assert again.instance_id == first.instance_id and not again.created
    keyed = client.start("flow.digest", "cy", [], debounce="1m", debounce_key={"user": 1, "kind": ["a"]})
    same = client.start("flow.digest", "dee", [], debounce="1m", debounce_key={"kind": ["a"], "user": 1})
    assert same.instance_id == keyed.instance_id != first.instance_id
    assert WorkflowInstance.objects.get(pk=keyed.instance_id).debounce_key == '{"kind": ["a"], "user": 1}'


def test_bad_debounce_options_are_refused_and_store_nothing(moving):
    for options, says in (
        ({"debounce_key": "ann"}, "debounce_key is given without debounce="),
        ({"debounce_max": "1m"}, "debounce_max is given without debounce="),
        ({"debounce": "later"}, "invalid debounce 'later'"),
        ({"debounce": 0}, "invalid debounce 0: must be more than 0"),
        ({"debounce": "1m", "debounce_max": "-1s"}, "invalid debounce_max"),
        ({"debounce": "1m", "debounce_key": object()}, "debounce_key must be a JSON value"),
        ({"debounce": "1m", "delay": "5m"}, "a debounced start is delayed by its debounce"),
        ({"debounce": "1m", "instance_id": "mine"}, "it takes no instance_id"),
    ):
        with pytest.raises(ValueError, match=says):
            client.start("flow.digest", "ann", [], **options)
    with pytest.raises(TypeError, match="cannot take these arguments"):
        client.start("flow.digest", "ann", debounce="1m")
    assert not WorkflowInstance.objects.exists() and not Alarm.objects.exists()


def test_a_call_with_arguments_that_do_not_fit_leaves_the_pending_one_as_it_was(moving):
    first = digest("ann", [1])
    with pytest.raises(TypeError):
        client.start("flow.digest", "ann", [1], 3, debounce="30s", debounce_key="ann")
    assert client.get(first.instance_id).start_at == first.start_at
    assert WorkflowInstance.objects.get(pk=first.instance_id).input == first.instance.input


def test_the_api_debounces(admin_client, moving):
    body = {"workflow": "flow.digest", "input": ["ann", [1]], "debounce": "1m", "debounce_key": ["ann", 1]}
    first = admin_client.post("/api/workflows/instances/", body, content_type="application/json")
    again = admin_client.post("/api/workflows/instances/", {**body, "input": ["ann", [2]]},
                              content_type="application/json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"] and again.json()["input"] == ["ann", [2]]
    bad = admin_client.post("/api/workflows/instances/", {**body, "debounce": None},
                            content_type="application/json")
    assert bad.status_code == 400 and "debounce_key" in bad.json(), bad.json()


@pytest.mark.django_db(transaction=True)
def test_concurrent_calls_make_one_pending_instance():
    barrier = threading.Barrier(6)
    handles = []

    def call(n: int) -> None:
        barrier.wait(timeout=10)
        handles.append(client.start("flow.digest", "ann", [n], debounce="1h", debounce_key="ann"))

    threads = [in_thread(lambda n=n: call(n)) for n in range(6)]
    for thread in threads:
        thread.join(timeout=60)
    assert len(handles) == 6
    assert len({h.instance_id for h in handles}) == 1
    assert sum(h.created for h in handles) == 1
    assert WorkflowInstance.objects.filter(workflow="flow.digest").count() == 1
    assert Alarm.objects.filter(reason="start").count() == 1


@pytest.mark.requires_postgres
@pytest.mark.django_db(transaction=True)
def test_a_release_that_meets_a_push_under_way_leaves_it_pushed(moving):
    from durable_workflows import database
    from durable_workflows.engine import debounce
    from durable_workflows.engine.concurrency import lock_txn
    from durable_workflows.registry import get_definition
    from durable_workflows.start_options import StartOptions
    from tests.helpers import wait_until

    first = digest("ann", [1])
    pushed, releasing, released = threading.Event(), threading.Event(), []
    options = StartOptions.parse(debounce="30s", debounce_key="ann")

    def push() -> None:
        with database.atomic():
            lock_txn("debounce", "flow.digest", options.debounce_key)
            assert debounce.push_txn(get_definition("flow.digest"), ["ann", [1, 2]], {}, options, moving.now())
            pushed.set()
            releasing.wait(timeout=30)
            # The release is blocked on the alarm this push has changed, until it commits.
            wait_until(_waits_for_a_lock, timeout=30, message="the release to wait for the push")

    def release() -> None:
        pushed.wait(timeout=30)
        moving.advance(timedelta(seconds=31))  # the alarm as the release reads it is due
        releasing.set()
        released.extend(fire_alarms())

    threads = [in_thread(push), in_thread(release)]
    for thread in threads:
        thread.join(timeout=60)
    assert released == []
    pending = client.get(first.instance_id)
    assert pending.state == "queued" and pending.start_at > first.start_at
    moving.advance(timedelta(seconds=30))
    assert fire_alarms() == [first.instance_id]
    assert client.get(first.instance_id).result() == {"user": "ann", "items": [1, 2]}


def _waits_for_a_lock() -> bool:
    from tests.helpers import other_connection

    with other_connection() as db, db.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                       "AND datname = current_database()")
        return cursor.fetchone()[0] > 0
