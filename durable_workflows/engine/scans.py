"""The periodic work: firing due alarms, and recovering runs whose worker went away."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.db.models import F, Q, QuerySet

from .. import database
from ..conf import settings
from ..dispatch import get_dispatcher, on_commit
from ..models import (
    RECOVERY_OWNER,
    Alarm,
    AlarmReason,
    WorkflowInstance,
)
from ..states import State, as_state
from . import clock, delays, ratelimit
from .concurrency import admit_waiting
from .instances import finished
from .waits import lock_txn, resume_on_commit, wake_txn

logger = logging.getLogger("durable_workflows")

# How long after an instance's final move its own process has to tell its family before
# recovery does it instead.
FAMILY_GRACE_SECONDS = 5


def fire_alarms(limit: int = 500, instance_id: str | None = None) -> list[str]:
    """Resume the Paused instances whose alarm is due, start the delayed starts that are
    (delays.py) and let in the rate-limited ones their window has room for (ratelimit.py).
    Returns the ids dispatched.

    Safe to call from any number of processes at once: each alarm is claimed by exactly one
    (SKIP LOCKED on PostgreSQL, a compare-and-set on fired_at elsewhere), and the resume is
    dispatched only after the claim commits.
    """
    now = clock.now()
    # A start alarm (delays.py) and a rate alarm (ratelimit.py) hold a Queued instance back:
    # each is let go by its own module.
    due = _due_alarms(now).exclude(reason__in=[AlarmReason.START, AlarmReason.RATE]).order_by("fire_at")
    if instance_id is not None:
        due = due.filter(instance_id=instance_id)
    dispatched = [(pk, "resume", epoch) for pk, epoch in _claim_alarms(due, now, limit)]
    _dispatch_on_commit(dispatched)
    started = _guarded(delays.release_due, now, limit, instance_id)
    _dispatch_on_commit(started)
    dispatched += started
    # Deadlines come after the claimed alarms are on their way, so that a failure here
    # cannot strand them.
    late = _guarded(_past_deadline, now, limit, instance_id)
    # The Paused ones' resumes went out with their alarms.
    _dispatch_on_commit([(pk, mode, epoch) for pk, mode, epoch in late if mode == "fresh"])
    released = _guarded(ratelimit.release_due, now, limit, instance_id)
    return [pk for pk, _, _ in dispatched + late] + released


def _past_deadline(now: datetime, limit: int, instance_id: str | None = None) -> list[tuple[str, str, int]]:
    """Paused and Queued instances past their workflow deadline: each is dispatched once, and
    its run fails it with WorkflowTimeout as soon as it claims it (a state change goes
    through a claim, as every other one of a run). A Paused one gets its alarm fired, so a
    lost resume is sent again like any other; a Queued one is marked dispatched."""
    late = WorkflowInstance.objects.filter(deadline_at__lte=now)
    if instance_id is not None:
        late = late.filter(pk=instance_id)
    found: list[tuple[str, str, int]] = []
    for pk in _late_paused(late).values_list("pk", flat=True)[:limit]:
        with database.atomic():
            instance = lock_txn(pk)
            woken = instance is not None and as_state(instance.state) == State.PAUSED
            if woken:
                assert instance is not None  # for the type checker: woken says so
                wake_txn(instance, ("", 0), AlarmReason.DEADLINE)
        if woken:
            assert instance is not None
            resume_on_commit(instance)
            found.append((pk, "resume", instance.epoch))
    for pk, epoch, at in _late_queued(late).values_list("pk", "epoch", "dispatched_at")[:limit]:
        if WorkflowInstance.objects.filter(pk=pk, state=State.QUEUED, dispatched_at=at).update(dispatched_at=now):
            found.append((pk, "fresh", epoch))
    return found


def _due_alarms(now: datetime) -> QuerySet[Alarm]:
    return Alarm.objects.filter(fired_at__isnull=True, fire_at__lte=now)


def _late_paused(late: QuerySet[WorkflowInstance]) -> QuerySet[WorkflowInstance]:
    """Of the instances past their deadline, the Paused ones whose alarm has not fired."""
    return late.filter(state=State.PAUSED).exclude(alarm__fired_at__isnull=False)


def _late_queued(late: QuerySet[WorkflowInstance]) -> QuerySet[WorkflowInstance]:
    """Of the instances past their deadline, the Queued ones not dispatched since. One
    waiting for a concurrency slot has no task out (dispatched_at NULL)."""
    return late.filter(Q(dispatched_at__lt=F("deadline_at")) | Q(dispatched_at__isnull=True), state=State.QUEUED)


def alarms_due() -> bool:
    """Whether `fire_alarms()` has anything to do now (an alarm due, an instance past its
    deadline), in one statement: the ticker asks before each pass, and a pass with nothing
    to do then costs the database one query instead of three transactions."""
    now = clock.now()
    late = WorkflowInstance.objects.filter(deadline_at__lte=now)
    db = database.connection()
    parts = [qs.order_by().values("pk")[:1].query.get_compiler(connection=db).as_sql()
             for qs in (_due_alarms(now), _late_paused(late), _late_queued(late))]
    with db.cursor() as cursor:
        cursor.execute("SELECT " + " OR ".join(f"EXISTS ({sql})" for sql, _ in parts),
                       [param for _, params in parts for param in params])
        row = cursor.fetchone()
    return bool(row and row[0])


# An instance's n-th redispatch in a row waits 2**n times the base delay, up to this power:
# a backlog longer than REDISPATCH_AFTER_SECONDS then costs a few extra tasks, not one per
# instance per scan. A run resets the count.
MAX_BACKOFF_POWER = 5


def _backed_off(field: str, now: datetime, base: float, prefix: str = "") -> Q:
    """`field` is older than `base` seconds times 2 ** (the instance's redispatches so far)."""
    condition = Q()
    for power in range(MAX_BACKOFF_POWER + 1):
        count = {f"{prefix}redispatches": power} if power < MAX_BACKOFF_POWER else {
            f"{prefix}redispatches__gte": power}
        condition |= Q(**count, **{f"{field}__lt": now - timedelta(seconds=base * 2 ** power)})
    return condition


def _lost_queued(now: datetime, base: float, limit: int) -> list[tuple[str, str, int]]:
    """Queued instances no worker claimed `base` seconds (backed off) after their task went
    out: sent again, each with a compare-and-set on its dispatched_at, so one scan sends it."""
    lost = WorkflowInstance.objects.filter(_backed_off("dispatched_at", now, base), state=State.QUEUED, held=False)
    found = []
    for pk, epoch, at in lost.order_by().values_list("pk", "epoch", "dispatched_at")[:limit]:
        if WorkflowInstance.objects.filter(pk=pk, state=State.QUEUED, dispatched_at=at).update(
            dispatched_at=now, redispatches=F("redispatches") + 1
        ):
            found.append((pk, "fresh", epoch))
    return found


def _lost_resumes(now: datetime, base: float, limit: int) -> list[tuple[str, str, int]]:
    """Alarms that fired `base` seconds ago (backed off) while their instance is still
    Paused: the resume was lost (the process died before it enqueued, or the broker dropped
    it). Each is claimed again with a compare-and-set on its fired_at, so one scan re-sends it."""
    lost = Alarm.objects.filter(_backed_off("fired_at", now, base, "instance__"), instance__state=State.PAUSED,
                                instance__held=False)
    found = []
    for pk, epoch, fired_at in lost.order_by().values_list("instance_id", "epoch", "fired_at")[:limit]:
        if Alarm.objects.filter(instance_id=pk, fired_at=fired_at).update(fired_at=now):
            WorkflowInstance.objects.filter(pk=pk).update(redispatches=F("redispatches") + 1)
            found.append((pk, "resume", epoch))
    return found


# How much longer the redispatch waits while the broker holds tasks not yet taken.
BACKLOG_FACTOR = 8


def _backlogged() -> bool:
    """Whether the dispatcher's broker holds tasks waiting to be taken (a dispatcher that
    cannot tell, its `waiting()` None, is taken as not backlogged)."""
    try:
        return bool(get_dispatcher().waiting())
    except Exception:
        return False  # a broker that is down holds nothing we can count on


def redispatch_stalled(older_than: float, limit: int = 500) -> list[str]:
    """Send again, now, the tasks of Queued instances dispatched `older_than` seconds ago
    (and of resumes that long overdue), without waiting REDISPATCH_AFTER_SECONDS: for the
    broker glue, when it sees that the broker holds no task waiting, so these ones must have
    been taken by a worker that is gone (a cluster killed with tasks in hand). Backed off
    per instance like `recover`'s redispatch. Returns the ids dispatched."""
    dispatched = _lost_tasks(clock.now(), older_than, limit)
    _dispatch_on_commit(dispatched)
    return [pk for pk, _, _ in dispatched]


def _lost_tasks(now: datetime, base: float, limit: int) -> list[tuple[str, str, int]]:
    return _lost_queued(now, base, limit) + _lost_resumes(now, base, limit)


def _dispatch_on_commit(dispatched: list[tuple[str, str, int]]) -> None:
    dispatcher = get_dispatcher()
    for pk, mode, epoch in dispatched:
        on_commit(partial(dispatcher.dispatch, pk, mode, epoch))


def _claim_alarms(due: QuerySet[Alarm], now: datetime, limit: int) -> list[tuple[str, int]]:
    if database.connection().vendor == "postgresql":
        with database.atomic():
            rows = list(
                due.select_for_update(skip_locked=True).values_list("instance_id", "epoch")[:limit]
            )
            if rows:
                Alarm.objects.filter(instance_id__in=[r[0] for r in rows]).update(fired_at=now)
        return rows
    claimed = []
    for pk, epoch, fire_at, position in due.values_list("instance_id", "epoch", "fire_at", "position")[:limit]:
        # The compare-and-set is on the alarm as it was read, not only on its instance: by
        # now another scan may have fired it, the run resumed and paused again with a new
        # alarm, which this scan must not mark fired (the lost-resume scan would then end
        # that new wait early).
        same = Alarm.objects.filter(instance_id=pk, fired_at__isnull=True, fire_at=fire_at,
                                    position=position, epoch=epoch)
        if same.update(fired_at=now):
            claimed.append((pk, epoch))
    return claimed


def fire_alarm_now(instance_id: str) -> bool:
    """Resume a Paused instance now, ending its sleep or retry delay early ("resume now")."""
    updated = Alarm.objects.filter(
        instance_id=instance_id, instance__state=State.PAUSED
    ).update(fire_at=clock.now(), fired_at=None)
    if not updated:
        return False
    return instance_id in fire_alarms(instance_id=instance_id)


def _lost_family_news(limit: int) -> None:
    """What a finished child or parent tells its family (instances.finished) is sent after
    its final move commits; a process that died in between leaves a parent waiting for a
    child that has finished, or children running under a parent that failed. Both are
    found here."""
    grace = clock.now() - timedelta(seconds=FAMILY_GRACE_SECONDS)
    untold = WorkflowInstance.objects.filter(family_pending=True, finished_at__lt=grace).order_by()
    for instance in untold.only("id", "state", "parent_id", "family_pending")[:limit]:
        finished(instance)


def recover(limit: int = 500) -> list[str]:
    """Re-run, in recover mode, Running instances whose lease expired; re-dispatch the tasks
    a broker lost (none of a held instance, whose claim would be refused): Queued instances no worker claimed in REDISPATCH_AFTER_SECONDS, and Paused
    ones whose alarm fired that long ago. The wait doubles with each redispatch of the same
    instance in a row (up to 32 times), so a backlog longer than the wait does not feed itself.

    A stale instance is reserved for one lease period when its recovery is dispatched, so
    frequent scans do not pile up duplicate tasks; if that task is lost too, the next scan
    after the reservation finds it again.
    """
    now = clock.now()
    lease = timedelta(seconds=settings.LEASE_SECONDS)
    dispatched: list[tuple[str, str, int]] = []
    # A held one is left until its hold ends: its claim would be refused.
    stale = WorkflowInstance.objects.filter(state=State.RUNNING, lease_expires_at__lt=now, held=False)
    for pk, epoch, expires in stale.values_list("pk", "epoch", "lease_expires_at")[:limit]:
        reserved = WorkflowInstance.objects.filter(
            pk=pk, state=State.RUNNING, epoch=epoch, lease_expires_at=expires
        ).update(lease_owner=f"{RECOVERY_OWNER}{now.isoformat()}", lease_expires_at=now + lease)
        if reserved:
            dispatched.append((pk, "recover", epoch))
    after = float(settings.REDISPATCH_AFTER_SECONDS)
    if _backlogged():
        # Tasks are waiting in the broker: a Queued instance is far more likely behind them
        # than lost, and a copy of its task would only join the queue. (Once the queue is
        # empty, a lost one is found after LEASE_SECONDS: see lost_tasks.py.)
        after *= BACKLOG_FACTOR
    dispatched += _lost_tasks(now, after, limit)
    _dispatch_on_commit(dispatched)
    # After the dispatches it reserved are on their way: a failure here must not strand them.
    _guarded(_lost_family_news, limit)
    admitted = _guarded(admit_waiting)
    return [pk for pk, _, _ in dispatched] + admitted


def _guarded(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception:
        logger.exception("durable_workflows: %s failed; the next scan tries again", fn.__name__)
        return []
