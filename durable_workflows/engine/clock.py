"""The engine's one clock: every lease, due time and timestamp it writes or compares is read
here.

Leases and due times are compared across processes, often across machines: a lease written
by one worker is judged by another's recovery scan, an alarm set by one run is fired by
another worker's ticker. If each judged by its own wall clock, a worker whose clock runs
20 s ahead would take live leases over (and run their steps again), and fire alarms early.
So on PostgreSQL the engine's time is the database server's: each process measures how far
its own wall clock is from the server's (one `SELECT clock_timestamp()`, about once a
minute and again whenever its wall clock jumps) and adds that offset to `timezone.now()`.
Nothing is measured per step, and the measurement goes to the raw connection, outside the
query log. SQLite runs on one machine, whose clock every process shares: its offset is zero.

`timezone.now()` stays the base, so `durable_workflows.testing`'s virtual clock (which
replaces it) moves this clock too. The offset is measured against `time.time()`, which reads
the same wall clock as `timezone.now()` but is not moved by the virtual clock.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils import timezone

from .. import database

logger = logging.getLogger("durable_workflows")

# How often the offset is measured again: clocks drift by parts per million, far less than
# any lease's slack in a minute.
REFRESH_SECONDS = 60.0
# How soon a measurement that could not be made (no database yet) is tried again.
RETRY_SECONDS = 1.0
# An offset below this is taken as none: a measurement is off by up to half a round trip,
# and clocks kept by NTP agree closer than any lease needs.
TOLERANCE_SECONDS = 0.5
# How far the wall clock may move against the monotonic clock between two reads before the
# offset is measured again at once (a clock stepped by NTP or by hand).
JUMP_SECONDS = 0.5

_offset = timedelta(0)
# When (time.monotonic()) the offset is due to be measured again; 0: never measured.
_due = 0.0
# time.time() - time.monotonic() when it was last measured: a change is a jump of the wall clock.
_base = 0.0
# Whether an offset was ever measured in this process.
_measured = False


def now() -> datetime:
    """The current time as the engine judges leases and due times by."""
    mono = time.monotonic()
    if mono >= _due or abs(time.time() - mono - _base) > JUMP_SECONDS:
        _refresh(mono)
    return timezone.now() + _offset if _offset else timezone.now()


def _refresh(mono: float) -> None:
    global _offset, _due, _base, _measured
    jumped = abs(time.time() - mono - _base) > JUMP_SECONDS
    db = database.connection()
    if db.vendor != "postgresql":
        _offset, _due, _base, _measured = timedelta(0), mono + REFRESH_SECONDS, time.time() - mono, True
        return
    if db.connection is None and _measured and not jumped:
        # A thread without a connection (between two of the heartbeat's beats, a branch's
        # thread) keeps the offset it has, rather than opening a connection to refresh it:
        # the next thread that has one refreshes it.
        return
    try:
        measured = _server_offset(db)
    except Exception as error:  # the engine's own next query meets the same fault and reports it
        logger.debug("durable_workflows: could not read the database server's clock: %s", error)
        _due, _base = mono + RETRY_SECONDS, time.time() - mono
        return
    previous = _offset
    _offset = timedelta(seconds=measured) if abs(measured) >= TOLERANCE_SECONDS else timedelta(0)
    _due, _base, _measured = mono + REFRESH_SECONDS, time.time() - mono, True
    if abs((_offset - previous).total_seconds()) < TOLERANCE_SECONDS:
        return
    if _offset:
        logger.warning("durable_workflows: this machine's clock is %.3f s %s the database server's; "
                       "leases and due times follow the server's", abs(measured),
                       "behind" if measured > 0 else "ahead of")
    else:
        logger.info("durable_workflows: this machine's clock agrees with the database server's again")


def _server_offset(db: Any) -> float:
    """The server's clock minus this process's wall clock, in seconds, read on the raw
    connection: outside Django's query log and execute wrappers, so the measurement is
    invisible to query counts and to whatever instruments the engine's statements."""
    db.ensure_connection()
    with db.connection.cursor() as cursor:
        before = time.time()
        cursor.execute("SELECT extract(epoch FROM clock_timestamp())")
        server = float(cursor.fetchone()[0])
        after = time.time()
    return server - (before + after) / 2


@receiver(setting_changed)
def _reset(setting: str, **kwargs: Any) -> None:
    """Another database (the DATABASE setting, or the databases themselves) is another server."""
    global _due, _measured
    if setting in ("DURABLE_WORKFLOWS", "DATABASES"):
        _due, _measured = 0.0, False
