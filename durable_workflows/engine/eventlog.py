"""Reading an instance's event log: its rows, and the step events its step records hold.

A step writes one row, its record (events.py says why): the record's last attempt start is
its `step.started`, and a finished step's end its `step.completed`. The log puts those
among the event rows by time. Within a run every event is stamped later than the one before
it (`EventBuffer.stamp`), so the order is the order in which things happened; the rows of a
failed attempt's start, written when it failed, carry the time it started and sort there.

A fork's copied records happened to the instance it was forked from: they are on that
instance's log, not on the fork's, which begins when the fork was made.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count, Q
from django.db.models.functions import Coalesce

from ..conf import settings
from ..models import Event, StepKind, StepRecord, StepState, WorkflowInstance
from .lanes import branch_data

_LOGGED_STATES = (StepState.RUNNING, StepState.COMPLETED)
_RECORD_FIELDS = ("pk", "branch", "position", "name", "state", "attempts", "attempt_started_at", "finished_at")


@dataclass(frozen=True)
class LoggedEvent:
    """One entry of the event log, whether it was written as a row or read from a record."""

    kind: str
    position: int | None
    data: dict[str, Any]
    at: datetime


def event_log(instance: WorkflowInstance | str, latest: int | None = None) -> tuple[list[LoggedEvent], int]:
    """The instance's events, oldest first, and how many there are in all; with `latest`,
    only that many of the newest (the count is still of all)."""
    if isinstance(instance, str):
        instance = WorkflowInstance.objects.get(pk=instance)
    rows = Event.objects.filter(instance_id=instance.pk)
    records = _logged_records(instance)
    if latest is None:
        entries = _merged(list(rows.order_by("created_at", "id")), list(records.values(*_RECORD_FIELDS)))
        return entries, len(entries)
    newest_rows = list(rows.order_by("-created_at", "-id")[: latest + 1])
    newest_records = list(records.annotate(last_at=Coalesce("finished_at", "attempt_started_at"))
                          .order_by("-last_at", "-pk").values(*_RECORD_FIELDS)[: latest + 1])
    entries = _merged(newest_rows, newest_records)
    total = len(entries)
    if len(newest_rows) > latest or len(newest_records) > latest:
        total = rows.count() + _derived_count(records)
    return entries[-latest:] if latest else [], total


def _logged_records(instance: WorkflowInstance) -> Any:
    if not settings.EVENT_LOG:
        return StepRecord.objects.none()
    records = StepRecord.objects.filter(instance_id=instance.pk, kind=StepKind.STEP, state__in=_LOGGED_STATES,
                                        attempt_started_at__isnull=False)
    if instance.forked_from:
        records = records.filter(attempt_started_at__gte=instance.created_at)
    return records


def _derived_count(records: Any) -> int:
    counts = records.aggregate(started=Count("pk"), completed=Count("pk", filter=Q(state=StepState.COMPLETED)))
    return int(counts["started"]) + int(counts["completed"])


def _merged(rows: list[Event], records: list[dict[str, Any]]) -> list[LoggedEvent]:
    keyed: list[tuple[datetime, int, int, LoggedEvent]] = [
        (row.created_at, 0, row.pk, LoggedEvent(row.kind, row.position, row.data, row.created_at)) for row in rows
    ]
    for record in records:
        data = {"name": record["name"], "attempt": record["attempts"], **branch_data(record["branch"])}
        started = record["attempt_started_at"]
        keyed.append((started, 1, 2 * record["pk"],
                      LoggedEvent("step.started", record["position"], data, started)))
        if record["state"] == StepState.COMPLETED and record["finished_at"] is not None:
            keyed.append((record["finished_at"], 1, 2 * record["pk"] + 1,
                          LoggedEvent("step.completed", record["position"], dict(data), record["finished_at"])))
    keyed.sort(key=lambda entry: entry[:3])
    return [entry[3] for entry in keyed]

