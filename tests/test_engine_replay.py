"""Steps run once, code between steps re-runs, sleeps pause durably and resume."""

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from durable_workflows import client, run_inline, start
from durable_workflows.engine import fire_alarm_now, fire_alarms
from durable_workflows.models import Alarm, StepRecord, WorkflowInstance
from durable_workflows.signals import lifecycle_event, step_completed
from tests.helpers import logged
from tests.testapp.engine_workflows import SEEN

pytestmark = pytest.mark.django_db(transaction=True)




def test_step_runs_once_across_resumes_and_code_between_reruns():
    handle = start("engine.between", "1h")
    assert handle.state == "paused"
    assert (SEEN["first"], SEEN["between"], SEEN["top"]) == (1, 1, 1)

    assert fire_alarm_now(handle.instance_id)
    handle.refresh()
    assert handle.state == "completed"
    assert handle.result() == 2
    assert SEEN["first"] == 1, "a finished step must not run again"
    assert SEEN["second"] == 1
    assert SEEN["top"] == 2 and SEEN["between"] == 2, "code between steps re-runs"
    assert handle.instance.last_mode == "resume" and handle.instance.run_count == 2


def test_sleep_pauses_with_an_alarm_and_is_not_resumed_early():
    handle = start("engine.between", "1h")
    alarm = Alarm.objects.get(instance_id=handle.instance_id)
    assert alarm.reason == "sleep"
    expected = handle.steps[1].wake_at
    assert abs((alarm.fire_at - expected).total_seconds()) < 0.001
    assert 3590 < (alarm.fire_at - handle.instance.created_at).total_seconds() < 3610
    assert fire_alarms() == []
    handle.refresh()
    assert handle.state == "paused" and SEEN["second"] == 0
    assert [(s.name, s.kind, s.state) for s in handle.steps] == [
        ("First", "step", "completed"), ("sleep", "sleep", "sleeping")
    ]


def test_sleep_resumes_after_its_time():
    handle = start("engine.between", "300ms")
    assert handle.state == "paused"
    handle.wait(timeout=10)
    assert handle.state == "completed"
    sleep = handle.steps[1]
    assert sleep.state == "completed" and sleep.finished_at >= sleep.wake_at
    assert not Alarm.objects.filter(instance_id=handle.instance_id).exists()


def test_sleep_whose_time_passed_returns_on_replay_without_an_alarm():
    handle = start("engine.between", "200ms")
    handle.wait(timeout=10)
    assert handle.state == "completed"
    assert SEEN["after-sleep"] == 1


def test_zero_sleep_returns_at_once():
    handle = start("engine.between", 0)
    assert handle.state == "completed"
    assert [s.kind for s in handle.steps] == ["step", "step"]


def test_steps_of_one_name_in_a_loop_are_distinct():
    handle = start("engine.loop", 5)
    assert handle.result() == 10
    assert [s.position for s in handle.steps] == [0, 1, 2, 3, 4]
    assert SEEN["add"] == 5


def test_none_is_cached_like_any_result():
    handle = start("engine.none")
    fire_alarm_now(handle.instance_id)
    handle.refresh()
    assert handle.result() == {"first": None}
    assert SEEN["nothing"] == 1


def test_results_round_trip_with_their_types():
    value = {"at": dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc), "price": Decimal("9.99"),
             "id": uuid.UUID(int=3), "pair": (1, 2)}
    handle = start("engine.types", value)
    assert handle.result() == value
    assert handle.steps[0].result == value


def test_replay_loads_steps_in_one_query():
    handle = start("engine.loop", 30)
    instance = WorkflowInstance.objects.get(pk=handle.instance_id)
    WorkflowInstance.objects.filter(pk=instance.pk).update(state="queued")
    from durable_workflows.engine import execute

    with CaptureQueriesContext(connection) as queries:
        assert execute(instance.pk, "fresh") == "completed"
    step_reads = [q for q in queries.captured_queries if "durable_workflows_steprecord" in q["sql"]
                  and q["sql"].lstrip().upper().startswith("SELECT")]
    assert len(step_reads) == 1
    assert SEEN["add"] == 30, "the first run only; the replay ran none"


def test_run_inline_runs_in_this_process_to_the_first_pause():
    handle = run_inline("engine.between", "1h", instance_id="inline-1")
    assert handle.state == "paused" and handle.instance_id == "inline-1"


def test_meta_is_readable_while_paused():
    handle = start("engine.meta", 3)
    assert client.meta(handle.instance_id, "progress") == {"done": 3, "total": 3}
    assert client.meta(handle.instance_id, "missing", "n/a") == "n/a"
    assert handle.meta == {"progress": {"done": 3, "total": 3}}


def test_now_is_recorded_and_stable_on_replay():
    handle = start("engine.clock")
    assert handle.state == "paused"
    fire_alarm_now(handle.instance_id)
    first, second, third, mode = handle.refresh().result()
    record = StepRecord.objects.get(instance_id=handle.instance_id, position=0)
    assert first == handle.instance.created_at
    assert second == record.finished_at
    assert third >= second and mode == "resume"


def test_async_workflow_with_async_and_sync_steps():
    handle = start("engine.async", 4)
    assert handle.state == "paused", handle.error
    assert SEEN["sync-add"] == 1
    fire_alarm_now(handle.instance_id)
    handle.refresh()
    assert handle.result() == 18
    assert SEEN["sync-add"] == 1


def test_events_are_logged_and_signalled():
    received = []

    def receiver(sender, event, instance_id, **kwargs):
        received.append(event)

    lifecycle_event.connect(receiver)
    completions = []
    step_completed.connect(lambda sender, **kw: completions.append(kw["position"]), weak=False,
                           dispatch_uid="test-completions")
    try:
        handle = start("engine.between", "1h")
        fire_alarm_now(handle.instance_id)
    finally:
        lifecycle_event.disconnect(receiver)
        step_completed.disconnect(dispatch_uid="test-completions")
    log = logged(handle.instance_id)
    assert log == received
    for kind in ("workflow.queued", "workflow.started", "step.started", "step.completed",
                 "sleep.started", "workflow.paused", "workflow.resumed", "sleep.completed",
                 "workflow.completed"):
        assert kind in log
    assert completions == [0, 2]
