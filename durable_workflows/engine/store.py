"""Claiming an instance for a run, and the reads a run starts with.

A claim moves the instance to Running with a new epoch (the fencing token every later write
of the run carries, see fence.py) and a lease. On PostgreSQL the common claim, a fresh task
for the epoch it was dispatched at, is one prepared statement (pg.py); the rest go through
the ORM on every database.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import traceback as tb
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .. import database
from ..exceptions import InvalidTransition
from ..models import Alarm, StepRecord, WorkflowInstance
from ..states import State, transition
from ..text import storable
from . import clock, concurrency, pg
from .checkpoint import Checkpoint
from .events import EventBuffer
from .faults import engine_io
from .instances import finished, has_family
from .lanes import branch_data
from .lease import Lease
from .observe import RunInfo, about

logger = logging.getLogger("durable_workflows")

MODES = ("fresh", "resume", "recover")
_CLAIMABLE = {"fresh": (State.QUEUED, State.PENDING), "resume": (State.PAUSED,)}


def executor_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def error_fields(error: BaseException) -> dict[str, str]:
    """An error as it is stored: whatever its message holds, the write is never refused
    (text.py), so the failure is recorded once, with its own type."""
    return {
        "error_type": storable(type(error).__name__)[:255],
        "error_message": storable(_message(error)),
        "error_traceback": storable("".join(tb.format_exception(type(error), error, error.__traceback__))),
    }


def _message(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:  # an error whose __str__ fails is still the workflow's failure
        return f"<{type(error).__name__}: its message could not be read>"


@dataclass(eq=False)
class Run:
    """One claim of one instance: the lease it holds and what it has not yet written."""

    instance: WorkflowInstance
    mode: str
    lease: Lease
    checkpoint: Checkpoint
    #: The wait (branch, position) whose fired alarm resumed this run, if any, and the time
    #: that alarm was set for (a timeout's alarm is set for the wait's deadline; a send's
    #: or a child's wake for the moment it came).
    woken: tuple[str, int] | None = None
    woken_at: datetime | None = None
    #: The children found finished when the run first waited for one (children.py).
    finished_children: dict[str, WorkflowInstance] | None = None
    #: What observers (metrics, tracing) know of this run (observe.py).
    observed: RunInfo | None = None
    #: Inbox messages read ahead by its event waits, per event name (inbox.py).
    read_ahead: dict[str, Any] = field(default_factory=dict)

    @property
    def instance_id(self) -> str:
        return self.instance.pk

    @property
    def events(self) -> EventBuffer:
        return self.checkpoint.events

    def settle_lost_lease(self) -> None:
        """After a refused write: cancel if that is why, otherwise leave it to the new owner."""
        with engine_io():
            current = WorkflowInstance.objects.filter(**self.lease.fence.lenient().filter()).first()
        if current is not None and current.cancel_requested:
            cancel_running(current, self.lease)


def _new_run(instance: WorkflowInstance, mode: str, owner: str, epoch: int, events: EventBuffer,
             woken: tuple[str, int] | None = None, woken_at: datetime | None = None) -> Run:
    lease = Lease(instance.pk, epoch, owner)
    return Run(instance, mode, lease, Checkpoint(instance, lease, events), woken, woken_at)


def cancel_running(instance: WorkflowInstance, lease: Lease) -> bool:
    """Move a Running instance whose cancel was requested to Cancelled (by its owner)."""
    events = EventBuffer(instance.pk, instance.workflow)
    events.add("workflow.cancelled", None, reason=instance.cancel_reason)
    with engine_io():
        try:
            with database.atomic():
                transition(instance, State.CANCELLED, fence=lease.fence.lenient(),
                           family_pending=has_family(instance))
                events.write_txn()
        except InvalidTransition:
            return False
    events.send()
    after_final(instance)
    return True


def after_final(instance: WorkflowInstance) -> None:
    """Tell the instance's parent and children it finished, and let the next instance have
    its concurrency slot; a failure here is made good by the periodic `recover()`, so it is
    logged, never raised into a run that is over."""
    try:
        finished(instance)
    except Exception:
        logger.exception("durable_workflows: could not tell the parent or children of %s that it finished",
                         instance.pk, extra=about(instance.pk, instance.workflow))
    try:
        concurrency.slot_freed(instance)
    except Exception:
        logger.exception("durable_workflows: could not admit the next instance after %s", instance.pk,
                         extra=about(instance.pk, instance.workflow))


def claim(instance_id: str, mode: str, epoch: int | None = None) -> Run | None:
    """Take ownership of an instance for one run, or return None if it is not ours to run.

    `epoch` is the epoch the task was dispatched for: a duplicate or stale task finds the epoch
    moved on and does nothing. A database error is a `StoreFault`.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    with engine_io():
        return _claim(instance_id, mode, epoch)


def _claim(instance_id: str, mode: str, epoch: int | None) -> Run | None:
    now = clock.now()
    owner = executor_name()
    if mode == "fresh" and epoch is not None and pg.usable():
        run = _claim_fresh_pg(instance_id, epoch, owner, now)
        if run is not None:
            return run
    instance = WorkflowInstance.objects.filter(pk=instance_id).first()
    if instance is None or (epoch is not None and instance.epoch != epoch):
        return None
    events = EventBuffer(instance.pk, instance.workflow)
    common: dict[str, Any] = {
        "epoch": instance.epoch + 1,
        "lease_owner": owner,
        "lease_expires_at": Lease.until(now),
        "run_count": instance.run_count + 1,
        "last_mode": mode,
        "redispatches": 0,
    }
    if instance.started_at is None:
        common["started_at"] = now
    woken = woken_at = None
    with database.atomic():
        if mode == "recover":
            if not _take_over_txn(instance, now, common):
                return None
            events.add("workflow.recovered", None, attempt=instance.recovery_count)
        else:
            if instance.state not in _CLAIMABLE[mode]:
                return None
            if mode == "fresh" and instance.concurrency_key is not None:
                slot = concurrency.may_start_txn(instance, now)
                if slot is None:
                    return None  # it waits for a slot: committed as such
                common["slot_held"] = slot
            try:
                transition(instance, State.RUNNING, expect_epoch=instance.epoch, **common)
            except InvalidTransition:
                return None
            if mode == "resume":
                # Only a fired alarm ends its sleep or retry delay early; a duplicate or
                # premature resume replays up to the wait and pauses again.
                alarm = Alarm.objects.filter(instance_id=instance.pk).first()
                if alarm is not None and alarm.fired_at is not None:
                    woken, woken_at = (alarm.branch, alarm.position), alarm.fire_at
                    alarm.delete()
                events.add("workflow.resumed", None, woken_position=woken and woken[1],
                           **branch_data(woken[0] if woken else ""))
            else:
                events.add("workflow.started", None)
        events.write_txn()
    events.send()
    return _new_run(instance, mode, owner, instance.epoch, events, woken, woken_at)


def _claim_fresh_pg(instance_id: str, epoch: int, owner: str, now: datetime) -> Run | None:
    """The common claim in one statement: a fresh task for the epoch it was dispatched at."""
    events = EventBuffer(instance_id, "")
    events.add("workflow.started", None)
    instance = pg.claim_fresh(instance_id, epoch, _CLAIMABLE["fresh"], owner, now,
                              Lease.until(now), events)
    if instance is None:
        return None
    events.workflow = instance.workflow
    events.send()
    return _new_run(instance, "fresh", owner, epoch + 1, events)


def _take_over_txn(instance: WorkflowInstance, now: datetime, fields: dict[str, Any]) -> bool:
    """Claim a Running instance whose lease expired. Its state does not change, so this is
    a lease takeover, not a transition: the compare-and-set is on the old epoch."""
    if not instance.is_stale(now):
        return False
    fields = {**fields, "recovery_count": instance.recovery_count + 1, "updated_at": now}
    updated = WorkflowInstance.objects.filter(
        pk=instance.pk, state=State.RUNNING, epoch=instance.epoch
    ).update(**fields)
    if updated != 1:
        return False
    for key, value in fields.items():
        setattr(instance, key, value)
    return True


def load_records(instance_id: str) -> dict[tuple[str, int], StepRecord]:
    """Every step record of the instance, in one query.

    Columns a replay of a finished step never reads are deferred: the rare record that needs
    them (a step in flight, waiting to retry, or failed) loads them when its replay starts.
    """
    with engine_io():
        records = StepRecord.objects.filter(instance_id=instance_id).defer(*REPLAY_DEFERRED)
        return {r.slot: r for r in records}


REPLAY_DEFERRED = (
    "error_type", "error_message", "error_traceback", "error_replay", "started_at",
    "attempt_started_at", "deadline_at",
)
