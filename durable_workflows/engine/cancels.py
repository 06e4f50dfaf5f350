"""Cancelling many instances at once, by set: what `client.bulk("cancel", ...)` does to each
chunk of the instances it selected.

It changes what `instances.cancel_instance` changes, with a few statements per chunk rather
than a few per instance: Queued and Paused instances move to Cancelled (their alarms deleted,
a `workflow.cancelled` event each), Running and Pending ones are asked to stop at their next
step boundary, and finished ones are left alone. Once the chunk commits, the signals go out,
the family of each cancelled instance is told (its children cancelled, its parent woken) and
the concurrency slots it held are freed, as after a single cancel.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db.models import Case, F, Value, When

from .. import database
from ..models import Alarm, Event, WorkflowInstance
from ..states import TERMINAL, State, as_state, check_transition, transition_values
from ..text import storable
from . import clock
from .concurrency import slot_freed
from .events import EventBuffer, record_events
from .instances import finished

#: Stopped at once; the others that have not finished stop at their next step boundary.
AT_ONCE = (State.QUEUED, State.PAUSED)
FIELDS = ("id", "workflow", "state", "parent_id", "concurrency_key", "slot_held")


def cancel_many_txn(ids: Sequence[str], reason: str = "") -> int:
    """Cancel these instances, inside the caller's transaction; returns how many it cancelled
    or asked to stop (finished and unknown ones are skipped). What must wait for the commit
    (signals, family, slots) is registered with `on_commit`."""
    reason = storable(reason)
    rows = WorkflowInstance.objects.filter(pk__in=list(ids)).exclude(state__in=list(TERMINAL)).order_by("pk")
    if database.connection().vendor == "postgresql":
        rows = rows.select_for_update()
    else:
        rows.update(epoch=F("epoch"))  # write first: SQLite takes its write lock here (waits.lock_txn)
    unfinished = list(rows.only(*FIELDS))
    stopping = [i for i in unfinished if as_state(i.state) in AT_ONCE]
    asked = [i.pk for i in unfinished if as_state(i.state) not in AT_ONCE]
    if asked:
        WorkflowInstance.objects.filter(pk__in=asked, state__in=[State.RUNNING, State.PENDING]).update(
            cancel_requested=True, cancel_reason=reason, updated_at=clock.now())
    if stopping:
        _stop_txn(stopping, reason)
    return len(unfinished)


def _stop_txn(instances: list[WorkflowInstance], reason: str) -> None:
    ids = [i.pk for i in instances]
    parents = set(WorkflowInstance.objects.filter(parent_id__in=ids).values_list("parent_id", flat=True).distinct())
    family = {i.pk for i in instances if i.parent_id is not None or i.pk in parents}
    check_transition(State.PAUSED, State.CANCELLED)  # both moves are the state machine's
    values = transition_values(State.QUEUED, State.CANCELLED, {"cancel_requested": True, "cancel_reason": reason})
    WorkflowInstance.objects.filter(pk__in=ids, state__in=list(AT_ONCE)).update(
        **values, family_pending=Case(When(pk__in=list(family), then=Value(True)), default=Value(False)))
    Alarm.objects.filter(instance_id__in=ids).delete()
    buffers = [record_events(i.pk, i.workflow, ("workflow.cancelled", {"reason": reason})) for i in instances]
    Event.objects.bulk_create([Event(instance_id=b.instance_id, kind=e.kind, position=e.position, data=e.data,
                                     created_at=e.at) for b in buffers for e in b.rows()])
    for instance in instances:
        instance.state, instance.family_pending = State.CANCELLED, instance.pk in family
    database.on_commit(lambda: _after(instances, buffers))


def _after(instances: list[WorkflowInstance], buffers: list[EventBuffer]) -> None:
    for buffer in buffers:
        buffer.send()
    for instance in instances:
        finished(instance)
        slot_freed(instance)
