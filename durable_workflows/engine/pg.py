"""PostgreSQL fast path: a step's checkpoint as one prepared statement, one round trip, one commit.

Data-modifying CTEs let the fence, the step records and the events go out together: when the
fence matches no row, the INSERTs select from an empty set and write nothing, so the statement
is all-or-nothing like the ORM transaction it replaces. Used for the common checkpoint (new
records only); everything else takes the ORM path.

Parsing and planning that statement costs more than executing it, so it is a prepared
statement: planned once per connection, then only bound and executed. A pooler that cannot
keep prepared statements (PgBouncer in transaction mode before 1.21) needs
`PREPARED_STATEMENTS: False`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import DEFAULT_DB_ALIAS, connection, connections

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
_encode = DjangoJSONEncoder().encode


def usable() -> bool:
    return connection.vendor == "postgresql"


@lru_cache(maxsize=64)
def _statement(n_records: int, n_events: int, renew: bool, reset_recoveries: bool) -> str:
    instance_table = WorkflowInstance._meta.db_table
    where = ("WHERE id = %s::text AND epoch = %s::bigint AND state = %s::text "
             "AND NOT cancel_requested")
    if renew:
        sets = "lease_expires_at = %s::timestamptz, updated_at = %s::timestamptz"
        if reset_recoveries:
            sets += ", recovery_count = 0"
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


def _run(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    db = connections[DEFAULT_DB_ALIAS]
    if not settings.PREPARED_STATEMENTS:
        with db.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    import psycopg

    db.ensure_connection()
    raw = db.connection
    # Django keeps psycopg's automatic preparation off for the whole connection (poolers);
    # it is turned on only for this statement, on a cursor that binds parameters on the
    # server, so only our fixed statement text is ever prepared.
    previous, raw.prepare_threshold = raw.prepare_threshold, 0
    try:
        cursor = psycopg.Cursor(raw)
        with db.make_debug_cursor(cursor) if db.queries_logged else db.make_cursor(cursor) as wrapped:
            wrapped.execute(sql, params)
            return wrapped.fetchall()
    finally:
        raw.prepare_threshold = previous


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
        params.extend((event.kind, event.position, _encode(event.data), event.at))
    rows = _run(_statement(len(records), len(events), renew, "recovery_count" in fields), params)
    if not rows or rows[0][0] != -1 or rows[0][1] != 1:
        raise LeaseLost()
    ids = {position: pk for position, pk in rows[1:]}
    for record in records:
        record.pk = ids[record.position]
        record._state.adding = False
    run.events.committed.extend(run.events.pending)
    run.events.pending = []
