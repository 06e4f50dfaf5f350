"""The store on every database Django supports, through the ORM.

Each write is one transaction that starts with its UPDATE of the instance row (write-first):
on PostgreSQL that takes the row lock that orders it against a competing claim, and on
SQLite it avoids a lock upgrade.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db.models import Case, PositiveIntegerField, Value, When

from ... import database
from ...conf import settings
from ...exceptions import InvalidTransition, LeaseLost
from ...models import Alarm, AlarmReason, Event, InboxMessage, StepRecord, WorkflowInstance
from ...states import State, as_state, transition
from .. import clock, concurrency, ratelimit
from ..children import insert_children_txn
from ..events import EventBuffer, insert_rows_txn
from ..fence import Fence
from ..lanes import branch_data
from ..waits import Wait

if TYPE_CHECKING:
    from ..lease import Lease
from .base import CLAIMABLE, Claimed, Store, Write

#: Columns a replay of a finished step never reads: the rare record that needs them (a step
#: in flight, waiting to retry, or failed) loads them when its replay starts.
REPLAY_DEFERRED = (
    "error_type", "error_message", "error_traceback", "error_replay", "started_at",
    "attempt_started_at", "deadline_at",
)


class OrmStore(Store):
    name = "orm"

    # -- claims ----------------------------------------------------------------------------
    def claim(self, instance_id: str, mode: str, epoch: int | None, owner: str, now: datetime,
              lease_until: datetime) -> Claimed | None:
        instance = WorkflowInstance.objects.filter(pk=instance_id).first()
        if instance is None or instance.held or (epoch is not None and instance.epoch != epoch):
            return None  # not ours to run, or held by an operator (client.pause)
        events = EventBuffer(instance.pk, instance.workflow)
        common: dict[str, Any] = {
            "epoch": instance.epoch + 1,
            "lease_owner": owner,
            "lease_expires_at": lease_until,
            "run_count": instance.run_count + 1,
            "last_mode": mode,
            "redispatches": 0,
        }
        if instance.started_at is None:
            common["started_at"] = now
        claimed = Claimed(instance, events)
        with database.atomic():
            if mode == "recover":
                if not self._take_over_txn(instance, now, common):
                    return None
                events.add("workflow.recovered", None, attempt=instance.recovery_count)
            else:
                if instance.state not in CLAIMABLE[mode]:
                    return None
                if mode == "fresh" and instance.rate_key is not None and instance.started_at is None:
                    started = ratelimit.start_time_txn(instance, now)
                    if started is None:
                        return None  # it waits for its rate limit's window: committed as such
                    common["started_at"] = started
                if mode == "fresh" and instance.concurrency_key is not None:
                    slot = concurrency.may_start_txn(instance, now)
                    if slot is None:
                        return None  # it waits for a slot: committed as such
                    common["slot_held"] = slot
                try:
                    # Not held: a hold set since the row was read refuses the claim here.
                    transition(instance, State.RUNNING, fence=_unheld(instance), **common)
                except InvalidTransition:
                    return None
                if mode == "resume":
                    self._woken_txn(claimed)
                else:
                    events.add("workflow.started", None)
            events.write_txn()
        return claimed

    @staticmethod
    def _woken_txn(claimed: Claimed) -> None:
        """Only a fired alarm ends its sleep or retry delay early; a duplicate or premature
        resume replays up to the wait and pauses again."""
        alarm = Alarm.objects.filter(instance_id=claimed.instance.pk).first()
        woken = None
        if alarm is not None and alarm.fired_at is not None:
            woken = (alarm.branch, alarm.position)
            claimed.woken, claimed.woken_at = woken, alarm.fire_at
            alarm.delete()
        claimed.events.add("workflow.resumed", None, woken_position=woken and woken[1],
                           **branch_data(woken[0] if woken else ""))

    @staticmethod
    def _take_over_txn(instance: WorkflowInstance, now: datetime, fields: dict[str, Any]) -> bool:
        """Claim a Running instance whose lease expired. Its state does not change, so this
        is a lease takeover, not a transition: the compare-and-set is on the old epoch."""
        if not instance.is_stale(now):
            return False
        fields = {**fields, "recovery_count": instance.recovery_count + 1, "updated_at": now}
        updated = WorkflowInstance.objects.filter(
            pk=instance.pk, state=State.RUNNING, epoch=instance.epoch, held=False
        ).update(**fields)
        if updated != 1:
            return False
        for key, value in fields.items():
            setattr(instance, key, value)
        return True

    # -- reads -----------------------------------------------------------------------------
    def load_records(self, instance_id: str) -> dict[tuple[str, int], StepRecord]:
        records = StepRecord.objects.filter(instance_id=instance_id).defer(*REPLAY_DEFERRED)
        return {r.slot: r for r in records}

    def load_deferred(self, record: StepRecord, fields: list[str]) -> None:
        record.refresh_from_db(fields=fields)

    def current(self, fence: Fence) -> WorkflowInstance | None:
        return WorkflowInstance.objects.filter(**fence.lenient().filter()).first()

    def renew(self, lease: Lease) -> bool | None:
        fence = lease.fence.lenient()
        connection = database.connection()
        table = connection.ops.quote_name(WorkflowInstance._meta.db_table)
        where = f"{fence.where()} AND lease_owner = %s"
        # Adapted as the ORM would store it: SQLite keeps datetimes as text, and the recovery
        # scan's compare-and-set on lease_expires_at must find the very value written here.
        until = connection.ops.adapt_datetimefield_value(lease.until(clock.now()))
        params = [until, *fence.params(), lease.owner]
        with database.atomic(), connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                # Half a heartbeat at most: one locked row must not stop the other runs' beats.
                timeout_ms = max(int(float(settings.HEARTBEAT_SECONDS) * 500), 50)
                cursor.execute(f"SET LOCAL lock_timeout = {timeout_ms}")
            if connection.features.can_return_columns_from_insert:  # RETURNING is understood
                cursor.execute(f"UPDATE {table} SET lease_expires_at = %s WHERE {where} RETURNING cancel_requested",
                               params)
                row = cursor.fetchone()
            else:
                cursor.execute(f"UPDATE {table} SET lease_expires_at = %s WHERE {where}", params)
                row = None
                if cursor.rowcount == 1:
                    cursor.execute(f"SELECT cancel_requested FROM {table} WHERE id = %s", [lease.instance_id])
                    row = cursor.fetchone()
        return None if row is None else bool(row[0])

    def release(self, lease: Lease) -> None:
        WorkflowInstance.objects.filter(**lease.fence.lenient().filter(), lease_owner=lease.owner).update(
            lease_expires_at=clock.now(), lease_owner=""
        )

    def has_children(self, instance_id: str) -> bool:
        return WorkflowInstance.objects.filter(parent_id=instance_id).exists()

    def insert(self, instance: WorkflowInstance) -> None:
        instance.save(force_insert=True)

    def instance(self, instance_id: str) -> WorkflowInstance | None:
        return WorkflowInstance.objects.filter(pk=instance_id).first()

    def alarm(self, instance_id: str) -> Alarm | None:
        return Alarm.objects.filter(instance_id=instance_id).first()

    def fire(self, instance_id: str, now: datetime) -> int | None:
        alarm = self.alarm(instance_id)
        if alarm is None:
            return None
        Alarm.objects.filter(pk=alarm.pk).update(fire_at=now, fired_at=now)
        return alarm.epoch

    def event_rows(self, instance_id: str) -> list[tuple[str, int | None, dict[str, Any]]]:
        return list(Event.objects.filter(instance_id=instance_id).order_by("id")
                    .values_list("kind", "position", "data"))

    # -- the run's writes ------------------------------------------------------------------
    def commit(self, write: Write) -> None:
        if not write.transition:
            # The write-first UPDATE needs values; extending the lease is the useful one.
            write.values.setdefault("lease_expires_at", write.lease_until)
            write.values.setdefault("updated_at", clock.now())
            write.renewed = True
        records = write.records
        new = [r for r in records if r._state.adding]
        try:
            with database.atomic():
                updated = WorkflowInstance.objects.filter(**write.fence.filter()).update(**write.values)
                if updated != 1:
                    raise LeaseLost()
                if write.children:
                    write.existing_children = insert_children_txn(write.children, write.children_events)
                for record in records:
                    if not record._state.adding:
                        record.save(force_update=True)
                if new:
                    StepRecord.objects.bulk_create(new)
                if write.taken:
                    _mark_taken_txn(write.taken)
                if write.waits:
                    _alarm_txn(write.fence, write.waits)
                insert_rows_txn(write.fence.instance_id, write.events)
        except BaseException:
            # bulk_create marks its rows saved before the commit: undo that.
            for record in new:
                record.pk = None
                record._state.adding = True
            for child in write.children:
                child._state.adding = True
            raise


    def continue_as_new(self, fence: Fence, values: dict[str, Any], events: list[Any]) -> None:
        instance_id = fence.instance_id
        with database.atomic():
            if WorkflowInstance.objects.filter(**fence.filter()).update(**values) != 1:
                raise LeaseLost()
            StepRecord.objects.filter(instance_id=instance_id).delete()
            InboxMessage.objects.filter(instance_id=instance_id, taken_at__isnull=False).delete()
            Alarm.objects.filter(instance_id=instance_id).delete()
            next_generation_alarm(fence).save(force_insert=True, using=database.alias())
            insert_rows_txn(instance_id, events)


def next_generation_alarm(fence: Fence) -> Alarm:
    """The alarm of a new generation (unsaved), for every store: fired now, as a wake that
    dispatches its resume at once (a lost dispatch is sent again by the scans)."""
    now = clock.now()
    return Alarm(instance_id=fence.instance_id, fire_at=now, fired_at=now, reason=AlarmReason.CONTINUED,
                 branch="", position=0, epoch=fence.epoch)


def _unheld(instance: WorkflowInstance) -> Fence:
    """The compare-and-set of a claim: the row as it was read (its state and epoch), and not held."""
    return Fence(instance.pk, instance.epoch, as_state(instance.state), uncancelled=False, unheld=True)


def _mark_taken_txn(taken: dict[int, int]) -> None:
    """Mark the messages taken (id -> the position of the wait that took it) in one
    statement: the inbox's read-ahead (inbox.py) keeps them to TAKEN_PER_WRITE a write."""
    InboxMessage.objects.filter(pk__in=list(taken)).update(
        taken_at=clock.now(),
        taken_position=Case(*(When(pk=pk, then=Value(position)) for pk, position in taken.items()),
                            output_field=PositiveIntegerField()),
    )


def pause_alarm(fence: Fence, waits: list[Wait]) -> Alarm | None:
    """The alarm that ends the pause (unsaved), for every store: at once when what a wait
    is for has come while the run was unwinding (a send found the instance still Running),
    otherwise at the first timeout among the waits; none when no wait has one."""
    ready = next((w for w in waits if w.ready is not None and w.ready()), None)
    wait = ready or min(waits, key=ends)
    fire_at = clock.now() if ready is not None else wait.until
    if fire_at is None:
        return None
    return Alarm(instance_id=fence.instance_id, fire_at=fire_at, reason=wait.reason, branch=wait.record.branch,
                 position=wait.record.position, epoch=fence.epoch)


def _alarm_txn(fence: Fence, waits: list[Wait]) -> None:
    Alarm.objects.filter(instance_id=fence.instance_id).delete()
    alarm = pause_alarm(fence, waits)
    if alarm is not None:
        alarm.save(force_insert=True, using=database.alias())


def ends(wait: Wait) -> tuple[bool, float]:
    """Sorts waits by when they end on their own; those without a timeout last."""
    return (wait.until is None, wait.until.timestamp() if wait.until is not None else 0.0)
