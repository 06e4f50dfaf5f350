"""The loop of the ticker: while this process holds its cluster's ticker lease
(`engine.ticker_lease`), it does the periodic work (due alarms and deadlines, recovery, the
scheduled workflows, retention) on their intervals, and waits between passes as WAKEUP says
(`engine.wakeup`); otherwise it only tries to take the lease.

Two things run it: the thread in each django-q2 worker (`djangoq.ticker`, which adds the scan
for tasks django-q2 lost), and `manage.py durable_workflows ticker`, for projects whose runs
go through another worker (`TasksDispatcher`). It imports no task queue.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import connections

from .conf import settings
from .engine import clock, ticker_lease, wakeup
from .engine.ticker_lease import ClusterLease

logger = logging.getLogger("durable_workflows.ticker")

# A new ticker tries to take its cluster's lease within this many seconds of its start, so
# that a cluster that just started fires its alarms at once.
FIRST_TRY_SECONDS = 1.0

#: A periodic pass and its interval in seconds.
Job = tuple[Callable[[], Any], float]


class Ticker(threading.Thread):
    """While it holds its cluster's ticker lease, calls `fire_alarms()`, `recover()` and the
    other periodic passes on their intervals; otherwise tries to take the lease; until `stop()`."""

    def __init__(self, alarm_interval: float | None = None, recovery_interval: float | None = None,
                 cluster: str = "default") -> None:
        super().__init__(name="durable-workflows-ticker", daemon=True)
        #: The cluster whose periodic work this ticker does while it holds its lease.
        self.cluster = str(cluster)
        self.alarm_interval = float(alarm_interval if alarm_interval is not None else settings.ALARM_POLL_SECONDS)
        self.recovery_interval = float(
            recovery_interval if recovery_interval is not None else settings.RECOVERY_POLL_SECONDS
        )
        if self.alarm_interval <= 0 or self.recovery_interval <= 0:
            raise ValueError(
                "ALARM_POLL_SECONDS and RECOVERY_POLL_SECONDS must be positive, got "
                f"{self.alarm_interval!r} and {self.recovery_interval!r}"
            )
        self._stopping = threading.Event()
        self.lease = ClusterLease(self.cluster)
        self.ticks = 0
        self.errors = 0

    def stop(self) -> None:
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def jobs(self) -> list[Job]:
        """The periodic passes, the alarm pass first (ALARMS): a notification moves its due
        time. A subclass adds the passes of its task queue."""
        from .engine import fire_schedules, recover

        return [
            (_fire_due_alarms, self.alarm_interval),
            (recover, self.recovery_interval),
            # Cron's finest unit is a second; a pass with nothing due is one query.
            (fire_schedules, self.recovery_interval),
            # Retention: a minute is far below any sensible PURGE_AFTER, and each pass deletes
            # what expired since the last in bounded batches.
            (_purge, PURGE_INTERVAL),
        ]

    def run(self) -> None:
        jobs = self.jobs()
        due: list[float] = []
        waiter: wakeup.Poll | wakeup.Listen | None = None
        # Workers start together: a random phase keeps their first tries from arriving in step.
        lease_due = time.monotonic() + random.uniform(0, min(FIRST_TRY_SECONDS, ticker_lease.try_every()))
        try:
            while not self._stopping.is_set():
                now = time.monotonic()
                if now >= lease_due:
                    self._keep_lease()
                    lease_due = time.monotonic() + self.lease.next_in()
                if not self.lease.held:
                    # Another process does the work, or this one's hold lapsed (its renewal
                    # failed): only the next try, or renewal, is due.
                    due = []
                    if waiter is not None:
                        waiter.close()
                        waiter = None
                elif not due:
                    # This process does the cluster's periodic work from now on, each job at
                    # a random phase of its interval.
                    due = [now + random.uniform(0, interval) for _, interval in jobs]
                    waiter = self._waiter()
                for index, (job, interval) in enumerate(jobs):
                    if due and now >= due[index]:
                        done = self._call(job)
                        delay = interval if done else max(interval, 1.0)
                        if index == ALARMS and isinstance(waiter, wakeup.Listen):
                            delay = self._until_next_alarm() if done else 1.0
                        due[index] = time.monotonic() + delay
                timeout = max(0.0, min([lease_due, *due]) - time.monotonic())
                if waiter is None:
                    self._stopping.wait(timeout)
                    continue
                announced = waiter.wait(timeout)
                if announced is not None and due:
                    in_seconds = max(0.0, announced - clock.now().timestamp())
                    due[ALARMS] = min(due[ALARMS], time.monotonic() + in_seconds)
        finally:
            if waiter is not None:
                waiter.close()
            self._release_lease()
            connections.close_all()
            logger.info("durable_workflows ticker stopped in pid %s", os.getpid())

    @property
    def holds_lease(self) -> bool:
        """Whether this ticker does its cluster's periodic work now."""
        return self.lease.held

    def _keep_lease(self) -> None:
        try:
            self.lease.keep()
        except Exception:
            self.errors += 1
            logger.exception("durable_workflows ticker: the ticker lease of cluster %s could not be kept",
                             self.cluster)
            connections.close_all()

    def _release_lease(self) -> None:
        try:
            self.lease.release()
        except Exception:
            logger.exception("durable_workflows ticker: the ticker lease of cluster %s could not be released; "
                             "it expires on its own", self.cluster)

    def _waiter(self) -> wakeup.Poll | wakeup.Listen:
        try:
            return wakeup.waiter(self._stopping)
        except Exception:
            logger.exception("durable_workflows ticker: cannot tell whether it can LISTEN; it polls")
            connections.close_all()
            return wakeup.Poll(self._stopping)

    def _until_next_alarm(self) -> float:
        """Seconds until the alarm pass has work, as far as the database knows now, and at
        most SLOW_POLL_SECONDS."""
        try:
            due = wakeup.next_due()
        except Exception:
            self.errors += 1
            logger.exception("durable_workflows ticker: the next due alarm could not be read")
            connections.close_all()
            return 1.0
        if due is None:
            return wakeup.SLOW_POLL_SECONDS
        return min(wakeup.SLOW_POLL_SECONDS, max(0.0, (due - clock.now()).total_seconds()))

    def _call(self, job: Callable[[], Any]) -> bool:
        """Run one scan; on error log it, drop the connection and report failure (back off)."""
        try:
            job()
        except Exception:
            self.errors += 1
            logger.exception("durable_workflows ticker: %s failed", job.__name__)
            connections.close_all()
            return False
        self.ticks += 1
        _retire_old_connections()
        return True


def _fire_due_alarms() -> None:
    """Fire due alarms and deadlines; an idle pass is the one query that finds none due."""
    from .engine import fire_alarms
    from .engine.scans import alarms_due

    if alarms_due():
        fire_alarms()


#: The index of the alarm pass among the ticker's jobs.
ALARMS = 0

# Seconds between two retention passes of a worker's ticker.
PURGE_INTERVAL = 60.0
# Instances a pass deletes at most, so that a first pass over years of history does not hold
# the ticker (and the alarms it fires) for long; the next passes go on.
PURGE_PER_PASS = 5000


def _purge() -> None:
    from .engine import purge_expired

    purge_expired(limit=PURGE_PER_PASS)


def _retire_old_connections() -> None:
    """Close connections older than a positive CONN_MAX_AGE. With 0 ("close after each
    request", which never comes in this thread) keep them: reconnecting on every tick would
    cost more than the tick. A failed tick closes them in `_call`."""
    for connection in connections.all(initialized_only=True):
        if connection.settings_dict.get("CONN_MAX_AGE") != 0:
            connection.close_if_unusable_or_obsolete()
