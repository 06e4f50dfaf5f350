"""A wedged cluster ends itself, so that its supervisor starts a new one.

The workers of one django-q2 cluster take their tasks from one `multiprocessing.Queue`: a
pipe, which the cluster's pusher fills from the broker, guarded by locks that are POSIX
semaphores shared by every process of the cluster. An idle worker waits in `get()` *holding
the read lock* until a task arrives. Should it be SIGKILLed there (the OOM killer picks an
idle worker as readily as a busy one), the lock is never released: every other worker, and
each one the guard (django-q2's Sentinel) starts in place of the dead one, waits for it
forever. The cluster takes no task again, yet every process of it is alive, so nothing
restarts it (django-q2 issue 23, django-q issue 394). The same happens when the pusher dies
holding the write lock, or any process dies holding the lock of the queue's size counter.

Every worker watches the queue from the thread that watches its guard (`ticker._watch`),
with no database query. About once a second it looks whether tasks wait in the pipe (a
`poll`) and at the locks. A lock is *stuck* when, for WEDGE_SECONDS on end,

- tasks wait in the pipe and the read lock never comes free: the watch tries to take it
  (giving it back at once), waiting up to half a second each time. A healthy reader reads a
  task within microseconds of its arrival and lets the lock go; workers all busy with long
  steps leave tasks waiting with the lock free; an idle worker holds it while the pipe is
  empty, which is no wedge;
- the write lock is taken while the pipe is empty: a writer that does not write. A healthy
  writer holds it only while it writes, and when it waits for room the pipe is full;
- the size counter's lock is taken at all: it is held for one increment.

A worker that finds a lock stuck ends the whole cluster (`end_cluster`): the main process
first, with SIGKILL, so that the supervisor sees a failure (exit status 137, systemd's
`status=9/KILL`) whichever way the rest goes and `Restart=on-failure` restarts it too; then the
guard, so that it starts nothing more; then SIGTERM to the guard's other children (the pusher,
so that no task is taken from the broker into the dead queue any more; the monitor; the other
workers, which give back the lease of a run in progress as they unwind), SIGKILL to those left
SIBLINGS_EXIT_SECONDS later, and SIGTERM to itself. Workers that find the wedge at the same
moment do the same; every step of it can be done twice. The tasks the wedged cluster took
with it run again after LEASE_SECONDS, as any dead cluster's (`lost_tasks`).

The main process is the guard's parent if that is the process where Django was set up (where
this module was imported before the guard was forked), never a process that adopted the guard.
As PID 1 of a container it ignores a SIGKILL from inside: it is left alone, and it exits, with
status 0, once its guard is gone.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any, NamedTuple

logger = logging.getLogger("durable_workflows.ticker")

# How long a lock of the task queue must look stuck before the cluster is ended.
WEDGE_SECONDS = 10.0
# How long the other processes of an ended cluster get to exit after their SIGTERM.
SIBLINGS_EXIT_SECONDS = 5.0

# The process that imported this module, at Django's set-up: in a qcluster worker, forked
# from the guard, which the main process forked, this is the main process's pid.
SETUP_PID = os.getpid()

STUCK = {
    "read": "a dead worker holds its read lock while tasks wait",
    "write": "a dead pusher holds its write lock",
    "size": "a dead process holds the lock of its size counter",
}


def _taken(lock: Any) -> bool:
    """Whether a multiprocessing lock is held by anyone (its semaphore is at zero)."""
    try:
        return bool(lock._semlock._is_zero())
    except Exception:  # not a multiprocessing lock, or one this platform cannot read
        return False


def _comes_free(lock: Any, wait: float) -> bool:
    """Whether `lock` can be taken within `wait` seconds; it is given back at once."""
    try:
        if not lock.acquire(True, wait):
            return False
    except Exception:  # not a lock this platform can wait for: take it for a healthy one
        return True
    lock.release()
    return True


class QueueWatch:
    """Looks at the locks of one task queue; `stuck()` says when one has been stuck for
    WEDGE_SECONDS (see the module docstring)."""

    def __init__(self, queue: Any, wedge_seconds: float = WEDGE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.queue = queue
        self.wedge_seconds = float(wedge_seconds)
        self.clock = clock
        # django-q2's shared counter of qsize(): a multiprocessing.Value, with its lock.
        count: Any = getattr(getattr(queue, "size", None), "count", None)
        self._size_lock = count.get_lock() if hasattr(count, "get_lock") else None
        self._since: dict[str, float] = {}

    @classmethod
    def of_this_worker(cls) -> QueueWatch | None:
        """The watch of this django-q2 worker's task queue; None outside a worker, or when
        django-q2 hands its worker the queue in a way this version does not know."""
        process = multiprocessing.current_process()
        target = getattr(process, "_target", None)
        args = getattr(process, "_args", ())
        # The guard starts each worker as django_q.worker.worker(task_queue, result_queue,
        # timer, timeout); the process object keeps its target and arguments.
        if getattr(target, "__module__", None) != "django_q.worker" or not args:
            return None
        queue = args[0]
        if not all(hasattr(queue, name) for name in ("_reader", "_rlock", "_wlock")):
            return None
        return cls(queue)

    def stuck(self, wait: float = 0.0) -> str | None:
        """Look at the queue once, waiting up to `wait` seconds for its read lock when
        tasks wait. Returns what is stuck once a lock has looked stuck at every look for
        `wedge_seconds`, else None."""
        try:
            waiting = bool(self.queue._reader.poll(0))
        except (OSError, ValueError):  # the queue is closed: this worker is stopping
            self._since.clear()
            return None
        looks_stuck = {
            "read": waiting and not _comes_free(self.queue._rlock, wait),
            "write": not waiting and self.queue._wlock is not None and _taken(self.queue._wlock),
            "size": self._size_lock is not None and _taken(self._size_lock),
        }
        now = self.clock()
        for name, stuck in looks_stuck.items():
            if not stuck:
                self._since.pop(name, None)
            elif now - self._since.setdefault(name, now) >= self.wedge_seconds:
                return STUCK[name]
        return None


def end_cluster(guard: int, reason: str) -> bool:
    """End every process of this worker's cluster but this one (see the module docstring);
    the caller then ends this one. `guard` is this worker's parent when it started: nothing
    is done unless it still is (a worker whose guard is gone is an orphan, whose
    processes are not for it to find). Returns whether it did it."""
    me = os.getpid()
    if os.getppid() != guard:
        return False
    table = process_table()
    siblings = {pid: proc for pid, proc in table.items() if proc.parent == guard and pid != me}
    # The main process is the guard's parent, if that is where Django was set up (so never
    # a supervisor or init that adopted the guard after the main process died).
    main: int | None = table[guard].parent if guard in table else None
    if main != SETUP_PID or main in (me, guard, 0, 1):
        main = None
    logger.critical(
        "durable_workflows: the task queue of this cluster is wedged (%s, for %.0f s): no "
        "worker of it can take a task again (django-q2 issue 23). Worker %s ends the cluster "
        "(main process %s, guard %s, %d other processes) so that its supervisor starts a new "
        "one; the tasks it held run again after LEASE_SECONDS.",
        reason, WEDGE_SECONDS, me, main if main is not None else "unknown", guard, len(siblings),
    )
    if main is not None:
        _kill(main, signal.SIGKILL)
    _kill(guard, signal.SIGKILL)
    for pid in siblings:
        _kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + SIBLINGS_EXIT_SECONDS
    left = siblings
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = _still_there(left)
    for pid in _still_there(left):
        _kill(pid, signal.SIGKILL)
    return True


class Proc(NamedTuple):
    parent: int
    state: str  # ps's letter: R running, S sleeping, Z zombie...
    started: str  # when it started, in a unit of the platform's: with the pid, who it is


def _still_there(procs: dict[int, Proc]) -> dict[int, Proc]:
    """Those of `procs` alive still: the same pid, started at the same time (not a new
    process that was given the number of one that ended), and no zombie."""
    table = process_table()
    return {pid: proc for pid, proc in procs.items()
            if pid in table and table[pid].started == proc.started and table[pid].state not in "ZX"}


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def process_table() -> dict[int, Proc]:
    """Every process this one can see, by pid. From /proc on Linux, else from `ps`; empty
    when neither can be read."""
    table = {}
    if os.path.isdir("/proc/self"):
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as file:
                    text = file.read().decode(errors="replace")
            except OSError:
                continue
            # After "pid (command)": state, ppid, ... and the 20th, starttime.
            fields = text[text.rfind(")") + 2:].split()
            if len(fields) >= 20:
                table[int(name)] = Proc(int(fields[1]), fields[0], fields[19])
        return table
    try:
        out = subprocess.run(["ps", "-A", "-o", "pid=", "-o", "ppid=", "-o", "stat=", "-o", "lstart="],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4 and parts[0].isdigit() and parts[1].isdigit():
            table[int(parts[0])] = Proc(int(parts[1]), parts[2][0], parts[3].strip())
    return table
