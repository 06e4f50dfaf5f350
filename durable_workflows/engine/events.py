"""Lifecycle events: buffered with the write they describe, signalled once it commits.

A step's `step.started` and `step.completed` are not written as rows: its record already
holds when its last attempt started and when it finished, so the event log reads them from
there (eventlog.py) and a new step costs one row, not three. They are buffered like any
event, so that their signals go out with the write, but marked `derived`. An attempt that
fails is the exception: the next attempt overwrites its start on the record, so its
`step.started` is written as a row of its own when it fails.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
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
    #: Read from the step record by the event log, so never written as a row.
    derived: bool = False


_TICK = timedelta(microseconds=1)


class EventBuffer:
    """Events waiting for the transaction that records the change they describe.

    The buffer changes only once that transaction has committed (`send()`): a write that
    fails leaves it as it was.
    """

    def __init__(self, instance_id: str, workflow: str) -> None:
        self.instance_id = instance_id
        self.workflow = workflow
        self.pending: list[PendingEvent] = []
        self._last: datetime | None = None

    def stamp(self, now: datetime | None = None) -> datetime:
        """The time of the next event: the engine's clock (`now` if the caller has just
        read it), but always later than the one before, so that the event log, which
        places the events read from step records by their time among the rows, keeps the
        order in which they happened."""
        if now is None:
            now = clock.now()
        if self._last is not None and now <= self._last:
            now = self._last + _TICK
        self._last = now
        return now

    def add(self, kind: str, position: int | None = None, *, at: datetime | None = None,
            derived: bool = False, signalled: bool = False, **data: Any) -> None:
        """Buffer an event; `derived` when the step record it describes says it (see the
        module's docstring), `at` and `signalled` for one whose moment has passed."""
        if kind not in SIGNALS:
            raise ValueError(f"unknown lifecycle event {kind!r}")
        self.pending.append(PendingEvent(kind, position, data, self.stamp() if at is None else at,
                                         signalled, derived))

    def announce(self) -> None:
        """Signal the buffered events now, though their rows go out with the next write: for
        what is true the moment it happens (a step starting). They are signalled in order,
        so signals keep the log's order."""
        for event in self.pending:
            if not event.signalled:
                self._signal(event)
                event.signalled = True

    def rows(self) -> list[PendingEvent]:
        """The events to write with the change (none when the event log is off)."""
        if not settings.EVENT_LOG:
            return []
        return [event for event in self.pending if not event.derived]

    def write_txn(self) -> None:
        """Insert the pending events; call inside the transaction that makes the change."""
        insert_rows_txn(self.instance_id, self.rows())

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


def insert_rows_txn(instance_id: str, rows: list[PendingEvent]) -> None:
    """Insert an instance's event rows, in one statement, inside the caller's transaction."""
    if rows:
        Event.objects.bulk_create([Event(instance_id=instance_id, kind=e.kind, position=e.position, data=e.data,
                                         created_at=e.at) for e in rows])


def record_events(instance_id: str, workflow: str, *events: tuple[str, dict[str, Any]]) -> EventBuffer:
    """Buffer events outside an execution (start, cancel, alarms); returns the buffer to send."""
    buffer = EventBuffer(instance_id, workflow)
    for kind, data in events:
        buffer.add(kind, None, **data)
    return buffer
