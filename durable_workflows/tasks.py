"""django-q2 glue: the task functions workers run, and the dispatcher that enqueues them."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from django.db import connections
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.exceptions import TimeoutException
from django_q.tasks import async_task

from .conf import settings
from .dispatch import get_dispatcher
from .engine import clock, execute, executor_name, fire_alarms, recover, stops
from .engine.ports import BaseDispatcher, TaskRow
from .exceptions import DispatchError, StoreFault
from .models import WorkflowInstance
from .states import State

logger = logging.getLogger("durable_workflows")

# django-q2 stops a task at its timeout by raising this (a SystemExit) into it, in a step
# or not: the worker stopping, never the step's failure.
stops.add_stop(TimeoutException)

RUN_INSTANCE = "durable_workflows.tasks.run_instance"
# django_q.models.Task.name is 100 characters long.
TASK_NAME_LENGTH = 100


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
    from .engine import fire_schedules

    _revive_ticker()
    fired = len(fire_alarms())
    try:
        fire_schedules()
    except Exception:
        logger.exception("durable_workflows: the scheduled workflows could not be started; the next pass tries again")
    return fired


def recover_task() -> int:
    """Backstop run by a django-q2 Schedule: recover stale runs and lost tasks."""
    from .lost_tasks import find_lost_tasks

    _revive_ticker()
    return len(recover()) + find_lost_tasks()


def _revive_ticker() -> None:
    from . import ticker

    ticker.ensure_running()


class DjangoQDispatcher(BaseDispatcher):
    """Enqueues `run_instance` with django-q2's `async_task`."""

    @property
    def synchronous(self) -> bool:
        return bool(Conf.SYNC)

    @property
    def transactional(self) -> bool:
        """The ORM broker on the default database writes its task row in the caller's
        transaction: a start and its task commit together or not at all."""
        options = settings.Q_OPTIONS or {}
        if options.get("sync", Conf.SYNC) or "broker" in options:
            return False
        return bool(Conf.ORM) and Conf.ORM == settings.DATABASE and not Conf.BROKER_CLASS

    def task_row(self, instance_id: str, mode: str, epoch: int) -> TaskRow | None:
        """The ORM broker's queue row for this run (its table and values), for a caller that
        inserts it itself in the statement that starts the instance; None for another broker.
        The row is what `async_task` would enqueue: the same signed package, sent through
        the same `pre_enqueue` signal."""
        if not self.transactional:
            return None
        from django_q.humanhash import uuid
        from django_q.models import OrmQ
        from django_q.signals import pre_enqueue
        from django_q.signing import SignedPackage

        options = self._options(instance_id, mode, epoch)
        tag = uuid()
        task: dict[str, Any] = {"id": tag[1], "name": options.pop("task_name"), "func": RUN_INSTANCE,
                                "args": (instance_id, mode, epoch)}
        for key in ("hook", "group", "save", "cached", "ack_failure", "iter_count", "iter_cached", "chain",
                    "cluster", "timeout"):
            if key in options:
                task[key] = options[key]
        if "cached" not in task and Conf.CACHED:
            task["cached"] = Conf.CACHED
        if "ack_failure" not in task and Conf.ACK_FAILURES:
            task["ack_failure"] = Conf.ACK_FAILURES
        task["kwargs"] = {}
        task["started"] = timezone.now()
        pre_enqueue.send(sender="django_q", task=task)
        broker = _broker(options.get("cluster"))
        return OrmQ._meta.db_table, {"key": broker.list_key or Conf.CLUSTER_NAME,
                                     "payload": SignedPackage.dumps(task), "lock": timezone.now()}

    def _options(self, instance_id: str, mode: str, epoch: int) -> dict[str, Any]:
        options: dict[str, Any] = dict(settings.Q_OPTIONS or {})
        options.setdefault("task_name", f"dw:{mode}:{epoch}:{instance_id}"[:TASK_NAME_LENGTH])
        options.setdefault("save", False)
        return options

    def waiting(self) -> int:
        """Tasks in the broker not yet taken by a worker (recover() waits longer to send a
        task again while there is a backlog)."""
        return int(queue_broker().queue_size())

    def dispatch(self, instance_id: str, mode: str, epoch: int) -> None:
        # The instance row records how the run went; a django-q2 success row per run would
        # only cost the monitor writes and a prune. Failures are stored whatever this says.
        options = self._options(instance_id, mode, epoch)
        if "broker" not in options and not options.get("sync", Conf.SYNC):
            options["broker"] = _broker(options.get("cluster"))
        if options.get("sync", Conf.SYNC):
            async_task(RUN_INSTANCE, instance_id, mode, epoch, q_options=options)
            return
        try:
            async_task(RUN_INSTANCE, instance_id, mode, epoch, q_options=options)
        except Exception as error:
            raise DispatchError(
                f"django-q2's {_describe(options.get('broker'))} did not take the task of instance "
                f"{instance_id!r} ({type(error).__name__}: {error}); the instance stays Queued and "
                f"recover() sends it again once the broker is back"
            ) from error


def _describe(broker: Any) -> str:
    """The broker, named for an error message: its kind and where it is."""
    if Conf.REDIS and not Conf.ORM:
        where = Conf.REDIS if isinstance(Conf.REDIS, str) else {
            k: v for k, v in dict(Conf.REDIS).items() if k in ("host", "port", "db")}
        return f"Redis broker ({where})"
    if Conf.ORM:
        return f"ORM broker (database {Conf.ORM!r})"
    return f"broker {type(broker).__name__}"


_brokers: dict[tuple[Any, ...], Any] = {}
_brokers_lock = threading.Lock()


def _broker(cluster: str | None) -> Any:
    """One django-q2 broker per queue and process, reused for every dispatch.

    `async_task` otherwise builds a broker per call, which for Redis means a new connection
    pool and a new TCP connection for every task (about 8 ms here, more than the rest of
    `start()`). Redis clients are thread-safe and reset their pool in a forked child.
    """
    key = (os.getpid(), cluster, Conf.CLUSTER_NAME, Conf.ORM, repr(Conf.REDIS), Conf.BROKER_CLASS)
    broker = _brokers.get(key)
    if broker is None:
        with _brokers_lock:
            broker = _brokers.get(key)
            if broker is None:
                broker = _brokers[key] = get_broker(cluster)
    return broker


def queue_broker() -> Any:
    """The broker of the queue our runs go to (Q_OPTIONS may name another cluster's)."""
    return _broker((settings.Q_OPTIONS or {}).get("cluster"))
