"""Lifecycle events: buffered with the write they describe, signalled once it commits."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils import timezone

from ..conf import settings
from ..models import Event, WorkflowInstance
from ..signals import SIGNALS, lifecycle_event


@dataclass
class PendingEvent:
    kind: str
    position: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
    at: datetime = field(default_factory=timezone.now)
    signalled: bool = False


class EventBuffer:
    """Events waiting for the transaction that records the change they describe."""

    def __init__(self, instance_id: str, workflow: str) -> None:
        self.instance_id = instance_id
        self.workflow = workflow
        self.pending: list[PendingEvent] = []
        self.committed: list[PendingEvent] = []

    def add(self, kind: str, position: int | None = None, **data: Any) -> None:
        if kind not in SIGNALS:
            raise ValueError(f"unknown lifecycle event {kind!r}")
        self.pending.append(PendingEvent(kind, position, data))

    def announce(self, kind: str, position: int | None = None, **data: Any) -> None:
        """Signal an event now and buffer its row for the next write: for what is true the
        moment it happens (a step starting), though its row is written with what follows.
        Events buffered before it are signalled first, so signals keep the log's order."""
        self.add(kind, position, **data)
        for event in self.pending:
            if not event.signalled:
                self._signal(event)
                event.signalled = True

    def write_txn(self) -> None:
        """Insert the pending events; call inside the transaction that makes the change."""
        if not self.pending:
            return
        if settings.EVENT_LOG:
            Event.objects.bulk_create(
                [
                    Event(
                        instance_id=self.instance_id, kind=e.kind, position=e.position,
                        data=e.data, created_at=e.at,
                    )
                    for e in self.pending
                ]
            )
        self.committed.extend(self.pending)
        self.pending = []

    def discard(self) -> None:
        """Drop events whose transaction rolled back: what they describe did not happen."""
        self.pending = []
        self.committed = []

    def send(self) -> None:
        """Send the signals of everything written so far; call after the commit."""
        events, self.committed = self.committed, []
        for event in events:
            if not event.signalled:
                self._signal(event)

    def _signal(self, event: PendingEvent) -> None:
        kwargs = {
            "event": event.kind,
            "instance_id": self.instance_id,
            "workflow": self.workflow,
            "position": event.position,
            "data": event.data,
        }
        SIGNALS[event.kind].send(sender=WorkflowInstance, **kwargs)
        lifecycle_event.send(sender=WorkflowInstance, **kwargs)


def record_events(instance_id: str, workflow: str, *events: tuple[str, dict[str, Any]]) -> EventBuffer:
    """Buffer events outside an execution (start, cancel, alarms); returns the buffer to send."""
    buffer = EventBuffer(instance_id, workflow)
    for kind, data in events:
        buffer.add(kind, None, **data)
    return buffer
