"""Edges a new user meets early: default names, step arguments that share a primitive's
parameter names, caught step failures on replay, states in any case, async steps in sync
workflows and scope errors in async ones."""

from __future__ import annotations

import pytest
from django.utils import timezone

from durable_workflows import client, workflow
from durable_workflows.engine import fire_alarm_now
from durable_workflows.exceptions import UnknownWorkflow
from durable_workflows.models import Alarm, WorkflowInstance
from durable_workflows.registry import unregister
from durable_workflows.signals import step_started
from durable_workflows.states import transition
from tests.helpers import manage
from tests.testapp.workflows import CALLS, CAUGHT_RESULT

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_caught_step_failure_is_raised_again_on_replay_with_its_class_and_args():
    handle = client.start("tests.caught", "A-1")
    assert handle.state == "paused"
    fire_alarm_now(handle.instance_id)
    handle.refresh()
    assert handle.state == "completed", handle.error
    assert handle.result() == CAUGHT_RESULT
    assert CALLS["charge"] == 1  # the failed step was not run again on replay
    assert handle.steps[0].error["type"] == "PaymentDeclined"


def test_a_caught_step_failure_replays_the_same_in_another_process():
    handle = client.start("tests.caught", "A-2")
    Alarm.objects.filter(instance_id=handle.instance_id).update(fire_at=timezone.now())
    fired = manage("fire-alarms")
    assert fired.returncode == 0, fired.stderr
    handle.refresh()
    assert handle.state == "completed", handle.error
    assert handle.result() == CAUGHT_RESULT


def greet(name: str, fn: str = "", workflow: str = "") -> str:
    return f"{name}{fn}{workflow}"


@workflow("edges.keywords")
def keywords(wf, workflow: str) -> str:
    return wf.step("Greet", greet, name="Ada", fn="!", workflow=workflow)


def test_step_and_start_pass_on_keywords_named_like_their_own_parameters():
    handle = client.start("edges.keywords", workflow="?")
    assert handle.result() == "Ada!?"


def test_the_default_name_is_module_and_function_also_for_a_nested_function():
    @workflow
    def nested(wf) -> str:
        return "nested"

    try:
        assert nested.workflow_name == f"{__name__}.nested"
        assert client.start(f"{__name__}.nested").result() == "nested"
    finally:
        unregister(f"{__name__}.nested")
    with pytest.raises(UnknownWorkflow):
        client.start(f"{__name__}.nested")


@workflow("edges.nap")
def nap(wf) -> str:
    wf.sleep("1h")
    return "rested"


def test_stored_states_compare_equal_in_either_case():
    handle = client.start("edges.nap")
    instance = WorkflowInstance.objects.get(pk=handle.instance_id)
    assert instance.state == "Paused" and instance.state == "paused"
    assert WorkflowInstance.objects.filter(state="Paused").count() == 1
    created = WorkflowInstance.objects.create(id="by-hand", workflow="edges.nap", state="Pending")
    created.refresh_from_db()
    assert created.state == "pending"
    transition(created, "Queued")
    assert WorkflowInstance.objects.get(pk="by-hand").state == "Queued"


async def double(value: int) -> int:
    return value * 2


@workflow("edges.async_step")
def async_step(wf, value: int) -> int:
    return wf.step("Double", double, value) + wf.step("Again", double, value, timeout="5s")


def test_an_async_step_in_a_sync_workflow_is_awaited():
    assert client.start("edges.async_step", 4).result() == 16


@workflow("edges.async_nested")
async def async_nested(wf) -> str:
    def inner() -> str:
        wf.step("Nested", str, 1)
        return "not reached"

    return await wf.step("Outer", inner)


def test_a_sync_step_of_an_async_workflow_cannot_call_wf_step():
    handle = client.start("edges.async_nested")
    assert handle.state == "failed"
    assert handle.error["type"] == "StepScopeError"


ORDER: list[str] = []


def body() -> str:
    ORDER.append("body")
    return "done"


@workflow("edges.order")
def order(wf) -> str:
    return wf.step("Body", body)


def test_step_started_is_signalled_before_the_step_runs():
    ORDER.clear()

    def started(sender, event, position, **kwargs):
        ORDER.append(f"{event} {position}")

    step_started.connect(started)
    try:
        assert client.start("edges.order").result() == "done"
    finally:
        step_started.disconnect(started)
    assert ORDER == ["step.started 0", "body"]
