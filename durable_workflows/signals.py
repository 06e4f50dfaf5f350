"""Lifecycle signals: one per event, plus `lifecycle_event` for every event.

Receivers get `event` (the name, e.g. "step.completed"), `instance_id`, `workflow`,
`position` (None for workflow events) and `data`. Signals are sent after the change they
describe has committed, so a receiver that reads the database sees it.
"""

from __future__ import annotations

from django.dispatch import Signal

EVENT_NAMES = (
    "workflow.started",
    "workflow.queued",
    "workflow.completed",
    "workflow.failed",
    "workflow.paused",
    "workflow.resumed",
    "workflow.cancelled",
    "workflow.recovered",
    "workflow.continued",
    "step.started",
    "step.completed",
    "step.failed",
    "retry.scheduled",
    "retry.exhausted",
    "sleep.started",
    "sleep.completed",
    "timeout.set",
    "timeout.exceeded",
    "event.waiting",
    "event.received",
    "event.timeout",
    "child.started",
    "child.waiting",
)

lifecycle_event = Signal()

workflow_started = Signal()
workflow_queued = Signal()
workflow_completed = Signal()
workflow_failed = Signal()
workflow_paused = Signal()
workflow_resumed = Signal()
workflow_cancelled = Signal()
workflow_recovered = Signal()
workflow_continued = Signal()
step_started = Signal()
step_completed = Signal()
step_failed = Signal()
retry_scheduled = Signal()
retry_exhausted = Signal()
sleep_started = Signal()
sleep_completed = Signal()
timeout_set = Signal()
timeout_exceeded = Signal()
event_waiting = Signal()
event_received = Signal()
event_timeout = Signal()
child_started = Signal()
child_waiting = Signal()

SIGNALS: dict[str, Signal] = {
    name: globals()[name.replace(".", "_")] for name in EVENT_NAMES
}
