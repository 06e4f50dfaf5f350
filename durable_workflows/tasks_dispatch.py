"""The task `TasksDispatcher` enqueues on another `django.tasks` backend: one run of an
instance, as django-q2's `run_instance` is on the default dispatcher.

A duplicate or stale task (its epoch moved on) does nothing, so a backend that runs a task
twice, or recovery sending one again, costs only the claim that finds nothing to do.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured

try:
    from .tasks_framework import InvalidTaskBackend, task, task_backends
except ImportError as missing:  # Django 5.2 without the backport
    raise ImproperlyConfigured(
        "durable_workflows.dispatch.TasksDispatcher needs Django's tasks framework: Django 6.0 or later, "
        "or on Django 5.2 the django-tasks backport (pip install 'django-durable-workflows[tasks]')"
    ) from missing

__all__ = ["backend_of", "run_instance"]


@task
def run_instance(instance_id: str, mode: str = "fresh", epoch: int | None = None) -> str | None:
    """Run the instance until it finishes or pauses; the state it was left in, or None when
    there was nothing to claim."""
    from .engine import execute

    return execute(instance_id, mode, epoch)


def backend_of(alias: str) -> Any:
    """The backend of TASKS alias `alias`, or ImproperlyConfigured saying what is wrong."""
    try:
        backend = task_backends[alias]
    except InvalidTaskBackend as error:
        raise ImproperlyConfigured(
            f"DURABLE_WORKFLOWS['TASKS_BACKEND'] names the TASKS alias {alias!r}, which settings.TASKS "
            "does not define") from error
    if type(backend).__module__ == "durable_workflows.tasks_backend":
        raise ImproperlyConfigured(
            f"DURABLE_WORKFLOWS['TASKS_BACKEND'] names the TASKS alias {alias!r}, whose backend is "
            "durable_workflows' own DurableTaskBackend: its tasks are instances run by this dispatcher, "
            "a loop. Name the alias of another backend (the one whose workers run the workflows).")
    return backend
