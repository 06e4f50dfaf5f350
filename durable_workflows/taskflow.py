"""The built-in workflow that runs one task of Django's tasks framework as a durable step.

`tasks_backend.DurableTaskBackend.enqueue` starts it; it is registered by the app wherever
`django.tasks` (or the django-tasks backport) is installed, so that every worker runs it. Its
first act is the task's `run_after` (a durable sleep: the instance waits Paused, on an alarm),
then one step, the task's function, with the backend's retry policy. Django's `task_enqueued`,
`task_started` (each attempt) and `task_finished` signals are sent from the lifecycle signals
of its instances, once what they describe has committed.
"""

from __future__ import annotations

import importlib.util
from collections import OrderedDict
from datetime import datetime
from typing import Any

from . import signals
from .registry import workflow

#: The name of the built-in workflow every task is an instance of.
TASK_WORKFLOW = "durable_workflows.task"
#: The sleep of a task enqueued with `run_after`.
RUN_AFTER = "run_after"
#: How many task instances a process keeps in `KNOWN`.
KNOWN_MAX = 4096

#: The task instances this process enqueued or runs: instance id -> [its Task, its backend
#: alias, the status of the last of Django's signals sent for it]. With it, relaying a signal
#: reads nothing from the database; an instance it does not hold (cancelled from another
#: process) is read once. The oldest are forgotten.
KNOWN: OrderedDict[str, list[Any]] = OrderedDict()


def remember(instance_id: str, task: Any, alias: str, status: str | None = None) -> None:
    KNOWN[instance_id] = [task, alias, status]
    KNOWN.move_to_end(instance_id)
    while len(KNOWN) > KNOWN_MAX:
        KNOWN.popitem(last=False)


def available() -> bool:
    """Whether Django's tasks framework is importable here."""
    for name in ("django.tasks", "django_tasks"):
        try:
            if importlib.util.find_spec(name) is not None:
                return True
        except ImportError:  # "django" itself found, no "tasks" under it
            continue
    return False


def run_task(wf: Any, path: str, args: list[Any], kwargs: dict[str, Any], backend: str = "default",
             priority: int = 0, queue_name: str = "default", run_after: str | None = None) -> Any:
    """Run the task at `path` once `run_after` has come, with the retry policy of the
    `backend` task alias."""
    from . import tasks_backend

    when = None if run_after is None else datetime.fromisoformat(run_after)
    known = KNOWN.get(wf.instance_id)
    if known is None:
        task = tasks_backend.task_for(path, priority, queue_name, backend, when)
        remember(wf.instance_id, task, backend)
    else:
        task = known[0]
    if when is not None:
        wf.sleep_until(when, name=RUN_AFTER)
    policy = tasks_backend.retry_policy(backend, task)
    return wf.step(path, tasks_backend.call_task, path, args, kwargs, backend, wf.instance_id, retry=policy,
                   timeout=getattr(task, "timeout", None))


#: Django's signal for each lifecycle signal of a task's instance, and the status it reports.
_SIGNALS = {
    signals.workflow_queued: ("task_enqueued", "READY"),
    signals.step_started: ("task_started", "RUNNING"),
    signals.workflow_completed: ("task_finished", "SUCCESSFUL"),
    signals.workflow_failed: ("task_finished", "FAILED"),
    signals.workflow_cancelled: ("task_finished", "FAILED"),
}


def _relay(signal: Any, **kwargs: Any) -> None:
    if kwargs.get("workflow") != TASK_WORKFLOW:
        return
    from . import tasks_backend

    name, status = _SIGNALS[signal]
    tasks_backend.send(name, kwargs["instance_id"], status)


def install() -> None:
    """Register the workflow and relay its lifecycle signals, where `django.tasks` exists."""
    if not available():
        return
    workflow(TASK_WORKFLOW)(run_task)
    if not _configured():
        # The relay listens to every step of every workflow: a project whose TASKS has no
        # backend of ours must not pay for it on each step.
        return
    for signal in _SIGNALS:
        signal.connect(_relay, dispatch_uid=f"durable_workflows.taskflow.{id(signal)}")


def _configured() -> bool:
    """Whether the project's TASKS setting names a DurableTaskBackend."""
    from django.conf import settings as django_settings

    from .checks import TASK_BACKEND

    aliases = getattr(django_settings, "TASKS", None) or {}
    return isinstance(aliases, dict) and any(
        isinstance(options, dict) and options.get("BACKEND") == TASK_BACKEND for options in aliases.values())
