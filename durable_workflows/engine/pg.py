"""PostgreSQL fast path: a step's checkpoint as one statement, so one round trip and one commit.

Data-modifying CTEs let the fence (the UPDATE of the instance row on its epoch), the step
records and the events go out together: when the fence matches no row, the INSERTs select from
an empty set and write nothing, so the statement is all-or-nothing like the ORM transaction it
replaces. Used for the common checkpoint (new records only); everything else takes the ORM path.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection

from ..conf import settings
from ..exceptions import LeaseLost
from ..models import Event, StepRecord, WorkflowInstance
from ..states import State

if TYPE_CHECKING:
    from .store import Run

STEP_COLUMNS = (
    ("position", "int"), ("name", "text"), ("kind", "text"), ("state", "text"),
    ("result", "text"), ("error_type", "text"), ("error_message", "text"),
    ("error_traceback", "text"), ("attempts", "int"), ("started_at", "timestamptz"),
    ("attempt_started_at", "timestamptz"), ("finished_at", "timestamptz"),
    ("deadline_at", "timestamptz"), ("wake_at", "timestamptz"),
)
EVENT_COLUMNS = (("kind", "text"), ("position", "int"), ("data", "jsonb"), ("created_at", "timestamptz"))


def usable() -> bool:
    return connection.vendor == "postgresql"


@lru_cache(maxsize=64)
def _statement(n_records: int, n_events: int, renew: bool, reset_recoveries: bool) -> str:
    instance_table = WorkflowInstance._meta.db_table
    where = "WHERE id = %s AND epoch = %s AND state = %s AND NOT cancel_requested"
    if renew:
        sets = "lease_expires_at = %s, updated_at = %s" + (", recovery_count = 0" if reset_recoveries else "")
        parts = [f"WITH fence AS (UPDATE {instance_table} SET {sets} {where} RETURNING id)"]
    else:
        # FOR SHARE conflicts with the claim's UPDATE, so the two are ordered as with an
        # UPDATE, but it adds no row version: a long run does not bloat the instance row.
        parts = [f"WITH fence AS (SELECT id FROM {instance_table} {where} FOR SHARE)"]
    if n_records:
        parts.append(_insert_cte("steps", StepRecord, STEP_COLUMNS, n_records, "RETURNING position, id"))
    if n_events:
        parts.append(_insert_cte("events", Event, EVENT_COLUMNS, n_events, ""))
    select = "SELECT -1, count(*) FROM fence"
    if n_records:
        select += " UNION ALL SELECT position, id FROM steps"
    return ",\n".join(parts) + "\n" + select


def _insert_cte(name: str, model: Any, columns: tuple[tuple[str, str], ...], rows: int,
                returning: str) -> str:
    """An INSERT of `rows` rows that writes only if the fence CTE found the instance."""
    row = "(" + ", ".join(f"%s::{kind}" for _, kind in columns) + ")"
    names = ", ".join(column for column, _ in columns)
    return (
        f"{name} AS (INSERT INTO {model._meta.db_table} (instance_id, {names}) "
        f"SELECT fence.id, v.* FROM fence, (VALUES {', '.join([row] * rows)}) AS v({names}) "
        f"{returning})"
    )


def save_fenced(run: Run, records: list[StepRecord], fields: dict[str, Any]) -> None:
    """Write `records` and the run's pending events if, and only if, the run still owns the
    instance; raise LeaseLost otherwise. `fields` (lease, recovery count) are written only
    when given: most checkpoints leave the instance row alone."""
    events = run.events.pending if settings.EVENT_LOG else []
    renew = "lease_expires_at" in fields
    params: list[Any] = [fields["lease_expires_at"], fields["updated_at"]] if renew else []
    params += [run.instance_id, run.epoch, State.RUNNING.value]
    for record in records:
        params.extend(getattr(record, name) for name, _ in STEP_COLUMNS)
    for event in events:
        params.extend((event.kind, event.position, json.dumps(event.data, cls=DjangoJSONEncoder), event.at))
    sql = _statement(len(records), len(events), renew, "recovery_count" in fields)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if not rows or rows[0][0] != -1 or rows[0][1] != 1:
        raise LeaseLost()
    ids = {position: pk for position, pk in rows[1:]}
    for record in records:
        record.pk = ids[record.position]
        record._state.adding = False
    run.events.committed.extend(run.events.pending)
    run.events.pending = []
