"""The store on PostgreSQL through psycopg 3: the hot writes of a run as one prepared
statement each, so one round trip and one commit: a fresh claim, a step's checkpoint, and the
final move to Completed or Failed; and, outside a run, a start and a sent event. Everything
else is the ORM store's.

Data-modifying CTEs let the fence (or the compare-and-set of a transition), the step records
and the events go out together: when the fence matches no row, the INSERTs select from an
empty set and write nothing, so the statement is all-or-nothing like the ORM transaction it
replaces. A checkpoint of step records alone, the one of nearly every step, needs no CTE: its
INSERT selects its rows only where an EXISTS finds the fence. The columns are the models'
own, read from their fields.

Parsing and planning such a statement costs more than executing it, so each is a prepared
statement: planned once per connection, then only bound and executed. A pooler that cannot
keep prepared statements (PgBouncer in transaction mode before 1.21) needs
`PREPARED_STATEMENTS: False`.
"""

from __future__ import annotations

import time
from datetime import datetime
from functools import lru_cache, partial
from operator import attrgetter
from typing import TYPE_CHECKING, Any, cast

from django.core.serializers.json import DjangoJSONEncoder

from ... import database
from ...conf import settings
from ...exceptions import LeaseLost
from ...models import (
    Alarm,
    AlarmReason,
    Event,
    InboxMessage,
    StepKind,
    StepRecord,
    StepState,
    WorkflowInstance,
)
from ...serialization import compiled
from ...states import State, check_transition
from ..events import EventBuffer
from .base import CLAIMABLE, Claimed, Write
from .orm import OrmStore

if TYPE_CHECKING:
    from django.db.models import Field

    from ..fence import Fence


class PostgresStore(OrmStore):
    name = "postgresql"

    def claim(self, instance_id: str, mode: str, epoch: int | None, owner: str, now: datetime,
              lease_until: datetime) -> Claimed | None:
        if mode == "fresh" and epoch is not None:
            # The common claim: a fresh task for the epoch it was dispatched at.
            events = EventBuffer(instance_id, "")
            events.add("workflow.started", None)
            instance = claim_fresh(instance_id, epoch, CLAIMABLE["fresh"], owner, now, lease_until, events)
            if instance is not None:
                events.workflow = instance.workflow
                return Claimed(instance, events)
        return super().claim(instance_id, mode, epoch, owner, now, lease_until)

    def commit(self, write: Write) -> None:
        if write.taken or write.children or write.waits or not all(r._state.adding for r in write.records):
            super().commit(write)
        elif write.transition:
            finish(write.fence, write.values, write.records, write.events)
        else:
            ids = checkpoint(write.fence, write.records, write.events, write.values)
            write.renewed = "lease_expires_at" in write.values
            if write.records:
                alias = database.alias()
                for record in write.records:
                    record.id = ids[record.slot]
                    record._state.adding = False
                    record._state.db = alias


def _columns(model: Any, names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(column, the type its placeholder is cast to) for each of the model's `names`."""
    db = database.connection()
    fields = [model._meta.get_field(name) for name in names]
    return tuple((f.column, f.cast_db_type(db)) for f in fields)


#: A step record's columns in a checkpoint's INSERT: all but its key and its instance.
STEP_FIELDS = tuple(f.attname for f in StepRecord._meta.concrete_fields if f.name not in ("id", "instance"))
#: An event row's, in the order `_event_params` gives a pending event's values.
EVENT_FIELDS = ("kind", "position", "data", "created_at")
# A record's values in STEP_FIELDS order, read in one call.
_step_values = attrgetter(*STEP_FIELDS)
_encode = DjangoJSONEncoder().encode
#: The instance's meta column, which seals its value while a codec is set.
_META = WorkflowInstance._meta.get_field("meta")


#: `_encode` for the lifecycle rows' data (plain dicts the engine builds, a few per step):
#: the same text, from one C encoder made once instead of one per call.
_encode_data = compiled(DjangoJSONEncoder())


@lru_cache(maxsize=64)
def _statement(n_records: int, n_events: int, columns: tuple[str, ...], fence_sql: str) -> str:
    instance_table = WorkflowInstance._meta.db_table
    if columns:
        sets = ", ".join(f"{column} = %s::{kind}" for column, kind in _columns(WorkflowInstance, columns))
        parts = [f"WITH fence AS (UPDATE {instance_table} SET {sets} WHERE {fence_sql} RETURNING id)"]
    else:
        # FOR SHARE conflicts with the claim's UPDATE, so the two are ordered as with an
        # UPDATE, but it adds no row version: a long run does not bloat the instance row.
        parts = [f"WITH fence AS (SELECT id FROM {instance_table} WHERE {fence_sql} FOR SHARE)"]
    if n_records:
        parts.append(_insert_cte("steps", StepRecord, STEP_FIELDS, n_records, "RETURNING branch, position, id"))
    if n_events:
        parts.append(_events_cte(n_events))
    select = "SELECT '', -1, count(*) FROM fence"
    if n_records:
        select += " UNION ALL SELECT branch, position, id FROM steps"
    return ",\n".join(parts) + "\n" + select


@lru_cache(maxsize=16)
def _records_statement(n_records: int, fence_sql: str) -> str:
    """The checkpoint of nearly every step, step records and nothing else: one INSERT whose
    rows are selected only if the fence holds. The fence is an uncorrelated EXISTS, which
    the server evaluates once before any row, taking the same FOR SHARE lock as the fence
    of `_statement`; the server does less than for `_statement`'s CTEs, which it must
    materialize, join and count. It returns a row per record written: as many as it was
    given, or none when the fence failed."""
    names, values = _values(StepRecord, STEP_FIELDS, n_records)
    ((_, instance_type),) = _columns(StepRecord, ("instance",))
    return (
        f"INSERT INTO {StepRecord._meta.db_table} (instance_id, {names}) "
        f"SELECT %s::{instance_type}, v.* FROM (VALUES {values}) AS v({names}) "
        f"WHERE EXISTS (SELECT 1 FROM {WorkflowInstance._meta.db_table} WHERE {fence_sql} FOR SHARE) "
        "RETURNING branch, position, id"
    )


def _events_cte(n_events: int) -> str:
    return _insert_cte("events", Event, EVENT_FIELDS, n_events, "")


def _written(fence: Fence, records: list[StepRecord], events: list[Any], params: list[Any]) -> list[Any]:
    """`params` (the instance's own) followed by the fence's, then each record's and event's
    values, as the statements of a checkpoint and of a run's end take them."""
    params += fence.params()
    for record in records:
        params += _step_values(record)
    if events:
        params += _event_params(events)
    return params


def _event_params(events: list[Any]) -> list[Any]:
    params: list[Any] = []
    for event in events:
        params += (event.kind, event.position, _encode_data(event.data), event.at)
    return params


def _values(model: Any, fields: tuple[str, ...], rows: int) -> tuple[str, str]:
    """The column names of the model's `fields`, and a VALUES list of `rows` rows of typed
    placeholders for them."""
    columns = _columns(model, fields)
    row = "(" + ", ".join(f"%s::{kind}" for _, kind in columns) + ")"
    return ", ".join(column for column, _ in columns), ", ".join([row] * rows)


def _insert_cte(name: str, model: Any, fields: tuple[str, ...], rows: int, returning: str) -> str:
    """An INSERT of `rows` rows that writes only if the fence CTE found the instance."""
    names, values = _values(model, fields, rows)
    return (
        f"{name} AS (INSERT INTO {model._meta.db_table} (instance_id, {names}) "
        f"SELECT fence.id, v.* FROM fence, (VALUES {values}) AS v({names}) "
        f"{returning})"
    )


def _run(sql: str, params: list[Any] | dict[str, Any]) -> list[tuple[Any, ...]]:
    db = database.connection()
    if not settings.PREPARED_STATEMENTS:
        with db.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    # As Django's own cursor() does: CONN_HEALTH_CHECKS first, then (re)connect.
    db.close_if_health_check_failed()
    db.ensure_connection()
    raw = db.connection
    # Django keeps psycopg's automatic preparation off for the whole connection (poolers);
    # it is turned on only for this statement, on a cursor that binds parameters on the
    # server, so only our fixed statement text is ever prepared.
    cursor = _server_cursor(db, raw, sql)
    db.validate_no_broken_transaction()
    logged = db.queries_logged
    started = time.monotonic() if logged else 0.0
    previous, raw.prepare_threshold = raw.prepare_threshold, 0
    try:
        with db.wrap_database_errors:
            if db.execute_wrappers:
                return _through_wrappers(db, cursor, sql, params)
            cursor.execute(sql, params)
            return cast("list[tuple[Any, ...]]", cursor.fetchall())
    finally:
        raw.prepare_threshold = previous
        if logged:
            _log(db, raw, sql, params, started)


def _execute(sql: str, params: list[Any] | dict[str, Any], many: bool,
             context: dict[str, Any]) -> list[tuple[Any, ...]]:
    cursor = context["cursor"]
    cursor.execute(sql, params)
    return cursor.fetchall()


def _through_wrappers(db: Any, cursor: Any, sql: str,
                      params: list[Any] | dict[str, Any]) -> list[tuple[Any, ...]]:
    """Execute as Django's cursor does: through the connection's `execute_wrapper`s, so
    instrumentation (and the tests' fault injection) sees these statements too. (`_run`
    executes directly when there are none.)"""
    executor: Any = _execute
    for wrapper in reversed(db.execute_wrappers):
        executor = partial(wrapper, executor)
    return executor(sql, params, False, {"connection": db, "cursor": cursor})


def _server_cursor(db: Any, raw: Any, sql: str) -> Any:
    """A server-binding cursor for `sql`, kept with the connection: a run sends one
    statement per step, and a new cursor (and Django's wrapper around it) for each is a
    measurable part of a checkpoint. One cursor per statement, because psycopg keeps a
    cursor's adapters (which dumper each parameter takes, which loader each column) only
    while it executes the same statement again and again."""
    cached = getattr(db, "_durable_workflows_cursors", None)
    if cached is None or cached[0] is not raw:
        cached = db._durable_workflows_cursors = (raw, {})
    cursors: dict[str, Any] = cached[1]
    cursor = cursors.get(sql)
    if cursor is None or cursor.closed:
        import psycopg

        if len(cursors) >= _MAX_CURSORS:
            cursors.clear()
        cursor = cursors[sql] = psycopg.Cursor(raw)
    return cursor


# The statements' shapes are few (their caches above hold fewer than this).
_MAX_CURSORS = 128


def _log(db: Any, raw: Any, sql: str, params: list[Any] | dict[str, Any], started: float) -> None:
    """Add the statement to Django's query log: the debug cursor cannot show the text of a
    prepared statement, so it is rendered here, and only while queries are logged."""
    import psycopg

    try:
        text = psycopg.ClientCursor(raw).mogrify(sql, params)
    except Exception:
        text = sql
    db.queries_log.append({"sql": text, "time": f"{time.monotonic() - started:.3f}"})


def checkpoint(fence: Fence, records: list[StepRecord], events: list[Any],
               fields: dict[str, Any]) -> dict[tuple[str, int], int]:
    """Insert `records` and `events` if, and only if, `fence` still holds, setting `fields`
    on the instance row (lease, recovery count, meta) when given: most checkpoints leave the
    row alone. Returns the new records' ids by slot (branch, position); raises LeaseLost when the fence
    fails, and then nothing was written."""
    if records and not events and not fields:
        params: list[Any] = [fence.instance_id]
        for record in records:
            params += _step_values(record)
        params += fence.params()
        rows = _run(_records_statement(len(records), fence.where(casts=True)), params)
        if len(rows) != len(records):
            raise LeaseLost()
        return {(branch, position): pk for branch, position, pk in rows}
    columns = tuple(fields)
    params = [_encode(_META.get_prep_value(fields[c])) if c == "meta" else fields[c] for c in columns] if fields else []
    sql = _statement(len(records), len(events), columns, fence.where(casts=True))
    rows = _run(sql, _written(fence, records, events, params))
    if not rows or rows[0][1] != -1 or rows[0][2] != 1:
        raise LeaseLost()
    return {(branch, position): pk for branch, position, pk in rows[1:]}


# -- transitions -------------------------------------------------------------------------------
_INSTANCE_FIELDS = tuple(WorkflowInstance._meta.concrete_fields)


@lru_cache(maxsize=8)
def _claim_statement(n_sources: int, n_events: int) -> str:
    table = WorkflowInstance._meta.db_table
    # A concrete field always has a column; the stubs type it optional.
    columns = ", ".join(database.connection().ops.quote_name(cast(str, f.column)) for f in _INSTANCE_FIELDS)
    parts = [
        f"WITH fence AS (UPDATE {table} SET state = %s, updated_at = %s, epoch = epoch + 1, "
        "lease_owner = %s, lease_expires_at = %s, run_count = run_count + 1, last_mode = %s, redispatches = 0, "
        "started_at = COALESCE(started_at, %s) "
        f"WHERE id = %s AND epoch = %s AND state IN ({', '.join(['%s'] * n_sources)}) "
        # An instance of a workflow with a concurrency limit, or a rate limit it has not yet
        # started under, takes the general path, which counts the slots or the window under
        # the group's lock. A held one (client.pause) is not claimed.
        "AND concurrency_key IS NULL AND NOT held AND (rate_key IS NULL OR started_at IS NOT NULL) "
        f"RETURNING {columns})"
    ]
    if n_events:
        parts.append(_events_cte(n_events))
    return ",\n".join(parts) + f"\nSELECT {columns} FROM fence"


def claim_fresh(instance_id: str, epoch: int, sources: tuple[State, ...], owner: str, now: Any,
                lease_until: Any, events: Any) -> WorkflowInstance | None:
    """`sources` -> Running for the task dispatched at `epoch`, with the claim's events, in
    one statement. None when the row is not in such a state at that epoch: the caller then
    takes the general path, which reads the row and sorts out why."""
    for source in sources:
        check_transition(source, State.RUNNING)
    pending = events.rows()
    params: list[Any] = [State.RUNNING.value, now, owner, lease_until, "fresh", now,
                         instance_id, epoch, *(s.value for s in sources)]
    params += _event_params(pending)
    rows = _run(_claim_statement(len(sources), len(pending)), params)
    if not rows:
        return None
    db = database.connection()
    values = [
        f.from_db_value(value, None, db) if hasattr(f, "from_db_value") else value
        for f, value in zip(_INSTANCE_FIELDS, rows[0], strict=True)
    ]
    return WorkflowInstance.from_db(db.alias, [f.attname for f in _INSTANCE_FIELDS], values)


@lru_cache(maxsize=32)
def _finish_statement(columns: tuple[str, ...], n_records: int, n_events: int, fence_sql: str) -> str:
    table = WorkflowInstance._meta.db_table
    sets = ", ".join(f"{database.connection().ops.quote_name(column)} = %s" for column in columns)
    parts = [f"WITH fence AS (UPDATE {table} SET {sets} WHERE {fence_sql} RETURNING id)"]
    if n_records:
        parts.append(_insert_cte("steps", StepRecord, STEP_FIELDS, n_records, ""))
    if n_events:
        parts.append(_events_cte(n_events))
    return ",\n".join(parts) + "\nSELECT count(*) FROM fence"


def finish(fence: Fence, values: dict[str, Any], records: list[StepRecord], events: list[Any]) -> None:
    """Write a checked transition of the running instance (`values` from
    `states.transition_values`), the new `records` the run has not written yet (the step
    it finished last) and its events, if `fence` still holds; raise LeaseLost otherwise."""
    db = database.connection()
    meta = WorkflowInstance._meta
    # `values` names the instance's own columns: concrete fields, not relations.
    fields = [cast("Field[Any, Any]", meta.get_field(name)) for name in values]
    params = [f.get_db_prep_save(values[f.name], db) for f in fields]
    sql = _finish_statement(tuple(f.column for f in fields), len(records), len(events), fence.where())
    if _run(sql, _written(fence, records, events, params))[0][0] != 1:
        raise LeaseLost()
    for record in records:
        record._state.adding = False
        record._state.db = database.alias()


# -- a sent event ------------------------------------------------------------------------------
@lru_cache(maxsize=2)
def _message_statement(event_log: bool) -> str:
    inbox, steps = InboxMessage._meta.db_table, StepRecord._meta.db_table
    alarm, events = Alarm._meta.db_table, Event._meta.db_table
    parts = [
        f"WITH dup AS (SELECT 1 FROM {inbox} WHERE instance_id = %(id)s::text AND event_id = %(event_id)s::text)",
        f"ins AS (INSERT INTO {inbox} (instance_id, name, payload, event_id, received_at, taken_at, taken_position) "
        "SELECT %(id)s::text, %(name)s::text, %(payload)s::text, %(event_id)s::text, %(now)s::timestamptz, NULL, NULL "
        "WHERE NOT EXISTS (SELECT 1 FROM dup) RETURNING id)",
        f"wait AS (SELECT branch, position FROM {steps} WHERE instance_id = %(id)s::text "
        f"AND kind = '{StepKind.EVENT.value}' AND state = '{StepState.AWAITING.value}' "
        "AND name = %(name)s::text AND %(paused)s::boolean AND EXISTS (SELECT 1 FROM ins) "
        "ORDER BY id DESC LIMIT 1)",
        f"alarm AS (INSERT INTO {alarm} (instance_id, fire_at, reason, branch, position, epoch, fired_at, created_at) "
        f"SELECT %(id)s::text, %(now)s::timestamptz, '{AlarmReason.EVENT.value}', branch, position, %(epoch)s::bigint, "
        "%(now)s::timestamptz, %(now)s::timestamptz FROM wait ON CONFLICT (instance_id) DO UPDATE SET "
        "fire_at = EXCLUDED.fire_at, reason = EXCLUDED.reason, branch = EXCLUDED.branch, "
        "position = EXCLUDED.position, epoch = EXCLUDED.epoch, fired_at = EXCLUDED.fired_at RETURNING position)",
    ]
    if event_log:
        parts.append(
            f"log AS (INSERT INTO {events} (instance_id, kind, position, data, created_at) "
            "SELECT %(id)s::text, 'event.received', NULL, %(data)s::jsonb, %(now)s::timestamptz FROM ins)"
        )
    return ",\n".join(parts) + "\nSELECT (SELECT count(*) FROM ins), (SELECT position FROM alarm)"


def store_message(instance_id: str, epoch: int, paused: bool, name: str, payload: str,
                  event_id: str | None, now: Any, data: dict[str, Any]) -> tuple[bool, int | None]:
    """Store a sent event and, when the Paused instance waits for its name, fire that wait's
    alarm, in one statement. Call under the instance row's lock, taken by an earlier
    statement of the same transaction, so that this one reads the steps and the inbox as
    they are once the lock is ours. Returns (stored, the position woken or None); not stored
    means the instance already had that `event_id`."""
    params = {"id": instance_id, "epoch": epoch, "paused": paused, "name": name, "payload": payload,
              "event_id": event_id, "now": now, "data": _encode(data)}
    stored, woken = _run(_message_statement(bool(settings.EVENT_LOG)), params)[0]
    return bool(stored), woken


# -- a start -------------------------------------------------------------------------------------
@lru_cache(maxsize=8)
def _start_statement(columns: tuple[str, ...], event_log: bool, task_table: str | None) -> str:
    table, events = WorkflowInstance._meta.db_table, Event._meta.db_table
    names = ", ".join(database.connection().ops.quote_name(c) for c in columns)
    parts = [
        f"WITH ins AS (INSERT INTO {table} ({names}) VALUES ({', '.join(['%s'] * len(columns))}) "
        "ON CONFLICT (id) DO NOTHING RETURNING id, created_at)"
    ]
    if event_log:
        parts.append(f"log AS (INSERT INTO {events} (instance_id, kind, position, data, created_at) "
                     "SELECT id, 'workflow.queued', NULL, '{}'::jsonb, created_at FROM ins)")
    if task_table:
        parts.append(f"task AS (INSERT INTO {task_table} (key, payload, lock) SELECT %s, %s, %s FROM ins)")
    return ",\n".join(parts) + "\nSELECT id FROM ins"


def insert_started(instance: WorkflowInstance, task: tuple[str, dict[str, Any]] | None) -> bool:
    """Insert a new instance (Queued) with its `workflow.queued` row and, for the ORM
    broker, its task row, in one statement. False when the id was taken: nothing written."""
    db = database.connection()
    fields = _INSTANCE_FIELDS
    params = [f.get_db_prep_save(getattr(instance, f.attname), db) for f in fields]
    table = None
    if task is not None:
        table, row = task
        params += [row["key"], row["payload"], row["lock"]]
    sql = _start_statement(tuple(f.column for f in fields), bool(settings.EVENT_LOG), table)
    return bool(_run(sql, params))
