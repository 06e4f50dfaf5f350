"""A store in this process's memory, for the replay core's unit tests: no database, and the
same answers as the others (the contract suite holds it to them).

It keeps the model objects themselves, never saved, and copies them in and out, so that a
run sees what a store returns, not the store's own objects. One lock orders its writes as a
database's row lock orders theirs. What a run does beyond a single instance (children, the
concurrency limits, the inbox of events) is the database stores' alone: a write that needs
it raises `NotImplementedError`, naming it.
"""

from __future__ import annotations

import copy
import threading
from datetime import datetime
from itertools import count
from typing import Any

from ...exceptions import InvalidTransition, LeaseLost
from ...models import Alarm, StepRecord, WorkflowInstance
from ...states import State, check_transition
from .. import clock
from ..events import EventBuffer
from ..fence import Fence
from ..lanes import branch_data
from ..lease import Lease
from .base import CLAIMABLE, Claimed, Store, Write
from .orm import next_generation_alarm, pause_alarm


class MemoryStore(Store):
    name = "memory"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._instances: dict[str, WorkflowInstance] = {}
        self._records: dict[str, dict[tuple[str, int], StepRecord]] = {}
        self._events: dict[str, list[tuple[str, int | None, dict[str, Any]]]] = {}
        self._alarms: dict[str, Alarm] = {}
        self._keys = count(1)

    # -- claims ----------------------------------------------------------------------------
    def claim(self, instance_id: str, mode: str, epoch: int | None, owner: str, now: datetime,
              lease_until: datetime) -> Claimed | None:
        with self._lock:
            stored = self._instances.get(instance_id)
            if stored is None or stored.held or (epoch is not None and stored.epoch != epoch):
                return None
            if mode == "recover":
                if not stored.is_stale(now):
                    return None
                stored.recovery_count += 1
                kind = "workflow.recovered"
                data: dict[str, Any] = {"attempt": stored.recovery_count}
            else:
                if stored.state not in CLAIMABLE[mode]:
                    return None
                if mode == "fresh" and (stored.concurrency_key is not None or stored.rate_key is not None):
                    raise NotImplementedError("the memory store has no concurrency or rate limits")
                check_transition(stored.state, State.RUNNING)
                stored.state = State.RUNNING
                kind, data = ("workflow.resumed" if mode == "resume" else "workflow.started"), {}
            stored.epoch += 1
            stored.lease_owner, stored.lease_expires_at = owner, lease_until
            stored.run_count += 1
            stored.last_mode, stored.redispatches, stored.updated_at = mode, 0, now
            if stored.started_at is None:
                stored.started_at = now
            events = EventBuffer(instance_id, stored.workflow)
            claimed = Claimed(copy.copy(stored), events)
            if mode == "resume":
                alarm = self._alarms.get(instance_id)
                woken = None
                if alarm is not None and alarm.fired_at is not None:
                    woken = (alarm.branch, alarm.position)
                    claimed.woken, claimed.woken_at = woken, alarm.fire_at
                    del self._alarms[instance_id]
                data = {"woken_position": woken and woken[1], **branch_data(woken[0] if woken else "")}
            events.add(kind, None, **data)
            self._log(instance_id, events.rows())
            return claimed

    # -- reads -----------------------------------------------------------------------------
    def load_records(self, instance_id: str) -> dict[tuple[str, int], StepRecord]:
        with self._lock:
            return {slot: copy.copy(r) for slot, r in self._records.get(instance_id, {}).items()}

    def load_deferred(self, record: StepRecord, fields: list[str]) -> None:
        """Nothing is deferred here: every record is read whole."""

    def current(self, fence: Fence) -> WorkflowInstance | None:
        with self._lock:
            stored = self._instances.get(fence.instance_id)
            return copy.copy(stored) if stored is not None and self._holds(stored, fence.lenient()) else None

    def renew(self, lease: Lease) -> bool | None:
        with self._lock:
            stored = self._instances.get(lease.instance_id)
            if stored is None or not self._holds(stored, lease.fence.lenient()) or stored.lease_owner != lease.owner:
                return None
            stored.lease_expires_at = lease.until(clock.now())
            return stored.cancel_requested

    def release(self, lease: Lease) -> None:
        with self._lock:
            stored = self._instances.get(lease.instance_id)
            if stored is not None and self._holds(stored, lease.fence.lenient()) and stored.lease_owner == lease.owner:
                stored.lease_expires_at, stored.lease_owner = clock.now(), ""

    def has_children(self, instance_id: str) -> bool:
        with self._lock:
            return any(i.parent_id == instance_id for i in self._instances.values())

    # -- the run's writes ------------------------------------------------------------------
    def commit(self, write: Write) -> None:
        if write.taken or write.children:
            raise NotImplementedError("the memory store keeps no inbox and no children")
        with self._lock:
            stored = self._instances.get(write.fence.instance_id)
            if stored is None or not self._holds(stored, write.fence):
                raise LeaseLost()
            if write.transition:
                try:
                    check_transition(stored.state, write.values["state"])
                except InvalidTransition:
                    raise LeaseLost() from None
            else:
                write.values.setdefault("lease_expires_at", write.lease_until)
                write.values.setdefault("updated_at", clock.now())
                write.renewed = True
            for key, value in write.values.items():
                setattr(stored, key, value)
            records = self._records.setdefault(write.fence.instance_id, {})
            for record in write.records:
                if record._state.adding:
                    record.pk = next(self._keys)
                    record._state.adding = False
                records[record.slot] = copy.copy(record)
            if write.waits:
                self._alarm(write)
            self._log(write.fence.instance_id, write.events)

    def continue_as_new(self, fence: Fence, values: dict[str, Any], events: list[Any]) -> None:
        with self._lock:
            stored = self._instances.get(fence.instance_id)
            if stored is None or not self._holds(stored, fence):
                raise LeaseLost()
            check_transition(stored.state, values["state"])
            for key, value in values.items():
                setattr(stored, key, value)
            self._records.pop(fence.instance_id, None)
            self._alarms[fence.instance_id] = next_generation_alarm(fence)
            self._log(fence.instance_id, events)

    def _alarm(self, write: Write) -> None:
        self._alarms.pop(write.fence.instance_id, None)
        alarm = pause_alarm(write.fence, write.waits or [])
        if alarm is not None:
            self._alarms[write.fence.instance_id] = alarm

    # -- outside a run ---------------------------------------------------------------------
    def insert(self, instance: WorkflowInstance) -> None:
        with self._lock:
            if instance.pk in self._instances:
                raise ValueError(f"instance {instance.pk!r} exists")
            now = clock.now()
            instance.created_at = instance.created_at or now
            instance.updated_at = now
            self._instances[instance.pk] = copy.copy(instance)
            instance._state.adding = False

    def instance(self, instance_id: str) -> WorkflowInstance | None:
        with self._lock:
            stored = self._instances.get(instance_id)
            return copy.copy(stored) if stored is not None else None

    def alarm(self, instance_id: str) -> Alarm | None:
        with self._lock:
            alarm = self._alarms.get(instance_id)
            return copy.copy(alarm) if alarm is not None else None

    def fire(self, instance_id: str, now: datetime) -> int | None:
        with self._lock:
            alarm = self._alarms.get(instance_id)
            if alarm is None:
                return None
            alarm.fire_at = alarm.fired_at = now
            return alarm.epoch

    def event_rows(self, instance_id: str) -> list[tuple[str, int | None, dict[str, Any]]]:
        with self._lock:
            return list(self._events.get(instance_id, []))

    # -- helpers ---------------------------------------------------------------------------
    @staticmethod
    def _holds(stored: WorkflowInstance, fence: Fence) -> bool:
        return (stored.epoch == fence.epoch and stored.state == fence.state
                and not (fence.uncancelled and stored.cancel_requested) and not (fence.unheld and stored.held))

    def _log(self, instance_id: str, rows: list[Any]) -> None:
        self._events.setdefault(instance_id, []).extend((e.kind, e.position, dict(e.data)) for e in rows)
