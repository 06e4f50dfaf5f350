"""The order in which waiting instances go: higher priority first, then the oldest.

Wherever instances wait for something that lets them go a few at a time (a concurrency
slot today), they go in `ORDER`, and `ahead_of(instance)` is the filter of those that go
before one of them. Both come from here, so every kind of wait agrees on who is next and an
index on the same columns serves them all (`dw_instance_slot_order`).

A priority is an int from -100 to 100, as `django.tasks` has it; 0 unless the start or the
workflow's `@workflow(priority=...)` says otherwise.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import OuterRef, Q

from ..models import WorkflowInstance
from ..states import State

#: Who goes first, for `order_by`: the highest priority, then the oldest, then by id.
ORDER = ("-priority", "created_at", "pk")


def _ahead(priority: Any, created_at: Any, pk: Any) -> Q:
    return (Q(priority__gt=priority) | Q(priority=priority, created_at__lt=created_at)
            | Q(priority=priority, created_at=created_at, pk__lt=pk))


def ahead_of(instance: WorkflowInstance) -> Q:
    """The instances that come before `instance` in `ORDER` (whatever they wait for: combine
    it with the filter of those waiting)."""
    return _ahead(instance.priority, instance.created_at, instance.pk)


def ahead_of_outer() -> Q:
    """`ahead_of` the row of the outer query, for a subquery counting those before each row."""
    return _ahead(OuterRef("priority"), OuterRef("created_at"), OuterRef("pk"))


def due(now: datetime) -> Q:
    """Not held back by a delayed start (delay=, start_at=, debounce=) still to come."""
    return Q(start_at__isnull=True) | Q(start_at__lte=now)


def queued_due(now: datetime) -> Q:
    """Queued, and free to go as far as its start time goes."""
    return Q(state=State.QUEUED) & due(now)
