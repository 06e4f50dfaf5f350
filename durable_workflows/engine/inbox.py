"""Waiting for events sent to the instance: `wf.wait_for_event` on the durable-wait mechanism.

Sent events wait in the instance's inbox (`InboxMessage`), oldest first. A wait takes the
oldest one of its name that no earlier wait took; the record of the wait keeps its payload,
so a replay returns it without looking at the inbox again, and the message is marked taken
in the same commit as that record. With nothing to take, the run stops at the wait; a send
for that name, or the wait's timeout alarm, resumes it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..durations import parse_duration
from ..exceptions import EventTimeout
from ..models import AlarmReason, InboxMessage, StepKind, StepState
from . import clock
from .faults import engine_io
from .lanes import Slot, branch_data
from .names import checked
from .waits import Wait, complete_wait, fail_wait, new_wait, replay_wait

if TYPE_CHECKING:
    from .context import WorkflowContext


def check_name(name: Any) -> str:
    return checked(name, "an event name")


def wait_at(wf: WorkflowContext, slot: Slot, name: str, timeout: timedelta | None) -> Any:
    """The event wait at `slot`: its payload, `EventTimeout`, or a stop until one comes."""
    record, outcome = replay_wait(wf, slot, name, StepKind.EVENT)
    if outcome.returns:
        return outcome.value
    wf._frontier(slot.lane)
    if record is None:
        record = new_wait(wf, slot, name, StepKind.EVENT, state=StepState.AWAITING,
                          wake_at=None if timeout is None else clock.now() + timeout)
    message = _oldest(wf, name)
    if message is not None:
        wf._run.checkpoint.taken[message.pk] = slot.position
        return complete_wait(wf, slot, record, message.payload)
    # Its timeout alarm woke this run, or the time has come anyway (by this worker's clock).
    # (A send that woke this wait, its event since taken by another wait, is no timeout.)
    run = wf._run
    woken = (run.woken == slot.key and record.wake_at is not None and run.woken_at is not None
             and run.woken_at >= record.wake_at)
    if woken or (record.wake_at is not None and record.wake_at <= clock.now()):
        wf._run.events.add("event.timeout", slot.position, name=name, **branch_data(slot.branch))
        fail_wait(wf, slot, record, EventTimeout(
            f"no event {name!r} arrived by {record.wake_at:%Y-%m-%d %H:%M:%S %Z}"))
    started = "event.waiting" if record._state.adding else None
    wf._suspend(slot, Wait(record, AlarmReason.EVENT, started, ready=lambda: _oldest(wf, name) is not None))


def _oldest(wf: WorkflowContext, name: str) -> InboxMessage | None:
    taken = wf._run.checkpoint.taken
    with engine_io():
        return (
            InboxMessage.objects.filter(instance_id=wf.instance_id, name=name, taken_at__isnull=True)
            .exclude(pk__in=list(taken))
            .order_by("id")
            .first()
        )


def parse_timeout(timeout: timedelta | int | float | str | None) -> timedelta | None:
    if timeout is None:
        return None
    return parse_duration(timeout, what="event wait timeout")
