"""Waiting for events sent to the instance: `wf.wait_for_event` on the durable-wait mechanism.

Sent events wait in the instance's inbox (`InboxMessage`), oldest first. A wait takes the
oldest one of its name that no earlier wait took; the record of the wait keeps its payload,
so a replay returns it without looking at the inbox again, and the message is marked taken
in the same commit as that record. With nothing to take, the run stops at the wait; a send
for that name, or the wait's timeout alarm, resumes it.

A run that takes many queued events costs a number of queries linear in them, each of a
bounded size: the inbox of a name is read ahead a page at a time (one query for many
waits), and once TAKEN_PER_WRITE messages are taken the run writes them, with their waits'
records, before it takes more, so the messages a read must leave out (taken by this run,
not yet written) never number more than that.
"""

from __future__ import annotations

from collections import deque
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..durations import parse_duration
from ..exceptions import EventTimeout
from ..models import AlarmReason, InboxMessage, StepKind, StepState
from . import clock
from .cursor import Cursor
from .faults import engine_io
from .lanes import Slot, branch_data
from .names import checked
from .waits import Wait, complete_wait, fail_wait, new_wait, replay_wait

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from .context import WorkflowContext

#: The messages of a name the first read takes; each further read of the run takes twice as
#: many, up to PAGE: a resume that takes one event reads little, a long inbox a page at once.
FIRST_PAGE = 8
PAGE = 256
#: Messages taken since the run's last write after which it writes before it takes more.
TAKEN_PER_WRITE = 200


class ReadAhead:
    """Untaken messages of one name read ahead by this run, oldest first: (id, payload)."""

    def __init__(self) -> None:
        self.messages: deque[tuple[int, str | None]] = deque()
        self.page = FIRST_PAGE


def check_name(name: Any) -> str:
    return checked(name, "an event name")


def wait_at(wf: WorkflowContext, slot: Slot, name: str, timeout: timedelta | None) -> Any:
    """The event wait at `slot`: its payload, `EventTimeout`, or a stop until one comes."""
    cursor = Cursor(wf, slot)
    record, outcome = replay_wait(cursor, name, StepKind.EVENT)
    if outcome.returns:
        return outcome.value
    cursor.stage(record)
    if record is None:
        record = new_wait(cursor, name, StepKind.EVENT, state=StepState.AWAITING,
                          wake_at=None if timeout is None else clock.now() + timeout)
    message = _next(cursor, name)
    if message is not None:
        checkpoint = cursor.checkpoint
        checkpoint.taken[message[0]] = slot.position
        value = complete_wait(cursor, record, message[1])
        if len(checkpoint.taken) >= TAKEN_PER_WRITE:
            checkpoint.save()  # the marks and the waits' records, together
        return value
    # Its timeout alarm woke this run, or the time has come anyway (by this worker's clock).
    # (A send that woke this wait, its event since taken by another wait, is no timeout.)
    run = cursor.run
    woken = (run.woken == slot.key and record.wake_at is not None and run.woken_at is not None
             and run.woken_at >= record.wake_at)
    if woken or (record.wake_at is not None and record.wake_at <= clock.now()):
        cursor.events.add("event.timeout", slot.position, name=name, **branch_data(slot.branch))
        fail_wait(cursor, record, EventTimeout(
            f"no event {name!r} arrived by {record.wake_at:%Y-%m-%d %H:%M:%S %Z}"))
    started = "event.waiting" if record._state.adding else None
    cursor.suspend(Wait(record, AlarmReason.EVENT, started, ready=lambda: _untaken(cursor, name).exists()))


def _next(cursor: Cursor, name: str) -> tuple[int, str | None] | None:
    """The oldest message of `name` no wait took yet, as (id, payload), or None."""
    ahead = cursor.run.read_ahead.get(name)
    if ahead is None:
        ahead = cursor.run.read_ahead[name] = ReadAhead()
    if not ahead.messages:
        with engine_io():
            ahead.messages.extend(_untaken(cursor, name).values_list("pk", "payload")[:ahead.page])
        ahead.page = min(ahead.page * 2, PAGE)
    return ahead.messages.popleft() if ahead.messages else None


def _untaken(cursor: Cursor, name: str) -> QuerySet[InboxMessage]:
    """Messages of `name` not taken, in the database or by this run since its last write
    (at most TAKEN_PER_WRITE of those), oldest first."""
    return (
        InboxMessage.objects.filter(instance_id=cursor.instance_id, name=name, taken_at__isnull=True)
        .exclude(pk__in=list(cursor.checkpoint.taken))
        .order_by("id")
    )


def parse_timeout(timeout: timedelta | int | float | str | None) -> timedelta | None:
    if timeout is None:
        return None
    return parse_duration(timeout, what="event wait timeout")
