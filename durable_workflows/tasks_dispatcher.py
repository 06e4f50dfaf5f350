"""`TasksDispatcher`: workflow runs sent through another `django.tasks` backend.

    DURABLE_WORKFLOWS = {
        "DISPATCHER": "durable_workflows.dispatch.TasksDispatcher",
        "TASKS_BACKEND": "default",   # the TASKS alias the runs go through
    }

Each run is a task of that backend (`tasks_dispatch.run_instance`), run by its own workers;
the periodic work (alarms, recovery, schedules, retention), which django-q2's workers do
otherwise, is `manage.py durable_workflows ticker`'s. The alias must not be our own
`DurableTaskBackend`, whose tasks are instances run by this dispatcher: a loop.

This module imports the tasks framework (`django.tasks`, or the django-tasks backport on
Django 5.2) only when a dispatcher is made, so that the engine, which
imports `durable_workflows.dispatch`, keeps working on Django 5.2.
"""

from __future__ import annotations

from .conf import settings
from .engine.ports import BaseDispatcher

__all__ = ["TasksDispatcher"]


class TasksDispatcher(BaseDispatcher):
    """Enqueues each run on the `django.tasks` backend named by TASKS_BACKEND (or `alias`)."""

    def __init__(self, alias: str | None = None) -> None:
        self.alias = str(alias if alias is not None else settings.TASKS_BACKEND)
        from .tasks_dispatch import backend_of

        self.backend = backend_of(self.alias)

    @property
    def synchronous(self) -> bool:
        # Django's ImmediateBackend runs the task inside enqueue().
        from .tasks_framework import ImmediateBackend

        return isinstance(self.backend, ImmediateBackend)

    def dispatch(self, instance_id: str, mode: str, epoch: int) -> None:
        from .tasks_dispatch import run_instance

        run_instance.using(backend=self.alias).enqueue(instance_id, mode, epoch)

    def __repr__(self) -> str:
        return f"<TasksDispatcher {self.alias!r}>"
