"""Retries: durable delays per backoff strategy, exhaustion, filters; per-attempt timeouts."""

import pytest
from django.utils import timezone

from durable_workflows import StepScopeError, start
from durable_workflows.engine import fire_alarm_now
from durable_workflows.models import Alarm, StepRecord
from tests.testapp.engine_workflows import SEEN

pytestmark = pytest.mark.django_db(transaction=True)

def _observed_delays(handle, attempts):
    """Drive a failing step through its retries; return each stored retry delay in seconds."""
    delays = []
    for _ in range(attempts - 1):
        handle.refresh()
        assert handle.state == "paused", handle.error
        alarm = Alarm.objects.get(instance_id=handle.instance_id)
        record = StepRecord.objects.get(instance_id=handle.instance_id, position=0)
        assert alarm.reason == "retry" and record.state == "waiting"
        assert alarm.fire_at == record.wake_at
        delays.append(round((alarm.fire_at - record.attempt_started_at).total_seconds()))
        fire_alarm_now(handle.instance_id)
    return delays


@pytest.mark.parametrize(
    "backoff, extra, expected",
    [
        ("exponential", {}, [10, 20, 40]),
        ("exponential", {"multiplier": 3, "max_delay": "1h"}, [10, 30, 90]),
        ("linear", {}, [10, 20, 30]),
        ("linear", {"increment": "5s"}, [10, 15, 20]),
        ("constant", {}, [10, 10, 10]),
        ("exponential", {"max_delay": "15s"}, [10, 15, 15]),
    ],
)
def test_each_backoff_strategy_stores_its_delays(backoff, extra, expected):
    handle = start("engine.retrying", backoff, 4, "10s", **extra)
    assert _observed_delays(handle, 4) == expected
    handle.refresh()
    assert handle.state == "failed"
    assert SEEN["fails"] == 4


def test_retries_exhausted_fail_with_the_original_error():
    handle = start("engine.retrying", "constant", 3, "1h")
    _observed_delays(handle, 3)
    handle.refresh()
    assert handle.state == "failed"
    assert handle.error["type"] == "ConnectionError"
    assert handle.error["message"] == "refused 3"
    assert "ConnectionError" in handle.error["traceback"]
    step = handle.steps[0]
    assert step.state == "failed" and step.attempts == 3 and step.error["message"] == "refused 3"
    kinds = list(handle.instance.events.values_list("kind", flat=True))
    assert kinds.count("retry.scheduled") == 2 and kinds.count("retry.exhausted") == 1


def test_a_zero_delay_retries_in_the_same_run():
    handle = start("engine.retrying", "constant", 3, 0)
    assert handle.state == "failed"
    assert SEEN["fails"] == 3
    assert handle.instance.run_count == 1


def test_a_retry_that_succeeds_completes_the_step():
    handle = start("tests.flaky", 2, 3, "0s")
    assert handle.result() == "ok"
    assert handle.steps[0].attempts == 3


def test_retry_delay_is_a_durable_pause_resumed_in_resume_mode():
    handle = start("tests.flaky", 1, 3, "200ms")
    assert handle.state == "paused"
    handle.wait(timeout=10)
    assert handle.result() == "ok"
    assert handle.instance.last_mode == "resume"


def test_errors_not_retried_fail_at_once():
    for kind in ("NonRetryable", "ValueError"):
        SEEN.clear()
        handle = start("engine.retry_filtered", kind, "retry_on")
        assert handle.state == "failed" and SEEN["fails"] == 1
    assert handle.error["type"] == "ValueError"


def test_is_retryable_can_refuse():
    handle = start("engine.retry_filtered", "ConnectionError", "is_retryable")
    assert handle.state == "failed" and SEEN["fails"] == 1


def test_max_duration_stops_retrying():
    handle = start("engine.retrying", "constant", 10, "1h", max_duration="30m")
    assert handle.state == "paused"
    StepRecord.objects.filter(instance_id=handle.instance_id).update(
        started_at=timezone.now() - timezone.timedelta(hours=2)
    )
    fire_alarm_now(handle.instance_id)
    handle.refresh()
    assert handle.state == "failed" and SEEN["fails"] == 2


def test_without_retry_the_first_error_fails_the_instance():
    handle = start("engine.no_retry")
    assert handle.state == "failed"
    assert handle.error["type"] == "ValueError" and handle.error["message"] == "bad value 1"
    assert handle.steps[0].state == "failed"


def test_timeout_fails_the_attempt_with_step_timeout():
    handle = start("engine.timeout")
    assert handle.state == "failed"
    assert handle.error["type"] == "StepTimeout"
    assert "Slow" in handle.error["message"] and "0.2s" in handle.error["message"]
    kinds = list(handle.instance.events.values_list("kind", flat=True))
    assert "timeout.set" in kinds and "timeout.exceeded" in kinds


def test_timeout_is_renewed_for_each_attempt():
    handle = start("engine.timeout", 3)
    assert handle.state == "failed" and handle.error["type"] == "StepTimeout"
    step = handle.steps[0]
    assert step.attempts == 3
    deadlines = handle.instance.events.filter(kind="timeout.set").values_list("data", flat=True)
    assert len({d["deadline"] for d in deadlines}) == 3


def test_async_step_is_cancelled_at_its_deadline():
    handle = start("engine.async_timeout")
    assert handle.state == "failed" and handle.error["type"] == "StepTimeout"


def test_primitives_inside_a_step_raise_step_scope_error():
    handle = start("engine.nested")
    assert handle.state == "failed"
    assert handle.error["type"] == StepScopeError.__name__
    assert SEEN["inner"] == 0


@pytest.mark.parametrize("how, expected", [
    ("squares", [10, 40, 90]),
    ("text", [60, 120, 180]),
    ("timedelta", [3600, 7200, 10800]),
])
def test_a_backoff_function_decides_each_delay(how, expected):
    handle = start("engine.custom_backoff", how)
    assert _observed_delays(handle, 4) == expected
    assert handle.refresh().state == "failed" and SEEN["fails"] == 4


@pytest.mark.parametrize("how, says", [
    ("raises", "its backoff _raising_backoff(1) raised KeyError"),
    ("negative", "not a delay of zero or more"),
    ("nonsense", "returned ['soon'], not seconds"),
])
def test_a_backoff_function_that_fails_fails_the_step_naming_the_policy(how, says):
    handle = start("engine.custom_backoff", how).refresh()
    assert handle.state == "completed"  # the workflow caught the step's error
    message = handle.result()
    assert message.startswith("caught: RetryPolicy(") and says in message, message
    step = handle.steps[0]
    assert step.state == "failed" and step.attempts == 1 and step.error["type"] == "ValueError"
