"""Settings for bench/tasks.py and its `qcluster` processes: bench/workers_settings.py and
Django's tasks framework, with a durable backend, Django's DummyBackend and, where the
django-tasks-db package is installed, its database backend."""

from importlib.util import find_spec

from bench.workers_settings import *  # noqa: F401,F403
from bench.workers_settings import INSTALLED_APPS

TASKS = {
    "default": {"BACKEND": "durable_workflows.tasks_backend.DurableTaskBackend"},
    "dummy": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"},
}
if find_spec("django_tasks_db") is not None:
    INSTALLED_APPS = [*INSTALLED_APPS, "django_tasks_db"]
    TASKS["database"] = {"BACKEND": "django_tasks_db.backend.DatabaseBackend"}
