"""Births: the one path by which a new instance comes to be, whichever way it is made.

`start()` and `start_many()`, `run_inline()` and the testing helpers, a workflow's
`wf.start_child()` and `client.fork()` all build their row with `conceive()` and store it
with `insert_txn()` (or, on PostgreSQL, `start()`'s single statement, which takes the row
`conceive()` built). So every instance gets its fields by the same rules: its arguments
checked against the function, its input stored, its concurrency key, its priority (the
start's, or its workflow's), the trace context of the code that made it, its creation time,
its deadline counted from that time, and, for a delayed start, when it is to start.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from ..conf import settings
from ..models import Event, WorkflowInstance
from ..registry import WorkflowDefinition, get_definition
from ..serialization import encode_input
from ..states import State
from . import clock, observe, ratelimit
from .concurrency import key_of
from .events import EventBuffer, record_events

#: The event every instance that is handed to a worker logs first.
QUEUED = "workflow.queued"


def check_id(instance_id: str | None) -> None:
    if instance_id is not None:
        if not isinstance(instance_id, str) or not instance_id.strip():
            raise ValueError(f"instance_id must be non-empty text, got {instance_id!r}")
        if len(instance_id) > 255 or "\x00" in instance_id:
            raise ValueError("instance_id must be at most 255 characters, without NUL")


def conceive(definition: WorkflowDefinition, args: Sequence[Any], kwargs: dict[str, Any],
             instance_id: str | None, *, now: datetime | None = None, state: State = State.PENDING,
             parent_id: str | None = None, parent_position: int | None = None,
             forked_from: str | None = None, stored_input: str | None = None, priority: int | None = None,
             start_at: datetime | None = None, debounce_key: str | None = None) -> WorkflowInstance:
    """A new instance, not yet saved, once its id and arguments are known to fit and to be
    storable. `now` is its creation time; without one, `insert_txn` gives it the time of
    the insert (a child is built when the workflow calls `start_child` and inserted with
    the run's next write). A fork passes the `stored_input` it copies, as stored. A Queued
    instance with a `start_at` is not handed to a worker before then (delays.py)."""
    check_id(instance_id)
    definition.check_arguments(tuple(args), kwargs)
    instance = WorkflowInstance(
        id=instance_id or uuid.uuid4().hex, workflow=definition.name,
        input=encode_input(args, kwargs) if stored_input is None else stored_input,
        state=state, concurrency_key=key_of(definition, args, kwargs),
        rate_key=ratelimit.key_of(definition, args, kwargs), parent_id=parent_id,
        parent_position=parent_position, forked_from=forked_from,
        priority=definition.priority if priority is None else priority, start_at=start_at,
        debounce_key=debounce_key, **observe.start_fields())
    if now is not None:
        stamp(instance, definition, now)
    return instance


def stamp(instance: WorkflowInstance, definition: WorkflowDefinition, now: datetime) -> None:
    """Born at `now`: its creation time, the deadline its workflow's timeout counts from it,
    and, for an instance handed to a worker at once, the time it was."""
    instance.created_at = instance.updated_at = now
    if instance.state == State.QUEUED and instance.start_at is None:
        instance.dispatched_at = now
    if definition.timeout is not None:
        instance.deadline_at = now + timedelta(seconds=definition.timeout)


def queued(instance: WorkflowInstance) -> EventBuffer:
    """The `workflow.queued` row of an instance handed to a worker."""
    return record_events(instance.pk, instance.workflow, (QUEUED, {}))


def insert_txn(instances: list[WorkflowInstance], buffers: list[EventBuffer]) -> None:
    """Insert new instances and their buffered lifecycle rows, one INSERT each whatever
    their number, inside the caller's transaction. An instance not yet stamped is born now."""
    now = None
    for instance in instances:
        if instance.created_at is None:
            now = now or clock.now()
            stamp(instance, get_definition(instance.workflow), now)
    WorkflowInstance.objects.bulk_create(instances)
    if settings.EVENT_LOG:
        Event.objects.bulk_create(
            Event(instance_id=b.instance_id, kind=e.kind, position=e.position, data=e.data, created_at=e.at)
            for b in buffers for e in b.pending)
