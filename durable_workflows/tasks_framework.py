"""Django's tasks framework, wherever it comes from: `django.tasks` (Django 6.0 and later) or, on
Django 5.2, the django-tasks backport's `django_tasks`, whose API is the same under a few other
names. The names here are Django's; importing this module raises ImportError where neither is
installed, which `tasks_backend` and `tasks_dispatch` turn into ImproperlyConfigured naming
what to install.

Type checkers read Django's own module (django-stubs describes it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django.tasks import Task, TaskContext, TaskResult, TaskResultStatus, task, task_backends
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.backends.immediate import ImmediateBackend
    from django.tasks.base import TaskError
    from django.tasks.exceptions import InvalidTask, InvalidTaskBackend, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
    from django.utils.json import normalize_json
else:
    from importlib import import_module
    from importlib.util import find_spec

    # Where each name is, under the package; the backport's own name where it differs.
    _WHERE = {
        "": ["task_backends"],
        ".backends.base": ["BaseTaskBackend"],
        ".backends.immediate": ["ImmediateBackend"],
        ".base": ["Task", "TaskContext", "TaskError", "TaskResult", "TaskResultStatus", "task"],
        ".exceptions": ["InvalidTask", "InvalidTaskBackend", "TaskResultDoesNotExist"],
        ".signals": ["task_enqueued", "task_finished", "task_started"],
    }
    _BACKPORT_NAMES = {"InvalidTask": "InvalidTaskError", "InvalidTaskBackend": "InvalidTaskBackendError"}

    _SOURCE = "django.tasks" if find_spec("django.tasks") is not None else "django_tasks"
    for _module, _names in _WHERE.items():
        _found = import_module(_SOURCE + _module)  # ImportError where neither is installed
        for _name in _names:
            globals()[_name] = getattr(_found, _name if _SOURCE == "django.tasks" else _BACKPORT_NAMES.get(_name, _name))
    normalize_json = import_module("django.utils.json" if _SOURCE == "django.tasks" else "django_tasks.utils").normalize_json
    del _module, _names, _found, _name

__all__ = ["BaseTaskBackend", "ImmediateBackend", "InvalidTask", "InvalidTaskBackend", "Task",
           "TaskContext", "TaskError", "TaskResult", "TaskResultDoesNotExist", "TaskResultStatus",
           "normalize_json", "task", "task_backends", "task_enqueued", "task_finished", "task_started"]
