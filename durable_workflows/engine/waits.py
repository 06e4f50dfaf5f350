"""Durable waits: a record at a position that the run stops at until something ends it.

A primitive that must wait does not write anything itself. It names the wait and unwinds
the workflow function with `Suspend`; the executor commits the wait (its record, its alarm,
the move to Paused) once the function has unwound. Sleeps and retry delays wait this way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn

from django.db.models import F

from .. import database, serialization
from ..conf import settings
from ..dispatch import get_dispatcher, on_commit
from ..models import Alarm, AlarmReason, StepKind, StepRecord, StepState, WorkflowInstance
from ..states import State, as_state
from ..text import storable
from . import clock, failures
from .cursor import Cursor
from .faults import engine_io
from .lanes import Slot, branch_data
from .outcome import RUN, Outcome, returned

if TYPE_CHECKING:
    from .context import WorkflowContext


@dataclass(frozen=True)
class Wait:
    record: StepRecord
    reason: str
    #: The lifecycle event that announces a new wait ("sleep.started"), if any.
    started_event: str | None = None
    #: Asked inside the transaction that commits the pause: True when what the wait is for
    #: came meanwhile (an event sent while the run was unwinding), so it resumes at once.
    ready: Callable[[], bool] | None = None

    @property
    def until(self) -> datetime | None:
        """When the wait ends on its own (its alarm); None for a wait without a timeout."""
        return self.record.wake_at


def replay_wait(cursor: Cursor, name: str, kind: str) -> tuple[StepRecord | None, Outcome]:
    """The recorded wait at the cursor: what it returned, or its failure raised again, or
    (unfinished or new) the record to go on with."""
    record = cursor.replay(name, kind)
    if record is None:
        return None, RUN
    if record.state == StepState.COMPLETED:
        cursor.lane.advance(record.finished_at)
        return record, returned(serialization.loads(record.result))
    if record.state == StepState.FAILED:
        with engine_io():
            cursor.checkpoint.store.load_deferred(record, ["error_type", "error_message", "error_replay"])
        raise failures.rebuild(record)
    return record, RUN


def new_wait(cursor: Cursor, name: str, kind: str, **fields: Any) -> StepRecord:
    """The record of a wait that this run reaches for the first time (staged: a replay check
    stops before it)."""
    return cursor.new_record(name, kind, **fields)


def complete_wait(cursor: Cursor, record: StepRecord, stored: str | None) -> Any:
    """The wait ended with `stored` (its serialized outcome); it is written with the next write."""
    now = clock.now()
    if settings.CODEC is not None:  # copied from another row (a payload, a child's result)
        stored = serialization.resealed(stored)
    record.state = StepState.COMPLETED
    record.result = stored
    record.finished_at = now
    record.wake_at = None
    cursor.keep(record)
    cursor.lane.advance(now)
    return serialization.loads(stored)


def fail_wait(cursor: Cursor, record: StepRecord, error: BaseException) -> NoReturn:
    """The wait ended with `error`, recorded so that a replay raises the same again."""
    now = clock.now()
    record.state = StepState.FAILED
    record.finished_at = now
    record.error_type = type(error).__name__
    record.error_message = storable(str(error))
    record.error_replay = failures.replay_info(error)
    cursor.keep(record)
    cursor.lane.advance(now)
    raise error


def is_due(cursor: Cursor, record: StepRecord) -> bool:
    """A wait ends when its alarm woke this run, or when its time has come anyway."""
    return cursor.run.woken == record.slot or (
        record.wake_at is not None and record.wake_at <= clock.now()
    )


def sleep_at(wf: WorkflowContext, slot: Slot, wake_at: datetime, name: str) -> None:
    """The sleep at `slot`: returns when it is over, or stops the lane until it is."""
    cursor = Cursor(wf, slot)
    record = cursor.replay(name, StepKind.SLEEP)
    if record is not None:
        if record.state == StepState.COMPLETED:
            cursor.lane.advance(record.finished_at or record.wake_at)
            return
        cursor.stage(record)
        if not is_due(cursor, record):
            cursor.suspend(Wait(record, AlarmReason.SLEEP))
        now = clock.now()
        record.state = StepState.COMPLETED
        record.finished_at = now
        cursor.keep(record)
        cursor.events.add("sleep.completed", slot.position, name=name, **branch_data(slot.branch))
        cursor.lane.advance(now)
        return
    if wake_at <= clock.now():
        return
    record = new_wait(cursor, name, StepKind.SLEEP, state=StepState.SLEEPING, wake_at=wake_at)
    cursor.suspend(Wait(record, AlarmReason.SLEEP, "sleep.started"))


LOCKED_FIELDS = ("id", "workflow", "state", "epoch", "parent_id", "cancel_reason")


def lock_txn(instance_id: str) -> WorkflowInstance | None:
    """Lock the instance row, whatever its state, for the rest of the transaction: a send or
    a child's end that wakes a waiting run must wait for that run's pause to commit (or
    come before it), never read the row as it was before the pause."""
    rows = WorkflowInstance.objects.filter(pk=instance_id)
    if database.connection().vendor == "postgresql":
        return rows.select_for_update().only(*LOCKED_FIELDS).first()
    rows.update(epoch=F("epoch"))  # write first: SQLite takes its write lock here
    return rows.only(*LOCKED_FIELDS).first()


def wake_txn(instance: WorkflowInstance, slot: tuple[str, int], reason: str, *, at_once: bool = True) -> bool:
    """End the wait at `slot` (branch, position) of a Paused instance, from outside its run:
    what a sent event or a finished child does. Call inside a transaction that has locked
    the instance row, so that the run's pause (which asks its waits' `ready` under the same
    lock) and this wake are ordered one way or the other and neither is lost.

    The instance's alarm becomes due now. `at_once` also marks it fired, and the caller
    dispatches the resume (`resume_on_commit`) once its transaction block is over (a lost
    dispatch is sent again by the scans, as for any fired alarm); otherwise the next
    `fire_alarms()` pass takes it, within the alarm poll, so that many wakes in a short while
    (children finishing together) make one resume. Returns whether the caller must dispatch.
    """
    now = clock.now()
    at_once = at_once_here(at_once)
    branch, position = slot
    values = {"fire_at": now, "fired_at": now if at_once else None, "reason": reason,
              "branch": branch, "position": position, "epoch": instance.epoch}
    # The instance row is locked, so no other writer can create or drop its alarm meanwhile.
    if not Alarm.objects.filter(instance_id=instance.pk).update(**values):
        Alarm.objects.create(instance_id=instance.pk, **values)
    return at_once


def at_once_here(at_once: bool) -> bool:
    """A wake resumes at once when asked to, or when the dispatcher runs instances inline
    (there are no workers to fire the alarm)."""
    return at_once or get_dispatcher().synchronous


def resume_on_commit(instance: WorkflowInstance) -> None:
    """Dispatch the instance's resume once the caller's transaction commits. Called after
    the caller's own atomic block, so that inside a test's transaction (TestCase) it runs
    at once, as it would after a real commit."""
    dispatcher = get_dispatcher()
    on_commit(lambda: dispatcher.dispatch(instance.pk, "resume", instance.epoch))


#: The kinds of durable wait, each with the alarm reason its end carries and the module that
#: defines it (its primitive, its replay, its timeout). A resumed run replays, so the engine
#: needs no code of its own per kind: this is where a new kind is named, for those that wake
#: it from outside the run (wake_waiting_txn) and for the reader. See cursor.py.
WAIT_KINDS: dict[str, tuple[str, str]] = {
    StepKind.SLEEP: (AlarmReason.SLEEP, "durable_workflows.engine.waits"),
    StepKind.STEP: (AlarmReason.RETRY, "durable_workflows.engine.steps"),
    StepKind.EVENT: (AlarmReason.EVENT, "durable_workflows.engine.inbox"),
    StepKind.CHILD: (AlarmReason.CHILD, "durable_workflows.engine.children"),
}


def wake_waiting_txn(instance: WorkflowInstance, kind: str, name: str, reason: str | None = None, *,
                     at_once: bool = True) -> tuple[str, int] | None:
    """`wake_txn` for the wait of `kind` and `name` the locked, Paused instance is stopped
    at, if that is what it waits for; the alarm reason is the kind's (WAIT_KINDS) unless
    given. Returns the slot woken, or None."""
    reason = WAIT_KINDS[kind][0] if reason is None else reason
    if as_state(instance.state) != State.PAUSED:
        return None
    wait = StepRecord.objects.filter(
        instance_id=instance.pk, kind=kind, state=StepState.AWAITING, name=name
    ).order_by("-id").values_list("branch", "position").first()
    if wait is not None:
        wake_txn(instance, wait, reason, at_once=at_once)
    return wait
