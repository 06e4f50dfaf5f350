"""sleep_until, scope rules for meta, and start() inside Django's TestCase transaction."""

import datetime as dt

import pytest
from django.utils import timezone

from durable_workflows import start
from durable_workflows.engine import fire_alarm_now


@pytest.mark.django_db(transaction=True)
def test_sleep_until_a_future_time_pauses_until_then():
    when = timezone.now() + dt.timedelta(days=2)
    handle = start("engine.until", when)
    assert handle.state == "paused"
    assert handle.alarm.fire_at == when
    fire_alarm_now(handle.instance_id)
    assert handle.refresh().result() == "up"


@pytest.mark.django_db(transaction=True)
def test_sleep_until_the_past_returns_at_once():
    handle = start("engine.until", timezone.now() - dt.timedelta(seconds=5))
    assert handle.result() == "up"
    assert [s.kind for s in handle.steps] == ["step"]


@pytest.mark.django_db(transaction=True)
def test_sleep_until_a_naive_time_fails_the_instance():
    handle = start("engine.until", dt.datetime(2030, 1, 1))
    assert handle.state == "failed" and "aware" in handle.error["message"]


@pytest.mark.django_db(transaction=True)
def test_set_meta_inside_a_step_is_refused():
    handle = start("engine.meta_in_step")
    assert handle.state == "failed" and handle.error["type"] == "StepScopeError"


@pytest.mark.django_db
def test_start_inside_a_test_case_transaction_runs_as_if_committed():
    handle = start("tests.three_steps", 2)
    assert handle.state == "completed"
    assert handle.result() == 5


@pytest.mark.django_db(transaction=True)
def test_meta_that_is_not_plain_json_fails_the_instance_naming_the_key():
    handle = start("engine.bad_meta")
    assert handle.state == "failed"
    assert handle.error["type"] == "SerializationError" and "'when'" in handle.error["message"]
    assert handle.meta == {}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("prepared", [True, False])
def test_checkpoints_with_and_without_prepared_statements(prepared):
    from django.db import connection
    from django.test import override_settings

    from durable_workflows.engine.store import single_statements

    with override_settings(DURABLE_WORKFLOWS={"PREPARED_STATEMENTS": prepared}):
        handle = start("engine.loop", 4)
    assert handle.state == "completed"
    assert [s.position for s in handle.steps] == [0, 1, 2, 3]
    if single_statements():
        # The checkpoint prepares its own statement only: Django's setting is left as it was.
        assert connection.connection.prepare_threshold is None
