"""Named step limiters: a step with limiter= takes a unit before its function runs, waits
durably (Paused, an alarm, no worker held) while the limiter is full, and a replay takes none."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import checks
from django.test import override_settings

from durable_workflows import client, fire_alarms
from durable_workflows.engine import clock
from durable_workflows.models import Alarm, LimiterUnit, StepRecord
from tests.queueing import drain
from tests.test_rate_limits import Frozen, states

pytestmark = pytest.mark.django_db(transaction=True)

LIMITED = {"DISPATCHER": "tests.queueing.QueueDispatcher", "LIMITERS": {"payments": "2/m"}}


@pytest.fixture(autouse=True)
def limited():
    from tests.queueing import TASKS

    TASKS.clear()
    with override_settings(DURABLE_WORKFLOWS=LIMITED), clock.using(Frozen()) as frozen:
        yield frozen
    TASKS.clear()


def charge_record(handle) -> StepRecord:
    return StepRecord.objects.get(instance_id=handle.instance_id, name="Charge")


def test_a_full_limiter_makes_the_step_wait_durably_and_it_resumes_when_a_unit_frees(limited):
    handles = [client.start("rates.charge", n) for n in range(3)]
    drain()
    assert states(handles) == ["completed", "completed", "paused"]
    waiting = charge_record(handles[2])
    first_unit = charge_record(handles[0]).started_at
    assert (waiting.state, waiting.attempts, waiting.wake_at) == ("waiting", 0, first_unit + timedelta(minutes=1))
    alarm = Alarm.objects.get(instance_id=handles[2].instance_id)
    assert (alarm.reason, alarm.fire_at) == ("limiter", waiting.wake_at)
    assert client.get(handles[2].instance_id).instance.lease_owner == ""  # no worker held

    limited.advance(30)
    assert fire_alarms() == []
    limited.at = waiting.wake_at
    assert fire_alarms() == [handles[2].instance_id]
    drain()
    assert states(handles) == ["completed"] * 3
    done = charge_record(handles[2])
    assert (done.state, done.attempts, done.started_at) == ("completed", 1, waiting.wake_at)
    # The two units of the first window went as the new one was taken.
    assert list(LimiterUnit.objects.values_list("taken_at", flat=True)) == [waiting.wake_at]


def test_a_replayed_step_takes_no_unit(limited):
    handle = client.start("rates.charge_then_wait", 7)
    drain()
    assert LimiterUnit.objects.count() == 1
    client.send_event(handle.instance_id, "shipped")
    drain()
    assert states([handle]) == ["completed"] and client.get(handle.instance_id).result() == 7
    assert LimiterUnit.objects.count() == 1


def test_an_unknown_limiter_fails_the_instance_naming_it():
    handle = client.start("rates.charge", 1, limiter="stirpe")
    drain()
    instance = client.get(handle.instance_id).instance
    assert instance.state == "failed" and instance.error_type == "ValueError"
    assert "unknown limiter 'stirpe'" in instance.error_message and "payments" in instance.error_message
    assert LimiterUnit.objects.count() == 0


@pytest.mark.parametrize("value", ["25/x", "0/s", 25, None])
def test_a_bad_limiters_value_is_a_system_check_error_and_refused_where_used(value):
    with override_settings(DURABLE_WORKFLOWS={**LIMITED, "LIMITERS": {"payments": value}}):
        errors = [m for m in checks.run_checks() if m.id == "durable_workflows.E011"]
        handle = client.start("rates.charge", 1)
        drain()
    assert len(errors) == 1 and "'payments'" in errors[0].msg and repr(value) in errors[0].msg
    instance = client.get(handle.instance_id).instance
    assert instance.state == "failed" and "LIMITERS']['payments']" in instance.error_message


def test_limiters_that_are_not_a_dict_are_a_system_check_error():
    with override_settings(DURABLE_WORKFLOWS={"LIMITERS": ["payments"]}):
        errors = [m for m in checks.run_checks() if m.id == "durable_workflows.E011"]
    assert len(errors) == 1 and "must be a dict" in errors[0].msg
