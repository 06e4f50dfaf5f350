"""The ticker: a thread in each qcluster worker; the one of its cluster that holds the
cluster's ticker lease fires due alarms and recovers lost work.

django-q2's scheduler looks at `Schedule` rows about every 30 seconds, far too coarse for a
two-second sleep or a retry delay. So each worker process, once django-q2 has spawned it
(`post_spawn`), runs this thread. One of them per cluster (`Conf.PREFIX`, the Q_CLUSTER
name) holds the cluster's ticker lease (`engine.ticker_lease`) and does the periodic work:
every ALARM_POLL_SECONDS it fires due alarms and deadlines (a pass with nothing due is one
query, `alarms_due`), every RECOVERY_POLL_SECONDS it re-dispatches runs whose lease expired
and tasks the broker lost (`lost_tasks`) and starts the scheduled workflows that are due,
and once a minute it deletes the finished instances past their retention. The other workers'
tickers only try to take the lease, one statement every LEASE_SECONDS / 3, and one of them
takes it over within LEASE_SECONDS when its holder dies; a holder that stops (SIGTERM, a
recycle) gives it back, so the next try takes it. An idle cluster costs the database the
same whatever its number of workers. A second thread makes the worker exit when its parent
(the cluster's guard) dies, and ends the whole cluster when its task queue is wedged
(`wedge`).
It only claims rows and enqueues tasks; the runs themselves go through the broker like any
other task, so the workers stay free for them. Claims are safe from any number of processes
at once (SKIP LOCKED on PostgreSQL, compare-and-set elsewhere), so the tickers of several
clusters on one database (each name has its own lease), or two holders for a moment, never
fire an alarm twice. The `Schedule` rows stay as the backstop: the tasks they run restart
this thread if it is gone.

With `DURABLE_WORKFLOWS["WAKEUP"]` "notify" on PostgreSQL (psycopg 3) the holder does not
poll for alarms: it LISTENs (`engine.wakeup`), is told of each alarm written with its fire
time, and sleeps until the earliest it knows of; it looks all the same every
SLOW_POLL_SECONDS, for what a lost notification announced and for deadlines. The other jobs
keep their intervals.

The thread keeps one database connection for its life: polling five times a second with
Django's default `CONN_MAX_AGE=0` would otherwise reconnect five times a second. It closes
the connection after an error, when the connection outlives a positive `CONN_MAX_AGE`, and
when the ticker stops. It never opens a transaction that outlives one short claim.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.util
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import connections
from django_q.conf import Conf

from ..conf import settings
from ..engine import clock, ticker_lease, wakeup
from ..engine.ticker_lease import ClusterLease
from ..exceptions import WorkerShutdown
from . import wedge

logger = logging.getLogger("durable_workflows.ticker")

# How long an exiting worker waits for its ticker to finish the tick in progress.
EXIT_WAIT_SECONDS = 5.0
# A new ticker tries to take its cluster's lease within this many seconds of its start, so
# that a cluster that just started fires its alarms at once.
FIRST_TRY_SECONDS = 1.0

_lock = threading.Lock()
_ticker: Ticker | None = None
_in_worker = False
_exit_hook_installed = False
_terminating = False  # this worker had its SIGTERM (see _on_sigterm)


class Ticker(threading.Thread):
    """While it holds its cluster's ticker lease, calls `fire_alarms()`, `recover()` and the
    other periodic passes on their intervals; otherwise tries to take the lease; until `stop()`."""

    def __init__(self, alarm_interval: float | None = None, recovery_interval: float | None = None,
                 cluster: str | None = None) -> None:
        super().__init__(name="durable-workflows-ticker", daemon=True)
        #: The cluster whose periodic work this ticker does while it holds its lease.
        self.cluster = str(cluster if cluster is not None else Conf.PREFIX)
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

    def run(self) -> None:
        from ..engine import fire_schedules, recover
        from .lost_tasks import find_lost_tasks

        # The alarm pass is the first job (ALARMS): a notification moves its due time.
        jobs: list[tuple[Callable[[], Any], float]] = [
            (_fire_due_alarms, self.alarm_interval),
            (recover, self.recovery_interval),
            (find_lost_tasks, self.recovery_interval),
            # Cron's finest unit is a second; a pass with nothing due is one query.
            (fire_schedules, self.recovery_interval),
            # Retention: a minute is far below any sensible PURGE_AFTER, and each pass deletes
            # what expired since the last in bounded batches.
            (_purge, PURGE_INTERVAL),
        ]
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
    from ..engine import fire_alarms
    from ..engine.scans import alarms_due

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
    from ..engine import purge_expired

    purge_expired(limit=PURGE_PER_PASS)


# How often a worker looks whether its guard is still there (and at its task queue),
# and how long after it found it gone (and sent itself SIGTERM) it is still alive before it
# ends itself at once.
PARENT_POLL_SECONDS = 0.5
ORPHAN_EXIT_SECONDS = 10.0


def _watch(queue: wedge.QueueWatch | None = None) -> None:
    """A thread of its own, not a ticker job: a tick stuck in a database call must not keep
    an orphaned worker alive, nor a wedged cluster running. `queue` watches this worker's
    task queue (None: the guard only)."""
    parent = os.getppid()
    while os.getppid() == parent:
        reason = queue.stuck(wait=PARENT_POLL_SECONDS) if queue is not None else None
        if reason is not None and wedge.end_cluster(parent, reason):
            _exit_worker("durable_workflows: worker %s ended its wedged cluster; it exits", os.getpid())
            return
        time.sleep(PARENT_POLL_SECONDS)
    _orphaned(parent)


def _orphaned(guard: int) -> None:
    """The cluster's guard (django-q2's Sentinel, this worker's parent) is gone: nobody will
    feed this worker tasks or replace it, and a new cluster (under a supervisor) does the
    work now. SIGTERM to itself unwinds a run in progress as a stop does (its lease given
    back, so it is recovered at once) and ends the process, instead of an orphan idling
    until its next database error. Should the process still be there ORPHAN_EXIT_SECONDS
    later (its main thread stuck where no signal reaches it, or its exit waiting for a
    queue nobody reads any more), it ends at once: its lease then expires as a crash's."""
    _exit_worker("durable_workflows: the guard (pid %s) of worker %s is gone; the worker exits",
                 guard, os.getpid())


def _exit_worker(message: str, *args: Any) -> None:
    """SIGTERM to this worker, and its end ORPHAN_EXIT_SECONDS later if it is still there
    (see `_orphaned`). A SIGTERM the worker already had (a cluster ended by another of its
    workers sends one to each) is not sent again: the second would kill it mid-unwind."""
    logger.warning(message, *args)
    if not _terminating:
        os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(ORPHAN_EXIT_SECONDS)
    logger.warning("durable_workflows: worker %s did not exit after SIGTERM; it ends now", os.getpid())
    os._exit(1)


def _retire_old_connections() -> None:
    """Close connections older than a positive CONN_MAX_AGE. With 0 ("close after each
    request", which never comes in this thread) keep them: reconnecting on every tick would
    cost more than the tick. A failed tick closes them in `_call`."""
    for connection in connections.all(initialized_only=True):
        if connection.settings_dict.get("CONN_MAX_AGE") != 0:
            connection.close_if_unusable_or_obsolete()


def start(alarm_interval: float | None = None, recovery_interval: float | None = None) -> Ticker | None:
    """Start this process's ticker, unless WORKER_TICKER is off or it already runs."""
    global _ticker
    if not settings.WORKER_TICKER:
        return None
    with _lock:
        if _ticker is not None and _ticker.is_alive() and not _ticker.stopping:
            return _ticker
        _ticker = Ticker(alarm_interval, recovery_interval)
        _ticker.start()
        return _ticker


def stop(timeout: float | None = None) -> None:
    """Stop this process's ticker and wait up to `timeout` seconds for it to finish."""
    with _lock:
        ticker = _ticker
    if ticker is None:
        return
    ticker.stop()
    if timeout is None or timeout > 0:
        ticker.join(timeout)


def current() -> Ticker | None:
    """The running ticker of this process, if any."""
    ticker = _ticker
    return ticker if ticker is not None and ticker.is_alive() else None


def ensure_running() -> Ticker | None:
    """Restart the ticker in a qcluster worker whose ticker is gone (the backstop's job)."""
    if not _in_worker:
        return None
    return start()


def on_worker_spawn(sender: Any = None, proc_name: str = "", **kwargs: Any) -> None:
    """django-q2 `post_spawn` receiver: runs in each new worker process, in its main thread.

    django-q2 also sends `post_spawn` when it runs a task in the caller's own process (the
    `sync` option), so only a child process of a cluster with `sync` off counts as a worker.
    """
    global _in_worker, _exit_hook_installed
    if Conf.SYNC or multiprocessing.parent_process() is None:
        return
    _in_worker = True
    _install_sigterm()
    threading.Thread(target=_watch, args=(wedge.QueueWatch.of_this_worker(),),
                     name="durable-workflows-parent-watch", daemon=True).start()
    if start() is not None and not _exit_hook_installed:
        _exit_hook_installed = True
        # When the worker exits (recycled, stopped, or told to by SIGTERM), let a tick in
        # progress finish: a claimed alarm whose resume was not yet enqueued would otherwise
        # wait REDISPATCH_AFTER_SECONDS for the lost-alarm scan.
        multiprocessing.util.Finalize(None, stop, args=(EXIT_WAIT_SECONDS,), exitpriority=10)
    if current() is not None:
        logger.info("durable_workflows ticker running in %s (pid %s)", proc_name, os.getpid())


def _install_sigterm() -> None:
    """Make SIGTERM unwind the worker instead of killing it where it stands.

    django-q2 leaves workers with the default SIGTERM action: the process vanishes and the
    run it held waits for its lease to expire. Raising SystemExit instead lets the task
    release its lease on the way out (see `runs.run_instance`), so another worker recovers
    the run at once. A handler the project installed itself is left alone.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None):
        return
    signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum: int, frame: Any) -> None:
    global _terminating
    _terminating = True
    ticker = current()
    if ticker is not None:
        ticker.stop()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise WorkerShutdown(128 + signum)


def connect() -> None:
    from django_q.signals import post_spawn

    post_spawn.connect(on_worker_spawn, dispatch_uid="durable_workflows.ticker")
