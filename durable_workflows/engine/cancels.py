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

import json
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from django.db.models import Case, F, Value, When

from .. import database
from ..conf import settings
from ..models import Alarm, Event, WorkflowInstance
from ..states import State, check_transition, transition_values
from ..text import storable
from .concurrency import slot_freed
from .events import record_events
from .instances import finished

#: Stopped at once; the others that have not finished (ASKED) stop at their next step boundary.
AT_ONCE = (State.QUEUED, State.PAUSED)
ASKED = (State.RUNNING, State.PENDING)
FIELDS = ("id", "workflow", "state", "parent_id", "concurrency_key", "slot_held")
#: What the PostgreSQL statement returns of each instance it cancelled.
RETURNED = ("id", "workflow", "parent", "concurrency_key", "slot_held", "family_pending")


def cancel_many_txn(ids: Sequence[str], reason: str = "") -> int:
    """Cancel these instances, inside the caller's transaction; returns how many it cancelled
    or asked to stop (finished and unknown ones are skipped). What must wait for the commit
    (signals, family, slots) is registered with `on_commit`."""
    reason = storable(reason)
    ids = list(ids)
    check_transition(State.PAUSED, State.CANCELLED)  # both moves are the state machine's
    values = transition_values(State.QUEUED, State.CANCELLED, {"cancel_requested": True, "cancel_reason": reason})
    if database.connection().vendor == "postgresql":
        asked, stopped = _stop_in_one_statement_txn(ids, values)
    else:
        asked = WorkflowInstance.objects.filter(pk__in=ids, state__in=ASKED).update(
            cancel_requested=True, cancel_reason=reason, updated_at=values["updated_at"])
        stopped = _stop_txn(ids, values)
    database.on_commit(lambda: _after(stopped, reason))
    return asked + len(stopped)


#: A cancelled instance: its id, its workflow, and the instance itself when its end is owed
#: to others (a family to tell, a concurrency slot to free), else None.
Stopped = tuple[str, str, "WorkflowInstance | None"]


def _owed(instance: WorkflowInstance) -> WorkflowInstance | None:
    return instance if instance.family_pending or (instance.concurrency_key is not None and instance.slot_held) \
        else None


def _stop_txn(ids: list[str], values: dict[str, Any]) -> list[Stopped]:
    rows = WorkflowInstance.objects.filter(pk__in=ids, state__in=list(AT_ONCE))
    rows.update(epoch=F("epoch"))  # write first: SQLite takes its write lock here (waits.lock_txn)
    instances = list(rows.only(*FIELDS))
    if not instances:
        return []
    ids = [i.pk for i in instances]
    parents = set(WorkflowInstance.objects.filter(parent_id__in=ids).values_list("parent_id", flat=True).distinct())
    family = {i.pk for i in instances if i.parent_id is not None or i.pk in parents}
    WorkflowInstance.objects.filter(pk__in=ids, state__in=list(AT_ONCE)).update(
        **values, family_pending=Case(When(pk__in=list(family), then=Value(True)), default=Value(False)))
    Alarm.objects.filter(instance_id__in=ids).delete()
    if settings.EVENT_LOG:
        Event.objects.bulk_create([Event(instance_id=pk, kind="workflow.cancelled", data={"reason": values["cancel_reason"]},
                                         created_at=values["updated_at"]) for pk in ids])
    for instance in instances:
        instance.state, instance.family_pending = State.CANCELLED, instance.pk in family
    return [(i.pk, i.workflow, _owed(i)) for i in instances]


def _stop_in_one_statement_txn(ids: list[str], values: dict[str, Any]) -> tuple[int, list[Stopped]]:
    """The same on PostgreSQL as one statement, the ids sent once as an array: the request to
    stop of those Running, the move of those Queued or Paused (the state machine's
    compare-and-set), their alarms' delete and their events' insert together. Returns how
    many were asked to stop, and those cancelled."""
    with database.connection().cursor() as cursor:
        moved = [value.value if isinstance(value, State) else value for value in values.values()]
        cursor.execute(_statement(tuple(values)), [
            values["cancel_reason"], values["updated_at"], ids, *moved, ids,
            json.dumps({"reason": values["cancel_reason"]}), values["updated_at"], bool(settings.EVENT_LOG)])
        rows = cursor.fetchall()
    stopped: list[Stopped] = []
    asked = rows[0][0] if rows else 0
    for _, pk, workflow, parent_id, key, slot_held, family_pending in rows:
        if pk is None:
            continue
        owed = None
        if family_pending or (key is not None and slot_held):
            owed = WorkflowInstance(pk=pk, workflow=workflow, state=State.CANCELLED, parent_id=parent_id,
                                    concurrency_key=key, slot_held=slot_held, family_pending=family_pending)
            owed._state.adding = False
        stopped.append((pk, workflow, owed))
    return asked, stopped


@lru_cache(maxsize=4)
def _statement(columns: tuple[str, ...]) -> str:
    quote = database.connection().ops.quote_name
    table = quote(WorkflowInstance._meta.db_table)
    column = {f.name: quote(str(f.column)) for f in WorkflowInstance._meta.concrete_fields}
    assignments = ", ".join(f"{column[name]} = %s" for name in columns)
    states = ", ".join(f"'{state.value}'" for state in AT_ONCE)
    running = ", ".join(f"'{state.value}'" for state in ASKED)
    returned = ", ".join(f"t.{column[name]}" for name in RETURNED)
    events, alarms = quote(Event._meta.db_table), quote(Alarm._meta.db_table)
    return (
        f"WITH asked AS (UPDATE {table} SET {column['cancel_requested']} = true, {column['cancel_reason']} = %s, "
        f"{column['updated_at']} = %s WHERE id = ANY(%s::text[]) AND {column['state']} IN ({running}) RETURNING 1),\n"
        f"stopped AS (UPDATE {table} AS t SET {assignments}, {column['family_pending']} = "
        f"(t.{column['parent']} IS NOT NULL OR EXISTS (SELECT 1 FROM {table} c WHERE c.{column['parent']} = t.id)) "
        f"WHERE t.id = ANY(%s::text[]) AND t.{column['state']} IN ({states}) RETURNING {returned}),\n"
        f"alarms AS (DELETE FROM {alarms} WHERE instance_id IN (SELECT id FROM stopped)),\n"
        f"logged AS (INSERT INTO {events} (instance_id, kind, position, data, created_at) "
        f"SELECT id, 'workflow.cancelled', NULL, %s::jsonb, %s FROM stopped WHERE %s)\n"
        f"SELECT a.n, s.* FROM (SELECT count(*) AS n FROM asked) a LEFT JOIN stopped s ON true ORDER BY s.id"
    )


def _after(stopped: list[Stopped], reason: str) -> None:
    for pk, workflow, _ in stopped:
        record_events(pk, workflow, ("workflow.cancelled", {"reason": reason})).send()
    for _, _, owed in stopped:
        if owed is not None:
            finished(owed)
            slot_freed(owed)
