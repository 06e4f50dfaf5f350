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
import signal
import threading
import time
from typing import Any

from django_q.conf import Conf

from .. import ticking
from ..conf import settings
from ..exceptions import WorkerShutdown
from ..ticking import PURGE_INTERVAL, PURGE_PER_PASS
from . import wedge

logger = logging.getLogger("durable_workflows.ticker")

# How long an exiting worker waits for its ticker to finish the tick in progress.
EXIT_WAIT_SECONDS = 5.0
__all__ = ["EXIT_WAIT_SECONDS", "ORPHAN_EXIT_SECONDS", "PARENT_POLL_SECONDS", "PURGE_INTERVAL", "PURGE_PER_PASS",
           "Ticker", "connect", "current", "ensure_running", "on_worker_spawn", "start", "stop"]

_lock = threading.Lock()
_ticker: Ticker | None = None
_in_worker = False
_exit_hook_installed = False
_terminating = False  # this worker had its SIGTERM (see _on_sigterm)


class Ticker(ticking.Ticker):
    """The ticker of a qcluster worker: its cluster is Conf.PREFIX (the Q_CLUSTER name), and
    it also re-sends the tasks the broker lost."""

    def __init__(self, alarm_interval: float | None = None, recovery_interval: float | None = None,
                 cluster: str | None = None) -> None:
        super().__init__(alarm_interval, recovery_interval, cluster if cluster is not None else Conf.PREFIX)

    def jobs(self) -> list[ticking.Job]:
        from .lost_tasks import find_lost_tasks

        jobs = super().jobs()
        jobs.insert(2, (find_lost_tasks, self.recovery_interval))
        return jobs


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
