"""Lifecycle events: buffered with the write they describe, signalled once it commits."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..conf import settings
from ..models import Event, WorkflowInstance
from ..signals import SIGNALS, lifecycle_event
from . import clock

logger = logging.getLogger("durable_workflows")


@dataclass
class PendingEvent:
    kind: str
    position: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
    at: datetime = field(default_factory=clock.now)
    signalled: bool = False


class EventBuffer:
    """Events waiting for the transaction that records the change they describe.

    The buffer changes only once that transaction has committed (`send()`): a write that
    fails leaves it as it was.
    """

    def __init__(self, instance_id: str, workflow: str) -> None:
        self.instance_id = instance_id
        self.workflow = workflow
        self.pending: list[PendingEvent] = []

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

    def rows(self) -> list[PendingEvent]:
        """The events to write with the change (none when the event log is off)."""
        return self.pending if settings.EVENT_LOG else []

    def write_txn(self) -> None:
        """Insert the pending events; call inside the transaction that makes the change."""
        rows = self.rows()
        if rows:
            Event.objects.bulk_create(
                [
                    Event(
                        instance_id=self.instance_id, kind=e.kind, position=e.position,
                        data=e.data, created_at=e.at,
                    )
                    for e in rows
                ]
            )

    def discard(self) -> None:
        """Drop events whose change did not happen."""
        self.pending = []

    def send(self) -> None:
        """The change committed: send the signals of its events and empty the buffer."""
        events, self.pending = self.pending, []
        for event in events:
            if not event.signalled:
                self._signal(event)

    def _signal(self, event: PendingEvent) -> None:
        specific = SIGNALS[event.kind]
        if not specific.receivers and not lifecycle_event.receivers:
            return  # nobody listens: skip building the arguments, twice per step
        kwargs = {
            "event": event.kind,
            "instance_id": self.instance_id,
            "workflow": self.workflow,
            "position": event.position,
            "data": event.data,
        }
        for signal in (specific, lifecycle_event):
            # A receiver's error is the receiver's: it is logged, and the run goes on.
            for receiver, response in signal.send_robust(sender=WorkflowInstance, **kwargs):
                if isinstance(response, Exception):
                    logger.error(
                        "durable_workflows: receiver %r of %s for instance %s raised",
                        receiver, event.kind, self.instance_id, exc_info=response,
                        extra={"instance_id": self.instance_id, "workflow": self.workflow,
                               "position": event.position},
                    )


def record_events(instance_id: str, workflow: str, *events: tuple[str, dict[str, Any]]) -> EventBuffer:
    """Buffer events outside an execution (start, cancel, alarms); returns the buffer to send."""
    buffer = EventBuffer(instance_id, workflow)
    for kind, data in events:
        buffer.add(kind, None, **data)
    return buffer
