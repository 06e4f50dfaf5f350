"""How the ticker waits between its passes: for a notification on PostgreSQL, for the time
to run out elsewhere (`DURABLE_WORKFLOWS["WAKEUP"]`).

On PostgreSQL a trigger on the alarm table (migration 0017) sends
`pg_notify(CHANNEL, <fire time, epoch seconds>)` for every alarm written that has not fired:
a sleep or a retry delay that pauses a run, an event sent to an instance that waits for it, a
child that finishes while its parent waits. Whichever code wrote the alarm, in whichever
process, the ticker hears of it when that transaction commits, and of when it is due; it
needs no poll to find work, only a clock for the next known due time.

The listening connection is the ticker's own, made from the engine's database settings but
kept out of Django's connection handler: a LISTEN lasts as long as its session, and the
ticker closes its Django connections after an error. When that connection breaks (a
restart, `pg_terminate_backend`, a network cut), `wait()` says "look now" and connects again
on its next call; what was sent while nobody listened is found by that look, which is why a
slow poll stays behind the notifications.

Polling (`"poll"`) is for what cannot LISTEN: SQLite, psycopg2, PgBouncer in transaction
mode (a LISTEN there is lost when the server connection goes back to the pool).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any

from django.db import connections
from django.db.models import Min

from .. import database
from ..conf import settings
from ..models import Alarm, WorkflowInstance
from ..states import State

logger = logging.getLogger("durable_workflows.ticker")

#: The channel the alarm table's trigger notifies.
CHANNEL = "durable_workflows_alarm"

# The longest a wait blocks on the socket before it looks whether the ticker was stopped.
SLICE_SECONDS = 1.0
#: How often a listening ticker looks for due alarms all the same: what a notification lost
#: with a dropped connection announced, and the deadlines of Paused and Queued instances,
#: which no trigger announces, are found within this.
SLOW_POLL_SECONDS = 5.0


class Poll:
    """Waits out the time it is given: the ticker polls on its intervals."""

    def __init__(self, stopping: threading.Event) -> None:
        self._stopping = stopping

    def wait(self, timeout: float) -> float | None:
        """Block for up to `timeout` seconds (less once stopped). Returns the earliest
        fire time announced meanwhile (epoch seconds), which polling never knows: None."""
        self._stopping.wait(max(0.0, timeout))
        return None

    def close(self) -> None:
        pass


#: What `Listen.wait` returns when it cannot say what was sent: a time long past, so
#: that the caller looks at once.
LOOK_NOW = 0.0


class Listen:
    """LISTENs on CHANNEL over a connection of its own (PostgreSQL with psycopg 3)."""

    def __init__(self, stopping: threading.Event) -> None:
        self._stopping = stopping
        self._wrapper: Any = None
        self._failed = False

    @property
    def backend_pid(self) -> int | None:
        """The server process of the listening session, while there is one."""
        return None if self._wrapper is None else self._wrapper.connection.info.backend_pid

    def wait(self, timeout: float) -> float | None:
        """Block until a notification arrives or `timeout` seconds pass. Returns the
        earliest fire time the notifications announced (epoch seconds), None when none
        came, and LOOK_NOW after the connection was (re)made or lost."""
        if self._wrapper is None:
            if not self._connect():
                self._stopping.wait(max(0.0, min(timeout, SLICE_SECONDS)))
            return LOOK_NOW
        earliest: float | None = None
        remaining = max(0.0, timeout)
        try:
            while not self._stopping.is_set():
                piece = min(remaining, SLICE_SECONDS)
                for note in self._wrapper.connection.notifies(timeout=piece, stop_after=1):
                    earliest = _earlier(earliest, note.payload)
                if earliest is not None:
                    # Take what else arrived with it, without waiting.
                    for note in self._wrapper.connection.notifies(timeout=0.0):
                        earliest = _earlier(earliest, note.payload)
                    return earliest
                remaining -= piece
                if remaining <= 0:
                    return None
            return None
        except Exception:
            logger.warning("durable_workflows ticker: the LISTEN connection failed; connecting again",
                           exc_info=True)
            self.close()
            return LOOK_NOW

    def _connect(self) -> bool:
        try:
            wrapper = connections.create_connection(database.alias())
            wrapper.connect()
            wrapper.connection.autocommit = True
            wrapper.connection.execute(f"LISTEN {CHANNEL}")
        except Exception:
            if not self._failed:
                logger.warning("durable_workflows ticker: cannot LISTEN on %s; polling until it can",
                               CHANNEL, exc_info=True)
            self._failed = True
            return False
        if self._failed:
            logger.info("durable_workflows ticker: listening on %s again", CHANNEL)
        self._failed = False
        self._wrapper = wrapper
        return True

    def close(self) -> None:
        wrapper, self._wrapper = self._wrapper, None
        if wrapper is not None:
            try:
                wrapper.close()
            except Exception:
                logger.debug("durable_workflows ticker: closing the LISTEN connection failed", exc_info=True)


def _earlier(earliest: float | None, payload: str) -> float:
    try:
        due = float(payload)
    except ValueError:
        due = LOOK_NOW  # a notification of ours without a time: look now
    return due if earliest is None else min(earliest, due)


def next_due() -> datetime | None:
    """The earliest time the alarm pass has work: an alarm not fired yet, or the deadline
    of a Paused or Queued instance. Two reads of an index each."""
    alarm = Alarm.objects.filter(fired_at__isnull=True).aggregate(at=Min("fire_at"))["at"]
    deadline = WorkflowInstance.objects.filter(
        deadline_at__isnull=False, state__in=[State.PAUSED, State.QUEUED]).aggregate(at=Min("deadline_at"))["at"]
    found = [at for at in (alarm, deadline) if at is not None]
    return min(found) if found else None


def listens() -> bool:
    """Whether the ticker can wait for notifications: WAKEUP "notify" on PostgreSQL with
    psycopg 3."""
    from .store import _psycopg3

    return (settings.WAKEUP == "notify" and database.connection().vendor == "postgresql"
            and _psycopg3())


def waiter(stopping: threading.Event) -> Poll | Listen:
    return Listen(stopping) if listens() else Poll(stopping)
