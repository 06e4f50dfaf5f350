"""django-q2 glue: the task functions workers run, and the dispatcher that enqueues them."""

from __future__ import annotations

from typing import Any

from django_q.conf import Conf
from django_q.tasks import async_task

from .conf import settings
from .engine import execute, fire_alarms, recover

RUN_INSTANCE = "durable_workflows.tasks.run_instance"


def run_instance(instance_id: str, mode: str = "fresh", epoch: int | None = None) -> str | None:
    """The task a worker runs. A duplicate or stale task (its epoch moved on) does nothing."""
    state = execute(instance_id, mode, epoch)
    return None if state is None else str(state)


def fire_alarms_task() -> int:
    return len(fire_alarms())


def recover_task() -> int:
    return len(recover())


class DjangoQDispatcher:
    """Enqueues `run_instance` with django-q2's `async_task`."""

    @property
    def synchronous(self) -> bool:
        return bool(Conf.SYNC)

    def dispatch(self, instance_id: str, mode: str, epoch: int) -> None:
        options: dict[str, Any] = dict(settings.Q_OPTIONS or {})
        options.setdefault("task_name", f"dw:{mode}:{instance_id}:{epoch}")
        async_task(RUN_INSTANCE, instance_id, mode, epoch, q_options=options)
