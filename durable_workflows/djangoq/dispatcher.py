"""`DjangoQDispatcher`: runs go to django-q2's broker, as tasks of `runs.run_instance`."""

from __future__ import annotations

import os
import threading
from typing import Any

from django.utils import timezone
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.tasks import async_task

from ..conf import settings
from ..engine.ports import BaseDispatcher, TaskRow
from ..exceptions import DispatchError

# The function a run's task names, by the path of the first release: a worker of that
# release, still draining the broker in a rolling deploy, can run the tasks of this one.
RUN_INSTANCE = "durable_workflows.tasks.run_instance"
# Every name a run's task may carry (the function's own path, for a task enqueued by hand).
RUN_INSTANCE_NAMES = frozenset({RUN_INSTANCE, "durable_workflows.djangoq.runs.run_instance"})
# django_q.models.Task.name is 100 characters long.
TASK_NAME_LENGTH = 100


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
        # django-q2's times, not the engine's clock: its workers compare the row's lock with
        # their own timezone.now(), as they do for the rows async_task writes.
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
