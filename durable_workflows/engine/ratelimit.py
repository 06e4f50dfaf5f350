"""Rate limits: `@workflow(rate_limit="N/s|m|h|d", rate_key=None)`, and the sliding window
that named step limiters (limiters.py) count with too.

A rate "N/P" allows at most N uses in any window of length P. Each use is a timestamp in the
database (an instance's admission, its `started_at`; a limiter's unit), so there is no
counter to drift and no process keeps state: a use is decided under a lock on what it is
counted for (an advisory lock on PostgreSQL; SQLite's write lock), and its time is read after
the lock is taken. The stamps of one group are then in the order of the lock, and a use that
finds fewer than N stamps after now - P keeps every window at N or fewer, whichever cluster
made them.

For a workflow, an instance's unit is its `started_at`, given when the group admits it:
under the group's lock, the oldest instances of the group that want to start (a task out,
or waiting for the window) get the room the window has, all in one transaction, and their
claims then take the path of a started instance, with no lock and nothing to count. A fresh
claim that finds room admits (itself, if it is among the oldest); one that finds the window
full, or is not among those admitted, stays Queued with no task out (`dispatched_at` NULL,
so the lost-task scans leave it alone) and an alarm (reason "rate") at the time its turn
comes. `fire_alarms()` hands due rate alarms to `release_due()`, which admits for the room
there is then and moves the due alarms of those left to the next batch's room. A worker
killed after its claim loses nothing: its `started_at` counts for its window, which then
moves on, and its instance is recovered as any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import partial
from typing import Any

from django.db.models import Q, QuerySet

from .. import database
from ..dispatch import get_dispatcher, on_commit
from ..exceptions import UnknownWorkflow
from ..models import Alarm, AlarmReason, WorkflowInstance
from ..rates import Rate
from ..registry import WorkflowDefinition, get_definition
from ..states import State
from . import clock
from .concurrency import argument_key
from .locks import lock_txn

# Who goes first among the instances waiting for a window: the highest priority, then the oldest.
from .priority import ORDER, ahead_of


def recent_txn(stamps: QuerySet[Any], field: str, rate: Rate, now: datetime) -> list[datetime]:
    """The latest `field` stamps of `stamps` after now - period, latest first, at most the
    rate's count: what `Rate.next_free` judges."""
    window = stamps.filter(**{f"{field}__gt": now - rate.period}).order_by(f"-{field}")
    return list(window.values_list(field, flat=True)[:rate.count])


def key_of(definition: WorkflowDefinition, args: Sequence[Any], kwargs: dict[str, Any]) -> str | None:
    """The `rate_key` column of a new instance: None without a rate limit, "" for a limit on
    the whole workflow, else the JSON of the named argument's value."""
    if definition.rate_limit is None:
        return None
    return argument_key(definition, definition.rate_key, args, kwargs)


def _rate(workflow: str) -> Rate | None:
    try:
        return get_definition(workflow).rate_limit
    except UnknownWorkflow:
        return None


def _group(workflow: str, key: str) -> QuerySet[WorkflowInstance]:
    return WorkflowInstance.objects.filter(workflow=workflow, rate_key=key)


def _waiting(workflow: str, key: str) -> QuerySet[WorkflowInstance]:
    """The group's instances held back for the window: Queued, with a rate alarm."""
    return _group(workflow, key).filter(state=State.QUEUED, alarm__reason=AlarmReason.RATE)


def start_time_txn(instance: WorkflowInstance, now: datetime) -> datetime | None:
    """For a fresh claim, inside its transaction: the time its first claim is stamped with
    when it may start now (`now`, or the time read under the group's lock), or None when it
    waits for the window, left Queued with its alarm in this transaction."""
    rate = _rate(instance.workflow)
    key = instance.rate_key
    if key is None or rate is None or instance.started_at is not None:
        return now
    if instance.cancel_requested or (instance.deadline_at is not None and instance.deadline_at <= now):
        return now  # its run only ends it
    group = _group(instance.workflow, key)
    if len(recent_txn(group, "started_at", rate, now)) < rate.count:
        lock_txn("rate", instance.workflow, key)
        now = clock.now()
        if instance.pk in _admit(instance.workflow, key, rate.count - len(recent_txn(group, "started_at", rate, now)), now):
            return now
    # Full: it waits, which needs no lock. Only a start must be ordered against the others,
    # and its own alarm brings it back whatever a release does meanwhile.
    ahead = _waiting(instance.workflow, key).filter(ahead_of(instance)).count()
    if _held(instance, turn(rate, recent_txn(group, "started_at", rate, now), now, ahead), now):
        return None
    # A release admitted it meanwhile: its unit is the stamp that release gave it.
    return WorkflowInstance.objects.filter(pk=instance.pk).values_list("started_at", flat=True).first() or now


def _admit(workflow: str, key: str, room: int, now: datetime) -> list[str]:
    """Under the group's lock: start the clock of the `room` oldest instances of the group
    that have not started and want to (a task out, or waiting for the window): their
    `started_at` is now their unit of the window. Their claims, whenever they come, take the
    path of an instance that has started, which counts nothing and takes no lock, so one
    transaction lets a window's worth go. Those that were waiting are dispatched once it
    commits, their alarms gone. Returns the ids admitted."""
    if room <= 0:
        return []
    wanting = _group(workflow, key).filter(Q(dispatched_at__isnull=False) | Q(alarm__reason=AlarmReason.RATE),
                                           state=State.QUEUED, started_at__isnull=True)
    pks = list(wanting.order_by(*ORDER).values_list("pk", flat=True)[:room])
    if not pks:
        return []
    # Each move names what it found, so that a claim that held one of them meanwhile (its
    # task gone, an alarm set) has that one dispatched rather than stranded.
    fresh = WorkflowInstance.objects.filter(pk__in=pks, state=State.QUEUED, started_at__isnull=True)
    fresh.filter(dispatched_at__isnull=False).update(started_at=now)
    fresh.filter(dispatched_at__isnull=True).update(started_at=now, dispatched_at=now)
    admitted = WorkflowInstance.objects.filter(pk__in=pks, started_at=now)
    waiting = list(admitted.filter(dispatched_at=now).values_list("pk", "epoch"))
    if waiting:
        dispatcher = get_dispatcher()
        Alarm.objects.filter(instance_id__in=[pk for pk, _ in waiting], reason=AlarmReason.RATE).delete()
        for pk, epoch in waiting:
            on_commit(partial(dispatcher.dispatch, pk, "fresh", epoch))
    taken = set(admitted.values_list("pk", flat=True))
    return [pk for pk in pks if pk in taken]


def batch(rate: Rate) -> int:
    """How many units a release waits to have room for: a twentieth of the rate, so that a
    fast rate wakes its group some twenty times a period rather than once per unit."""
    return max(1, rate.count // 20)


def turn(rate: Rate, recent: list[datetime], now: datetime, ahead: int) -> datetime:
    """When the window has room for the waiting instance with `ahead` before it, were every
    start made the moment it may: the window's room now goes first, then each stamp's unit
    as the stamp leaves, a period after each of those again, and so on. Rounded up to the end
    of its batch, so that the instances of a batch have one alarm time and one release."""
    last = (ahead // batch(rate) + 1) * batch(rate) - 1
    units = [now] * (rate.count - len(recent)) + [stamp + rate.period for stamp in reversed(recent)]
    cycle, place = divmod(last, rate.count)
    return units[place] + cycle * rate.period


def _held(instance: WorkflowInstance, until: datetime, now: datetime) -> bool:
    """Left Queued with no task out, and its alarm at `until`; False when a release has
    admitted it since its claim read it."""
    held = WorkflowInstance.objects.filter(pk=instance.pk, epoch=instance.epoch, started_at__isnull=True,
                                           state__in=(State.QUEUED, State.PENDING))
    if not held.update(state=State.QUEUED, dispatched_at=None, updated_at=now):
        return False
    values = {"fire_at": until, "fired_at": None, "reason": AlarmReason.RATE, "position": 0, "branch": "",
              "epoch": instance.epoch}
    if not Alarm.objects.filter(instance_id=instance.pk).update(**values):
        Alarm.objects.create(instance_id=instance.pk, **values)
    return True


def release(workflow: str, key: str) -> list[str]:
    """Admit the oldest instances of a group that wait for the room its window has now; the
    due alarms of those that stay wait for the next batch's room. Returns the ids admitted."""
    rate = _rate(workflow)
    with database.atomic():
        lock_txn("rate", workflow, key)
        now = clock.now()
        alarms = Alarm.objects.filter(reason=AlarmReason.RATE, instance__workflow=workflow, instance__rate_key=key)
        # Alarms left by instances that went another way (cancelled, past their deadline).
        alarms.filter(fire_at__lte=now).exclude(instance__state=State.QUEUED).delete()
        if rate is None:  # a deploy removed the limit: all of them go
            return _admit(workflow, key, _waiting(workflow, key).count(), now)
        group = _group(workflow, key)
        sent = _admit(workflow, key, rate.count - len(recent_txn(group, "started_at", rate, now)), now)
        recent = recent_txn(group, "started_at", rate, now)
        alarms.filter(fire_at__lte=now).update(fire_at=turn(rate, recent, now, 0), fired_at=None)
    return sent


def release_due(now: datetime, limit: int = 500, instance_id: str | None = None) -> list[str]:
    """For `fire_alarms()`: release every group that has a rate alarm due (the group of
    `instance_id` only, when given). Returns the ids admitted."""
    due = Alarm.objects.filter(reason=AlarmReason.RATE, fired_at__isnull=True, fire_at__lte=now)
    if instance_id is not None:
        due = due.filter(instance_id=instance_id)
    groups = due.order_by().values_list("instance__workflow", "instance__rate_key").distinct()[:limit]
    sent: list[str] = []
    for workflow, key in list(groups):
        if workflow is not None and key is not None:
            sent += release(workflow, key)
    return sent


def limited_until_each(instances: Sequence[WorkflowInstance]) -> dict[str, datetime]:
    """"Rate-limited until T" for a page of instances, in one query: id -> T for those held
    back by their rate limit."""
    waiting = [i.pk for i in instances if i.rate_key is not None and i.state == State.QUEUED]
    if not waiting:
        return {}
    rows = Alarm.objects.filter(instance_id__in=waiting, reason=AlarmReason.RATE)
    return dict(rows.values_list("instance_id", "fire_at"))


def limited_until(instance: WorkflowInstance) -> datetime | None:
    return limited_until_each([instance]).get(instance.pk)
