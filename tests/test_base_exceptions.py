"""A BaseException from step or workflow code (KeyboardInterrupt, SystemExit, a custom
subclass) fails that attempt like an exception, recorded with its type; it never unwinds the
process running the instance."""

from __future__ import annotations

import asyncio
import sys

import pytest

from durable_workflows import RetryPolicy, client, send_event, workflow
from durable_workflows.models import Event, StepRecord, WorkflowInstance

pytestmark = pytest.mark.django_db(transaction=True)

RAN: dict[str, int] = {}


class Custom(BaseException):
    """Not an Exception, and not the engine's."""


RAISED = {"KeyboardInterrupt": KeyboardInterrupt, "SystemExit": SystemExit, "Custom": Custom,
          "CancelledError": asyncio.CancelledError}


def counted(kind: str) -> None:
    RAN[kind] = RAN.get(kind, 0) + 1
    raise RAISED[kind](f"raised by the step: {kind}")


async def counted_async(kind: str) -> None:
    await asyncio.sleep(0)
    counted(kind)


@workflow("base.sync_step")
def sync_step(wf, kind: str):
    wf.step("Raise", counted, kind)


@workflow("base.timed_step")
def timed_step(wf, kind: str):
    wf.step("Raise", counted, kind, timeout="30s")


@workflow("base.async_step_in_sync")
def async_step_in_sync(wf, kind: str):
    wf.step("Raise", counted_async, kind)


@workflow("base.atomic_step")
def atomic_step(wf, kind: str):
    wf.step("Raise", counted, kind, atomic=True)


@workflow("base.async_workflow")
async def async_workflow(wf, kind: str):
    await wf.step("Raise", counted_async, kind)


@workflow("base.async_workflow_sync_step")
async def async_workflow_sync_step(wf, kind: str):
    await wf.step("Raise", counted, kind)


@workflow("base.async_gather")
async def async_gather(wf, kind: str):
    await asyncio.gather(wf.step("Fine", RAN.__setitem__, "fine", 1), wf.step("Raise", counted_async, kind))


@workflow("base.parallel")
def parallel(wf, kind: str):
    wf.parallel(lambda: wf.step("Fine", RAN.__setitem__, "fine", 1), lambda: wf.step("Raise", counted, kind))


@workflow("base.in_workflow")
def in_workflow(wf, kind: str):
    wf.step("Before", RAN.__setitem__, "before", 1)
    raise RAISED[kind](f"raised by the workflow: {kind}")


@workflow("base.retried")
def retried(wf, kind: str):
    wf.step("Raise", counted, kind, retry=RetryPolicy(max_attempts=3, initial_delay=0, jitter=0,
                                                         retry_on=(BaseException,)))


@workflow("base.caught")
def caught(wf, kind: str):
    try:
        wf.step("Raise", counted, kind)
    except BaseException as error:  # noqa: BLE001 - the workflow's own choice
        caught_as = type(error).__name__
    wf.wait_for_event("go")
    return caught_as


@pytest.fixture(autouse=True)
def _clear():
    RAN.clear()
    yield
    RAN.clear()


def failed_once(instance_id: str, kind: str, origin: str = "step") -> WorkflowInstance:
    instance = WorkflowInstance.objects.get(pk=instance_id)
    assert (instance.state, instance.error_type) == ("failed", kind), instance.error_message
    assert instance.error_message == f"raised by the {origin}: {kind}"
    assert instance.run_count == 1 and instance.recovery_count == 0
    assert Event.objects.filter(instance_id=instance_id, kind="workflow.failed").count() == 1
    return instance


def step_failed_once(instance_id: str, kind: str) -> None:
    failed_once(instance_id, kind)
    assert RAN[kind] == 1
    record = StepRecord.objects.get(instance_id=instance_id, name="Raise")
    assert (record.state, record.attempts, record.error_type) == ("failed", 1, kind)


@pytest.mark.parametrize("kind", ["KeyboardInterrupt", "SystemExit", "Custom"])
@pytest.mark.parametrize("name", ["base.sync_step", "base.timed_step", "base.atomic_step", "base.parallel",
                                  "base.async_step_in_sync", "base.async_workflow",
                                  "base.async_workflow_sync_step"])
def test_a_base_exception_from_a_step_fails_the_instance_once_with_its_type(name, kind):
    handle = client.start(name, kind)
    step_failed_once(handle.instance_id, kind)
    if name == "base.parallel":
        assert RAN["fine"] == 1


@pytest.mark.parametrize("kind", ["KeyboardInterrupt", "Custom"])
def test_a_base_exception_from_a_gathered_async_step_fails_the_instance_once(kind):
    handle = client.start("base.async_gather", kind)
    step_failed_once(handle.instance_id, kind)
    assert StepRecord.objects.get(instance_id=handle.instance_id, name="Fine").state == "completed"


@pytest.mark.skipif(sys.version_info < (3, 11), reason="before 3.11 asyncio cannot tell a task's own "
                    "CancelledError from its cancellation (no Task.cancelling())")
def test_an_async_step_that_raises_cancelled_error_itself_fails_with_it():
    handle = client.start("base.async_workflow", "CancelledError")
    step_failed_once(handle.instance_id, "CancelledError")


@pytest.mark.parametrize("kind", ["KeyboardInterrupt", "SystemExit", "Custom"])
def test_a_base_exception_from_the_workflow_itself_fails_the_instance_once(kind):
    handle = client.start("base.in_workflow", kind)
    failed_once(handle.instance_id, kind, origin="workflow")


def test_a_retry_policy_that_asks_for_it_retries_a_base_exception():
    handle = client.start("base.retried", "KeyboardInterrupt")
    failed_once(handle.instance_id, "KeyboardInterrupt")
    assert RAN["KeyboardInterrupt"] == 3
    assert StepRecord.objects.get(instance_id=handle.instance_id, name="Raise").attempts == 3


def test_a_workflow_that_catches_it_replays_the_same_type():
    handle = client.start("base.caught", "KeyboardInterrupt")
    assert handle.refresh().state == "paused"
    send_event(handle.instance_id, "go")
    assert handle.refresh().result() == "KeyboardInterrupt"
    assert handle.instance.run_count == 2  # the replay after the wait raised the same again
    assert RAN["KeyboardInterrupt"] == 1
