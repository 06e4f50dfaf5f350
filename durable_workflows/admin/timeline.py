"""The rows of the instance page's step timeline and event log, ready for the template.

Both are read in one query each and capped, so an instance that looped through thousands of
steps still opens quickly; the page says how many rows it left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils.safestring import SafeString

from ..codecs import PLACEHOLDER
from ..engine import clock
from ..engine.eventlog import event_log
from ..models import StepKind, StepRecord, StepState, WorkflowInstance
from . import charts
from .badges import step_state_badge
from .display import capped, compact, decode, pretty, relative, shorten, shown, step_duration

MAX_STEPS = 500
MAX_EVENTS = 200
# Bars drawn in the timeline; the table below it lists up to MAX_STEPS.
MAX_BARS = 60


@dataclass(frozen=True)
class StepRow:
    position: int
    branch: str
    name: str
    kind: str
    badge: SafeString
    attempts: int | None
    started_at: datetime | None
    duration: str
    result: str
    result_full: str
    error_summary: str
    error_traceback: str
    note: str


@dataclass(frozen=True)
class EventRow:
    at: datetime
    kind: str
    position: int | None
    data: str


def step_rows(instance: WorkflowInstance) -> tuple[list[StepRow], int, SafeString, int]:
    """The latest MAX_STEPS steps in run order (where a long instance is now, or where it
    failed), how many there are in all, the bars of the latest MAX_BARS of them on one time
    axis (an SVG), and how many steps the bars cover."""
    records = list(
        StepRecord.objects.filter(instance_id=instance.pk).order_by("-id")[: MAX_STEPS + 1]
    )
    total = len(records)
    if total > MAX_STEPS:
        total = StepRecord.objects.filter(instance_id=instance.pk).count()
        records = records[:MAX_STEPS]
    now = clock.now()
    records.sort(key=lambda record: record.sort_key)  # a branch's steps under its wf.parallel
    drawn = records[-MAX_BARS:]
    bars = [bar for bar in (_bar(record, now) for record in drawn) if bar is not None]
    values = shown(instance)
    return [_step_row(record, now, values) for record in records], total, charts.timeline(bars), len(drawn)


def _bar(record: StepRecord, now: datetime) -> charts.Bar | None:
    """A step's bar: from its first start to its end, or to now while it is under way."""
    if record.started_at is None or record.kind in (StepKind.PATCH, StepKind.PARALLEL):
        return None
    end = record.finished_at or now
    label = f"{record.branch}/{record.position} {record.name}" if record.branch else f"{record.position} {record.name}"
    if record.kind == StepKind.STEP:
        css = {StepState.COMPLETED: "dw-bar-ok", StepState.FAILED: "dw-bar-failed",
               StepState.WAITING: "dw-bar-retry"}.get(StepState(record.state), "dw-bar-running")
        note = f"{record.attempts} attempts" if record.attempts > 1 else ""
    else:
        css = {StepKind.SLEEP: "dw-bar-sleep", StepKind.EVENT: "dw-bar-event"}.get(
            StepKind(record.kind), "dw-bar-child")
        note = record.get_kind_display().lower()
    return charts.Bar(label, record.started_at, max(end, record.started_at), css, note)


def _step_row(record: StepRecord, now: datetime, values: bool = True) -> StepRow:
    result_full = result = ""
    completed = record.state == StepState.COMPLETED and record.kind in (StepKind.STEP, StepKind.EVENT)
    if completed and not values:
        result = PLACEHOLDER
    elif completed:
        value = decode(record.result)
        result = shorten(compact(value))
        if result != compact(value):
            result_full = capped(pretty(value))
    is_sleep = record.kind == StepKind.SLEEP
    waits = record.kind != StepKind.STEP
    error_summary = ""
    if record.error_type or record.error_message:
        error_summary = f"{record.error_type}: {record.error_message}".strip(": ")
    return StepRow(
        position=record.position,
        branch=record.branch,
        name=record.name,
        kind=record.get_kind_display(),
        badge=step_state_badge(record.state),
        attempts=None if waits else record.attempts,
        started_at=record.started_at,
        duration=step_duration(
            record.started_at, record.finished_at, now, record.wake_at if is_sleep else None
        ),
        result=result,
        result_full=result_full,
        error_summary=error_summary,
        error_traceback=record.error_traceback,
        note=_note(record, now),
    )


def _note(record: StepRecord, now: datetime) -> str:
    if record.state == StepState.SLEEPING and record.wake_at is not None:
        return f"wakes {relative(record.wake_at, now)}"
    if record.state == StepState.WAITING and record.wake_at is not None:
        return f"next attempt {relative(record.wake_at, now)}"
    if record.state == StepState.AWAITING:
        return f"times out {relative(record.wake_at, now)}" if record.wake_at else "no timeout"
    if record.state == StepState.RUNNING and record.deadline_at is not None:
        return f"attempt deadline {relative(record.deadline_at, now)}"
    return ""


def event_rows(instance: WorkflowInstance) -> tuple[list[EventRow], int]:
    """The latest MAX_EVENTS events, oldest first, and how many there are in all."""
    latest, total = event_log(instance, latest=MAX_EVENTS)
    return [
        EventRow(at=e.at, kind=e.kind, position=e.position, data=_event_data(e.data))
        for e in latest
    ], total


def _event_data(data: Any) -> str:
    if not data:
        return ""
    if isinstance(data, dict):
        return shorten(", ".join(f"{key}={value}" for key, value in data.items()), 240)
    return shorten(str(data), 240)
