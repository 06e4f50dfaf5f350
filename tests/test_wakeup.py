"""The ticker's wake-up (engine/wakeup.py): on PostgreSQL a committed alarm is announced on
the LISTEN connection with its fire time, whoever wrote it; a listener whose connection was
cut says "look now" and listens again."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from durable_workflows import client, fire_alarms
from durable_workflows.engine import execute, wakeup
from durable_workflows.models import Alarm, StepKind, StepRecord
from tests.helpers import queued, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

NO_DISPATCH = {"DISPATCHER": "tests.test_engine_client.NoDispatch"}


@pytest.fixture
def listener():
    if not wakeup.listens():
        pytest.skip("LISTEN needs PostgreSQL through psycopg 3")
    listening = wakeup.Listen(threading.Event())
    assert listening.wait(0) == wakeup.LOOK_NOW  # connected: look once for what came before
    yield listening
    listening.close()


def heard(listening: wakeup.Listen, within: float = 10.0) -> float:
    """The fire time of the next announcement, waiting up to `within` seconds."""
    announced = listening.wait(within)
    assert announced is not None, f"no notification within {within}s"
    return announced


def test_a_run_that_pauses_announces_its_alarm_with_the_time_it_is_due(listener):
    handle = client.start("tests.nap", "1h")
    alarm = Alarm.objects.get(instance_id=handle.instance_id)
    assert heard(listener) == pytest.approx(alarm.fire_at.timestamp(), abs=1e-3)


def test_a_child_that_ends_announces_its_waiting_parent_as_due_now(listener):
    with override_settings(DURABLE_WORKFLOWS=NO_DISPATCH):
        parent = queued("children.wait_nappers", 1)
        execute(parent.instance_id, "fresh", 0)  # starts its child, waits for it
        (child,) = parent.refresh().children
        execute(child, "fresh", 0)  # sleeps an hour
        heard(listener)
        past = timezone.now() - timedelta(hours=2)
        StepRecord.objects.filter(instance_id=child, kind=StepKind.SLEEP).update(wake_at=past)
        # It ends, and its parent's alarm is due now, for the ticker to fire.
        execute(child, "resume", Alarm.objects.get(instance_id=child).epoch)
    due = heard(listener)
    woken = Alarm.objects.get(instance_id=parent.instance_id)
    assert woken.fired_at is None and due == pytest.approx(woken.fire_at.timestamp(), abs=1e-3)


def test_an_event_resumes_its_instance_at_once_without_the_ticker(listener):
    with override_settings(DURABLE_WORKFLOWS=NO_DISPATCH):
        handle = queued("events.three")
        execute(handle.instance_id, "fresh", 0)
        client.send_event(handle.instance_id, "item", 1)
    assert Alarm.objects.get(instance_id=handle.instance_id).fired_at is not None  # dispatched
    assert listener.wait(0.3) is None


def test_an_alarm_that_fires_is_not_announced_again(listener):
    handle = client.start("tests.nap", "1h")
    heard(listener)
    Alarm.objects.filter(instance_id=handle.instance_id).update(fire_at=Alarm.objects.get(
        instance_id=handle.instance_id).fire_at.replace(year=2020))
    assert heard(listener) < time.time()  # moved earlier: announced
    with override_settings(DURABLE_WORKFLOWS=NO_DISPATCH):
        fire_alarms()
    assert Alarm.objects.get(instance_id=handle.instance_id).fired_at is not None
    assert listener.wait(0.3) is None


def test_a_terminated_listen_connection_says_look_now_and_listens_again(listener):
    pid = listener.backend_pid
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    assert listener.wait(10) == wakeup.LOOK_NOW  # the cut: whatever was sent is looked for
    assert listener.wait(10) == wakeup.LOOK_NOW  # connected again
    assert wait_until(lambda: listener.backend_pid not in (None, pid), message="a new session")
    handle = client.start("tests.nap", "1h")
    assert heard(listener) == pytest.approx(
        Alarm.objects.get(instance_id=handle.instance_id).fire_at.timestamp(), abs=1e-3)


def test_poll_is_what_waits_where_nothing_can_listen():
    stopping = threading.Event()
    with override_settings(DURABLE_WORKFLOWS={"WAKEUP": "poll"}):
        assert isinstance(wakeup.waiter(stopping), wakeup.Poll)
    if connection.vendor != "postgresql":
        assert isinstance(wakeup.waiter(stopping), wakeup.Poll)
    stopping.set()
    assert wakeup.Poll(stopping).wait(60) is None  # a stopped ticker does not wait
