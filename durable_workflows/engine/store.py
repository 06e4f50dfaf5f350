"""The engine's reads and writes. Every write of a running executor is fenced by its epoch.

A run's writes go out in as few transactions as possible: a step's record, the events of
everything since the last write and the lease extension share one commit. Each transaction
starts with its UPDATE of the instance row (write-first), which on PostgreSQL takes the row
lock that orders it against a competing claim, and on SQLite avoids a lock upgrade. On
PostgreSQL the common writes (a fresh claim, a checkpoint, the final transition) are single
prepared statements instead (see pg.py); the rest go through the ORM on every database.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import traceback as tb
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from .. import serialization
from ..conf import settings
from ..exceptions import InvalidTransition, LeaseLost
from ..models import Alarm, StepRecord, WorkflowInstance
from ..states import State, as_state, transition, transition_values
from . import heartbeat, pg
from .events import EventBuffer

MODES = ("fresh", "resume", "recover")
_CLAIMABLE = {"fresh": (State.QUEUED, State.PENDING), "resume": (State.PAUSED,)}


def executor_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def error_fields(error: BaseException) -> dict[str, str]:
    return {
        "error_type": type(error).__name__,
        "error_message": str(error),
        "error_traceback": "".join(tb.format_exception(type(error), error, error.__traceback__)),
    }


@dataclass
class Run:
    """One claim of one instance: what this executor may write, and what it has not yet."""

    instance: WorkflowInstance
    mode: str
    owner: str
    epoch: int
    events: EventBuffer
    woken_position: int | None = None
    dirty: dict[int, StepRecord] = field(default_factory=dict)
    step_finished: bool = False
    renewed_at: float = field(default_factory=time.monotonic)
    beat: int | None = None
    # Whether the PostgreSQL single-statement writes apply; looked up once per run.
    fast: bool = field(default_factory=pg.usable)

    @property
    def instance_id(self) -> str:
        return self.instance.pk

    def lease_until(self, now: datetime) -> datetime:
        return now + timedelta(seconds=settings.LEASE_SECONDS)

    # -- fenced writes -------------------------------------------------------------------
    def save(self, record: StepRecord | None = None) -> None:
        """Commit `record`, the buffered records and events, and extend the lease."""
        if record is not None:
            self.dirty[record.position] = record
        now = timezone.now()
        fields: dict[str, Any] = {}
        reset = self.step_finished and self.instance.recovery_count > 0
        renew = reset or time.monotonic() - self.renewed_at >= settings.HEARTBEAT_SECONDS / 2
        if renew:
            fields = {"lease_expires_at": self.lease_until(now), "updated_at": now}
            if reset:
                fields["recovery_count"] = 0
        try:
            if self.fast and all(r._state.adding for r in self.dirty.values()):
                records, self.dirty = list(self.dirty.values()), {}
                pg.save_fenced(self, records, fields)
            else:
                fields = fields or {"lease_expires_at": self.lease_until(now), "updated_at": now}
                self._save_orm(fields)
                renew = True
            if renew:
                self.renewed_at = time.monotonic()
                if reset:
                    self.instance.recovery_count = 0
                if self.beat is not None:
                    heartbeat.touched(self.beat)
        except BaseException:
            self.events.discard()
            raise
        self.step_finished = False
        self.events.send()

    def _save_orm(self, fields: dict[str, Any]) -> None:
        with transaction.atomic():
            updated = WorkflowInstance.objects.filter(
                pk=self.instance_id, epoch=self.epoch, state=State.RUNNING,
                cancel_requested=False,
            ).update(**fields)
            if updated != 1:
                raise LeaseLost()
            self._write_records_txn()
            self.events.write_txn()

    def finish(self, to: State, *, alarm: Alarm | None = None, **fields: Any) -> None:
        """Commit the move to Paused, Completed or Failed, with everything still buffered."""
        try:
            if alarm is None and not self.dirty and self.fast:
                values = transition_values(as_state(self.instance.state), as_state(to), fields)
                pg.finish(self, values)
                for key, value in values.items():
                    setattr(self.instance, key, value)
            else:
                with transaction.atomic():
                    transition(
                        self.instance, to, expect_epoch=self.epoch,
                        extra_filter={"cancel_requested": False}, **fields,
                    )
                    self._write_records_txn()
                    if alarm is not None:
                        Alarm.objects.filter(instance_id=self.instance_id).delete()
                        alarm.save(force_insert=True)
                    self.events.write_txn()
        except InvalidTransition:
            self.events.discard()
            raise LeaseLost() from None
        except BaseException:
            self.events.discard()
            raise
        self.events.send()

    def _write_records_txn(self) -> None:
        if not self.dirty:
            return
        new = [r for r in self.dirty.values() if r._state.adding]
        for record in self.dirty.values():
            if not record._state.adding:
                record.save(force_update=True)
        if new:
            StepRecord.objects.bulk_create(new)
            for record in new:
                record._state.adding = False
        self.dirty = {}

    def publish_meta(self, meta: dict[str, Any]) -> None:
        updated = WorkflowInstance.objects.filter(
            pk=self.instance_id, epoch=self.epoch, state=State.RUNNING
        ).update(meta=meta, updated_at=timezone.now())
        if updated != 1:
            raise LeaseLost()
        self.instance.meta = meta

    def settle_lost_lease(self) -> None:
        """After a refused write: cancel if that is why, otherwise leave it to the new owner."""
        current = WorkflowInstance.objects.filter(pk=self.instance_id).first()
        if current is None or current.epoch != self.epoch or current.state != State.RUNNING:
            return
        if current.cancel_requested:
            cancel_running(current, self.epoch, self.events)


def cancel_running(instance: WorkflowInstance, epoch: int, events: EventBuffer) -> bool:
    """Move a Running instance whose cancel was requested to Cancelled (by its owner)."""
    events.add("workflow.cancelled", None, reason=instance.cancel_reason)
    try:
        with transaction.atomic():
            transition(instance, State.CANCELLED, expect_epoch=epoch)
            events.write_txn()
    except InvalidTransition:
        events.discard()
        return False
    events.send()
    return True


def claim(instance_id: str, mode: str, epoch: int | None = None) -> Run | None:
    """Take ownership of an instance for one run, or return None if it is not ours to run.

    `epoch` is the epoch the task was dispatched for: a duplicate or stale task finds the epoch
    moved on and does nothing.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    now = timezone.now()
    owner = executor_name()
    if mode == "fresh" and epoch is not None and pg.usable():
        run = _claim_fresh_pg(instance_id, epoch, owner, now)
        if run is not None:
            return run
    instance = WorkflowInstance.objects.filter(pk=instance_id).first()
    if instance is None or (epoch is not None and instance.epoch != epoch):
        return None
    events = EventBuffer(instance.pk, instance.workflow)
    new_epoch = instance.epoch + 1
    common: dict[str, Any] = {
        "epoch": new_epoch,
        "lease_owner": owner,
        "lease_expires_at": now + timedelta(seconds=settings.LEASE_SECONDS),
        "run_count": instance.run_count + 1,
        "last_mode": mode,
    }
    if instance.started_at is None:
        common["started_at"] = now
    woken = None
    try:
        with transaction.atomic():
            if mode == "recover":
                if not _take_over_txn(instance, now, common):
                    return None
                events.add("workflow.recovered", None, attempt=instance.recovery_count)
            else:
                if instance.state not in _CLAIMABLE[mode]:
                    return None
                try:
                    transition(instance, State.RUNNING, expect_epoch=instance.epoch, **common)
                except InvalidTransition:
                    return None
                if mode == "resume":
                    # Only a fired alarm ends its sleep or retry delay early; a duplicate or
                    # premature resume replays up to the wait and pauses again.
                    alarm = Alarm.objects.filter(instance_id=instance.pk).first()
                    if alarm is not None and alarm.fired_at is not None:
                        woken = alarm.position
                        alarm.delete()
                    events.add("workflow.resumed", None, woken_position=woken)
                else:
                    events.add("workflow.started", None)
            events.write_txn()
    except BaseException:
        events.discard()
        raise
    events.send()
    return Run(instance=instance, mode=mode, owner=owner, epoch=new_epoch, events=events,
               woken_position=woken)


def _claim_fresh_pg(instance_id: str, epoch: int, owner: str, now: datetime) -> Run | None:
    """The common claim in one statement: a fresh task for the epoch it was dispatched at."""
    events = EventBuffer(instance_id, "")
    events.add("workflow.started", None)
    try:
        instance = pg.claim_fresh(instance_id, epoch, _CLAIMABLE["fresh"], owner, now,
                                  now + timedelta(seconds=settings.LEASE_SECONDS), events)
    except BaseException:
        events.discard()
        raise
    if instance is None:
        return None
    events.workflow = instance.workflow
    events.send()
    return Run(instance=instance, mode="fresh", owner=owner, epoch=epoch + 1, events=events)


RECOVERY_OWNER = "recovery:"


def is_stale(instance: WorkflowInstance, now: datetime | None = None) -> bool:
    """Whether a recovery may take the instance over: it is Running and its lease lapsed, or
    a recovery scan has reserved it (lease owner "recovery:...")."""
    if instance.state != State.RUNNING:
        return False
    if instance.lease_owner.startswith(RECOVERY_OWNER):
        return True
    expires = instance.lease_expires_at
    return expires is None or expires <= (now or timezone.now())


def _take_over_txn(instance: WorkflowInstance, now: datetime, fields: dict[str, Any]) -> bool:
    """Claim a Running instance whose lease expired. Its state does not change, so this is
    a lease takeover, not a transition: the compare-and-set is on the old epoch."""
    if not is_stale(instance, now):
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


def load_records(instance_id: str) -> dict[int, StepRecord]:
    """Every step record of the instance, in one query.

    Columns a replay of a finished step never reads are deferred: the rare record that needs
    them (a step in flight or waiting to retry) loads them on access.
    """
    records = StepRecord.objects.filter(instance_id=instance_id).defer(*_REPLAY_DEFERRED)
    return {r.position: r for r in records}


_REPLAY_DEFERRED = (
    "error_type", "error_message", "error_traceback", "error_replay", "started_at",
    "attempt_started_at", "deadline_at",
)


def decode_input(instance: WorkflowInstance) -> tuple[list[Any], dict[str, Any]]:
    data = serialization.loads(instance.input) or {}
    return list(data.get("args", [])), dict(data.get("kwargs", {}))


def encode_input(args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]) -> str:
    return serialization.dumps({"args": list(args), "kwargs": kwargs}, "the workflow input")
