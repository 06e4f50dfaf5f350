"""The lease that makes one process of a cluster its ticker.

The periodic work (firing alarms, recovery, lost tasks, schedules, retention) needs doing
once per cluster, not once per worker process: every process that polls costs the database
its queries, and an idle cluster of 8 workers would otherwise cost 8 times one of them. So
a `TickerLease` row, one per cluster name, says which process does it. Like a run's lease
(`lease.Lease`) it is taken with a compare-and-set, holds until an expiry judged by the
engine's clock (`clock.now()`, the database server's time on PostgreSQL), is renewed by its
holder well before then, and is given back at once when its holder stops cleanly; a holder
that dies (SIGKILL) gives nothing back, and its lease runs out.

The timings follow LEASE_SECONDS, so that another process of the cluster takes over within
LEASE_SECONDS of the holder's death: the row expires TERM_FACTOR of it after a renewal, the
holder renews RENEW_FACTOR of it apart, and the other processes try to take it TRY_FACTOR
of it apart (one statement each, which finds the row held and changes nothing). A process
whose renewal fails (the database down, or the row taken over) stops doing the work at once;
one that cannot renew at all stops once its term has run out on its own monotonic clock.

Each take writes a new holder token (host, pid and a random part), which the holder's
renewals and release name: a holder that lost the lease can never renew or release the new
holder's. Two processes holding it at once for a moment (a renewal late past the expiry)
cost only queries: every claim of the periodic work is safe from concurrent processes.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from datetime import datetime, timedelta

from .. import database
from ..conf import settings
from ..models import TickerLease
from . import clock

logger = logging.getLogger("durable_workflows.ticker")

# Fractions of LEASE_SECONDS: the row's term after a take or a renewal, how often its holder
# renews it, how often the other processes try to take it. TERM + TRY = 1: a holder that
# died right after a renewal is replaced at the latest one try after its term ran out.
TERM_FACTOR = 2 / 3
RENEW_FACTOR = 1 / 6
TRY_FACTOR = 1 / 3


def term() -> float:
    return float(settings.LEASE_SECONDS) * TERM_FACTOR


def renew_every() -> float:
    return float(settings.LEASE_SECONDS) * RENEW_FACTOR


def try_every() -> float:
    return float(settings.LEASE_SECONDS) * TRY_FACTOR


def _token() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"[-255:]


class ClusterLease:
    """This process's claim on its cluster's ticker: `keep()` takes or renews it, `held`
    says whether the periodic work is this process's now, `release()` gives it back."""

    def __init__(self, cluster: str) -> None:
        self.cluster = cluster
        #: The token of this process's current hold; None while another holds it.
        self.holder: str | None = None
        self._renewed_at = 0.0

    @property
    def held(self) -> bool:
        return self.holder is not None and time.monotonic() - self._renewed_at < term()

    def next_in(self) -> float:
        """Seconds until the next `keep()` is due."""
        return renew_every() if self.held else try_every()

    def keep(self) -> bool:
        """Renew the lease if this process holds it, else try to take it. Returns `held`.
        A database error propagates; the hold then lapses at the end of its term."""
        if self.holder is not None:
            self._renew()
        if self.holder is None:
            self._take()
        return self.held

    def _take(self) -> None:
        now = clock.now()
        token = _token()
        if _take_row(self.cluster, token, now, now + timedelta(seconds=term())):
            self.holder, self._renewed_at = token, time.monotonic()
            logger.info("durable_workflows: pid %s took the ticker lease of cluster %s", os.getpid(), self.cluster)

    def _renew(self) -> None:
        began = time.monotonic()
        now = clock.now()
        renewed = TickerLease.objects.filter(name=self.cluster, holder=self.holder).update(
            expires_at=now + timedelta(seconds=term()))
        if renewed:
            self._renewed_at = began
            return
        self.holder = None
        logger.warning("durable_workflows: pid %s lost the ticker lease of cluster %s to another process",
                       os.getpid(), self.cluster)

    def release(self) -> None:
        """Give the lease back now (a clean stop), so that another process takes it at its
        next try instead of after the term."""
        holder, self.holder = self.holder, None
        if holder is None:
            return
        TickerLease.objects.filter(name=self.cluster, holder=holder).update(holder="", expires_at=clock.now())
        logger.info("durable_workflows: pid %s released the ticker lease of cluster %s", os.getpid(), self.cluster)


def _take_row(cluster: str, token: str, now: datetime, until: datetime) -> bool:
    """One statement: insert the cluster's row held by `token`, or take it over if it was
    released or has expired. Whether it did."""
    db = database.connection()
    ops = db.ops
    table = ops.quote_name(TickerLease._meta.db_table)
    name, holder, taken, expires = (ops.quote_name(c) for c in ("name", "holder", "taken_at", "expires_at"))
    sql = (
        f"INSERT INTO {table} ({name}, {holder}, {taken}, {expires}) VALUES (%s, %s, %s, %s) "
        f"ON CONFLICT ({name}) DO UPDATE SET {holder} = excluded.{holder}, {taken} = excluded.{taken}, "
        f"{expires} = excluded.{expires} WHERE {table}.{expires} <= %s OR {table}.{holder} = ''"
    )
    stamp = ops.adapt_datetimefield_value
    with db.cursor() as cursor:
        cursor.execute(sql, [cluster, token, stamp(now), stamp(until), stamp(now)])
        return cursor.rowcount == 1
