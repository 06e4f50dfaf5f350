"""Debounced starts: `client.start(..., debounce="30s", debounce_key=K, debounce_max=...)`.

A debounced start is a delayed start (delays.py) that later calls with the same key push
back: while an instance of the workflow with that key is pending (Queued, its start alarm
not yet due), a call does not make another one. It gives that instance this call's
arguments (and priority) and moves its start to now + debounce, never past its first call
+ debounce_max, and returns it. So a burst of calls starts the workflow once, with the last
call's arguments, once the calls stop (or debounce_max after the first).

The caller holds the key's lock (starts.py), so two calls never both find nothing and make
two. The release by `fire_alarms()` is not under that lock: it deletes the alarm as it was
read, then marks the instance dispatched, and a push changes the alarm first, then the
instance, each a compare-and-set, so that one of the two sees the other's write and the
instance is either pushed back or released, never both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import database
from ..models import Alarm, AlarmReason, WorkflowInstance
from ..registry import WorkflowDefinition
from ..serialization import encode_input
from ..start_options import StartOptions
from ..states import State
from .concurrency import key_of


class _Released(Exception):
    """The pending instance was released while it was being pushed back."""


def push_txn(definition: WorkflowDefinition, args: Sequence[Any], kwargs: dict[str, Any],
             options: StartOptions, now: Any) -> WorkflowInstance | None:
    """The pending instance of the key, pushed back with these arguments; None when there is
    none (the caller then starts a new one)."""
    assert options.debounce is not None
    stored = encode_input(args, kwargs)  # SerializationError before anything is written
    pending = (WorkflowInstance.objects
               .filter(workflow=definition.name, debounce_key=options.debounce_key, state=State.QUEUED,
                       dispatched_at__isnull=True, start_at__gt=now)
               .order_by("created_at").only("id", "created_at", "start_at").first())
    if pending is None or pending.start_at is None:
        return None
    start_at = now + options.debounce
    if options.debounce_max is not None:
        start_at = min(start_at, pending.created_at + options.debounce_max)
    try:
        with database.atomic():
            if not Alarm.objects.filter(instance_id=pending.pk, reason=AlarmReason.START, fired_at__isnull=True,
                                        fire_at=pending.start_at).update(fire_at=start_at):
                raise _Released
            if not WorkflowInstance.objects.filter(
                    pk=pending.pk, state=State.QUEUED, dispatched_at__isnull=True).update(
                    input=stored, start_at=start_at, updated_at=now,
                    priority=definition.priority if options.priority is None else options.priority,
                    concurrency_key=key_of(definition, args, kwargs)):
                raise _Released
    except _Released:
        return None
    return WorkflowInstance.objects.get(pk=pending.pk)
