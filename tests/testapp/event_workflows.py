"""Workflows for the event and deadline tests."""

from __future__ import annotations

from datetime import timedelta

from durable_workflows import EventTimeout, client, workflow

from .fault_workflows import note


@workflow("events.approval")
def approval(wf, claim: str):
    wf.step("Ask", note, "ask", claim)
    try:
        decision = wf.wait_for_event("approval", timeout="3 days")
    except EventTimeout:
        decision = {"approved": False, "why": "no answer"}
    return wf.step("Apply", note, "apply", {"claim": claim, "decision": decision})


@workflow("events.strict")
def strict(wf):
    return wf.wait_for_event("go", timeout="1h")


@workflow("events.three")
def three(wf):
    return [wf.wait_for_event("item") for _ in range(3)]


@workflow("events.then_sleep")
def then_sleep(wf):
    got = wf.wait_for_event("data")
    wf.sleep("1h")
    return wf.step("Use", note, "use", got)


@workflow("events.async")
async def async_waiter(wf):
    first = await wf.wait_for_event("one")
    await wf.sleep("1h")
    second = await wf.wait_for_event("two", timeout="1h")
    return [first, second]


@workflow("events.sender")
def sender(wf, target: str):
    return wf.step("Tell", client.send_event, target, "ping", {"from": wf.instance_id}, event_id=f"{wf.instance_id}:ping")


@workflow("events.receiver")
def receiver(wf):
    return wf.wait_for_event("ping")


@workflow("events.in_step")
def wait_in_step(wf):
    return wf.step("Wrong", lambda: wf.wait_for_event("x"))


@workflow("events.deadline", timeout="1h")
def with_deadline(wf, gate: str = ""):
    wf.step("Start", note, "deadline-start", 1)
    wf.wait_for_event("never")
    return "unreachable"


@workflow("events.deadline_running", timeout="2s")
def deadline_running(wf):
    wf.step("Start", note, "dr-start", 1)
    wf.step("Outlive the deadline", outlive_deadline, wf.instance_id)
    return wf.step("After", note, "dr-after", 1)


@workflow("events.deadline_last", timeout=timedelta(seconds=2))
def deadline_last(wf):
    return wf.step("Outlive the deadline", outlive_deadline, wf.instance_id)  # and nothing after it


def outlive_deadline(instance_id: str):
    """A step that is still running when the workflow's deadline passes."""
    from django.utils import timezone

    from durable_workflows.models import WorkflowInstance
    from tests.helpers import wait_until

    deadline = WorkflowInstance.objects.get(pk=instance_id).deadline_at
    wait_until(lambda: timezone.now() > deadline, timeout=5, message="the deadline to pass")
    return "late"
