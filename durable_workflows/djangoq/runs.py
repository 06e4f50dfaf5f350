"""The task functions django-q2 workers run: a run of an instance, and the backstop passes
of the Schedule rows (`durable_workflows.scheduling`).

Tasks name them by their first path, `durable_workflows.tasks.*` (see
`dispatcher.RUN_INSTANCE`), which re-exports them from here.
"""

from __future__ import annotations

import logging
import threading
import time

from django.db import connections
from django_q.conf import Conf
from django_q.exceptions import TimeoutException

from ..dispatch import get_dispatcher
from ..engine import clock, execute, executor_name, fire_alarms, fire_schedules, recover, stops
from ..exceptions import StoreFault
from ..models import WorkflowInstance
from ..states import State
from . import ticker
from .lost_tasks import find_lost_tasks

logger = logging.getLogger("durable_workflows")

# django-q2 stops a task at its timeout by raising this (a SystemExit) into it, in a step
# or not: the worker stopping, never the step's failure.
stops.add_stop(TimeoutException)


def run_instance(instance_id: str, mode: str = "fresh", epoch: int | None = None) -> str | None:
    """The task a worker runs. A duplicate or stale task (its epoch moved on) does nothing.

    A worker that is told to go away mid-run (SIGTERM, or django-q2's own task timeout,
    both raised here as SystemExit) gives its lease back on the way out, so that the run is
    recovered at the next recovery scan instead of after the lease expires.
    """
    owner = executor_name()
    try:
        state = execute(instance_id, mode, epoch, claim_faults=not Conf.SYNC)
    except StoreFault as fault:
        _send_again_later(instance_id, mode, epoch, fault)
        return None
    except (SystemExit, KeyboardInterrupt):
        release_leases(owner)
        raise
    return None if state is None else str(state)


# How long a worker whose claim the database failed waits before it sends the task again.
CLAIM_RETRY_PAUSE = 1.0


def _send_again_later(instance_id: str, mode: str, epoch: int | None, fault: StoreFault) -> None:
    """The database failed the claim (it is down, or restarting): the broker counts the task
    as done, and the instance would wait for recovery to notice. Give the database a moment
    (a worker that spun through its queue would drop every task of the outage), then send
    the same task again: a Redis broker takes it while the database is still down. When
    even that fails, the task fails: the ORM broker keeps a failed task's row, and
    `lost_tasks` hands it out again once LEASE_SECONDS have passed."""
    dispatcher = get_dispatcher()
    if epoch is None or dispatcher.synchronous:
        raise fault  # a task of an older release, or nothing to send it through
    time.sleep(CLAIM_RETRY_PAUSE)
    try:
        dispatcher.dispatch(instance_id, mode, epoch)
    except Exception as error:
        raise fault from error


def release_leases(owner: str, wait: float = 5.0) -> int:
    """Mark the runs `owner` holds as abandoned now. Returns how many it released.

    Runs in a thread of its own, with a connection of its own: the caller's connection may
    be mid-statement when a signal unwinds it. If the row is locked (the caller's transaction
    still holds it) the release gives up after `wait` seconds; the lease then expires as usual.
    """
    released: list[int] = []

    def target() -> None:
        try:
            released.append(
                WorkflowInstance.objects.filter(state=State.RUNNING, lease_owner=owner).update(
                    lease_expires_at=clock.now()
                )
            )
        except Exception:
            logger.exception("durable_workflows: could not release the leases of %s", owner)
        finally:
            connections.close_all()

    thread = threading.Thread(target=target, name="durable-workflows-release", daemon=True)
    thread.start()
    thread.join(wait)
    return released[0] if released else 0


def fire_alarms_task() -> int:
    """Backstop run by a django-q2 Schedule: fire due alarms (how many it returns), start
    the scheduled workflows that are due, and revive this worker's ticker."""
    ticker.ensure_running()
    fired = len(fire_alarms())
    try:
        fire_schedules()
    except Exception:
        logger.exception("durable_workflows: the scheduled workflows could not be started; the next pass tries again")
    return fired


def recover_task() -> int:
    """Backstop run by a django-q2 Schedule: recover stale runs and lost tasks."""
    ticker.ensure_running()
    return len(recover()) + find_lost_tasks()
