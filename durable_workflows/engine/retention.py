"""Retention: finished instances are deleted once they are older than their workflow keeps them.

`@workflow(purge_after=...)` for one workflow, the `PURGE_AFTER` setting for the rest (None:
keep). The workers' ticker calls `purge_expired()` now and then; `manage.py durable_workflows
purge` deletes the same way on demand.

Deleting goes by set, one batch of instances per transaction: one DELETE for each kind of
row that belongs to them (steps, events, the alarm, received events), one UPDATE for the
children that keep running without them, then one DELETE of the instances. Django's own
cascade would instead collect every related row into memory first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from functools import lru_cache

from django.db.models import Exists, OuterRef, Q, QuerySet

from .. import database
from ..conf import settings
from ..durations import parse_duration
from ..models import Alarm, Event, InboxMessage, StepRecord, WorkflowInstance
from ..registry import all_definitions
from ..states import TERMINAL
from . import clock

BATCH = 1000


def purge_expired(now: datetime | None = None, batch_size: int = BATCH, limit: int | None = None) -> int:
    """Delete the finished instances past their retention, with every row of theirs.
    Returns how many instances it deleted (at most `limit`, when given)."""
    expired = expired_instances(now or clock.now())
    if expired is None:
        return 0
    return delete_in_batches(expired, batch_size, limit)


def expired_instances(now: datetime) -> QuerySet[WorkflowInstance] | None:
    """The finished instances whose retention has run out; None when nothing is ever purged."""
    own = {d.name: d.purge_after for d in all_definitions() if d.purge_after is not None}
    default = settings.PURGE_AFTER
    condition = Q()
    for name, seconds in own.items():
        condition |= Q(workflow=name, finished_at__lt=now - timedelta(seconds=seconds))
    if default is not None:
        keep = parse_duration(default, what="PURGE_AFTER setting")
        condition |= Q(finished_at__lt=now - keep) & ~Q(workflow__in=list(own))
    if not condition:
        return None
    return WorkflowInstance.objects.filter(condition, state__in=list(TERMINAL))


def delete_in_batches(doomed: QuerySet[WorkflowInstance], batch_size: int = BATCH,
                      limit: int | None = None, on_batch: Callable[[int], None] | None = None) -> int:
    """Delete the instances of `doomed` (finished ones) batch by batch, oldest finish first.
    Each batch is read again inside its transaction, so an instance that changed meanwhile
    is left alone. `on_batch` is told the running total after each batch (a progress bar)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    deleted = 0
    ordered = finished_family(doomed).order_by("finished_at", "pk")
    last: tuple[datetime | None, str] | None = None
    while limit is None or deleted < limit:
        size = batch_size if limit is None else min(batch_size, limit - deleted)
        batch = ordered
        if last is not None:
            # Start after the last batch, not at the table's oldest rows: those it deleted
            # are dead entries every batch would otherwise step over again.
            batch = batch.filter(Q(finished_at__gt=last[0]) | Q(finished_at=last[0], pk__gt=last[1]))
        with database.atomic():
            rows = list(batch.values_list("finished_at", "pk")[:size])
            if not rows:
                break
            delete_instances_txn([pk for _, pk in rows])
        last = rows[-1]
        deleted += len(rows)
        if on_batch is not None:
            on_batch(deleted)
    return deleted


def finished_family(instances: QuerySet[WorkflowInstance]) -> QuerySet[WorkflowInstance]:
    """The finished instances of `instances` that nobody still needs: a parent that has not
    finished will collect its child (`wf.wait_child` reads the child's row), and a parent
    whose children are unfinished (being cancelled with it, or left running) is the link
    they report to. So an instance goes only once its parent and its children are finished
    too, and has told them (`family_pending`)."""
    unfinished = WorkflowInstance.objects.exclude(state__in=list(TERMINAL))
    return instances.filter(state__in=list(TERMINAL), finished_at__isnull=False, family_pending=False).exclude(
        Exists(unfinished.filter(pk=OuterRef("parent_id")))).exclude(
        Exists(unfinished.filter(parent_id=OuterRef("pk"))))


def delete_instances_txn(ids: Sequence[str]) -> None:
    """Delete these instances and every row of theirs, by set."""
    if database.connection().vendor == "postgresql":
        with database.connection().cursor() as cursor:
            cursor.execute(_delete_statement(), [list(ids)])
        return
    for model in (StepRecord, Event, Alarm, InboxMessage):
        model.objects.filter(instance_id__in=ids)._raw_delete(database.alias())
    # What the foreign key's on_delete says: a child outlives its parent.
    WorkflowInstance.objects.filter(parent_id__in=ids).update(parent=None)
    WorkflowInstance.objects.filter(pk__in=ids)._raw_delete(database.alias())


@lru_cache(maxsize=1)
def _delete_statement() -> str:
    """The same on PostgreSQL in one statement, the ids sent once as an array. The rows that
    point at an instance carry no database constraint (models.py), so nothing is checked row
    by row at commit either."""
    instances = WorkflowInstance._meta.db_table
    parts = ["WITH doomed AS (SELECT unnest(%s::text[]) AS id)"]
    for n, model in enumerate((StepRecord, Event, Alarm, InboxMessage)):
        parts.append(f"r{n} AS (DELETE FROM {model._meta.db_table} WHERE instance_id IN (SELECT id FROM doomed))")
    parts.append(f"orphans AS (UPDATE {instances} SET parent_id = NULL WHERE parent_id IN (SELECT id FROM doomed) "
                 "AND id NOT IN (SELECT id FROM doomed))")
    parts.append(f"gone AS (DELETE FROM {instances} WHERE id IN (SELECT id FROM doomed) RETURNING 1)")
    return ",\n".join(parts) + "\nSELECT count(*) FROM gone"
