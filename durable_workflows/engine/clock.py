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
That is `wall()`.

`now()` reads the source installed with `use()` (or `using()`), and `wall()` when there is
none: `durable_workflows.testing`'s virtual clock is such a source, so that a test moves the
engine's time without touching `django.utils.timezone.now`, which the rest of the process
(other libraries, Django itself) goes on reading as the real time.

The source is the process's, not a context variable's: the engine reads its clock on
threads that inherit no context. A `wf.parallel` branch and a step's thread are started
with a copy of their caller's context, but the heartbeat thread is started once per process
by whichever run first needed it and serves every later one: on a context variable it would
renew leases by the wall clock while the runs it renews them for judge them by a virtual
clock days ahead, so a recovery scan in the test would take a live run over. Threads a
step's own code starts, and tests that run work in threads of their own, would likewise
fall back to the wall clock. pytest and Django's test runner run one test at a time in a
process, so one source for the whole process is what a test needs. `use()` and `restore()`
are serialized by a lock; `now()` reads the source with one load of a module global, so the
engine's hot path takes no lock.

The offset is measured against `time.time()`, which reads the same wall clock as
`timezone.now()`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

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


class Source(Protocol):
    """A time source `use()` can install: `testing.VirtualClock` is one."""

    def now(self) -> datetime: ...


@dataclass(frozen=True)
class Token:
    """What `use()` returns and `restore()` takes back: the source it replaced."""

    installed: Source | None
    previous: Source | None


# The source now() reads; None: wall(). Replaced only under _installing.
_source: Source | None = None
_installing = threading.Lock()


def now() -> datetime:
    """The current time as the engine judges leases and due times by: the installed
    source's, or else `wall()`."""
    source = _source
    return wall() if source is None else source.now()


def current() -> Source | None:
    """The source installed with `use()`, or None when the engine reads `wall()`."""
    return _source


def use(source: Source | None) -> Token:
    """Make `source` the engine's clock for the whole process (None: the wall clock again)
    until `restore()` is given the token."""
    global _source
    with _installing:
        token = Token(source, _source)
        _source = source
    return token


def restore(token: Token) -> None:
    """Put back the source `token`'s `use()` replaced. Sources are restored in the reverse
    order of their `use()`: one restored out of turn would install a source whose user has
    already ended, so that is a RuntimeError and nothing changes."""
    global _source
    with _installing:
        if _source is not token.installed:
            raise RuntimeError("durable_workflows: a clock source restored out of turn; "
                               "restore the one installed last first")
        _source = token.previous


@contextmanager
def using(source: Source | None) -> Iterator[Source | None]:
    """`use(source)` for the duration of a block."""
    token = use(source)
    try:
        yield source
    finally:
        restore(token)


def wall() -> datetime:
    """This process's wall clock corrected to the database server's: the engine's time when
    no source is installed, and what a source such as the virtual clock builds on."""
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
