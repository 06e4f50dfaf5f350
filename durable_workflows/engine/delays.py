"""Delayed starts: `client.start(..., delay=...)`, `start_at=` and a debounce's wait.

Such an instance is inserted Queued with its `start_at` and not handed to a worker: no task
goes out (`dispatched_at` NULL, so the lost-task scans leave it alone) and an alarm of
reason "start" is set for that time, so the ticker wakes for it as for any other alarm.
`fire_alarms()` releases it once due: it deletes the alarm and marks the instance
dispatched in one transaction, then sends its fresh task once that commits (a task lost
after that is sent again by `recover()`, as for any Queued instance). Until then nothing
else sends it either: a concurrency slot goes only to instances whose start time has come.

The release deletes the alarm only as it was read (its fire time), so a debounce that
pushed the start back meanwhile (debounce.py) keeps its instance waiting.
"""

from __future__ import annotations

from datetime import datetime

from .. import database
from ..models import Alarm, AlarmReason, WorkflowInstance
from ..states import State


def schedule_txn(instances: list[WorkflowInstance]) -> None:
    """The start alarms of new instances that have a start time, inside their insert's
    transaction."""
    Alarm.objects.bulk_create(
        Alarm(instance_id=i.pk, fire_at=i.start_at, reason=AlarmReason.START, position=0, epoch=i.epoch)
        for i in instances if i.start_at is not None)


def release_due(now: datetime, limit: int, instance_id: str | None = None) -> list[tuple[str, str, int]]:
    """Release the delayed starts that are due: (id, "fresh", epoch) for each to dispatch
    once the caller's transaction commits."""
    due = Alarm.objects.filter(reason=AlarmReason.START, fired_at__isnull=True, fire_at__lte=now)
    if instance_id is not None:
        due = due.filter(instance_id=instance_id)
    released = []
    for pk, epoch, fire_at in due.order_by("fire_at").values_list("instance_id", "epoch", "fire_at")[:limit]:
        with database.atomic():
            # The alarm first, then the instance: the order a debounce takes them in.
            if not Alarm.objects.filter(instance_id=pk, reason=AlarmReason.START, fire_at=fire_at,
                                        fired_at__isnull=True).delete()[0]:
                continue
            # A cancelled one is only rid of its alarm.
            sent = WorkflowInstance.objects.filter(pk=pk, state=State.QUEUED, dispatched_at__isnull=True).update(
                dispatched_at=now, updated_at=now)
        if sent:
            released.append((pk, "fresh", epoch))
    return released
