"""Test settings. DATABASE_URL picks the database (PostgreSQL in CI); SQLite otherwise.

The SQLite test database is a file, not memory, so that worker subprocesses share it.
"""

import os
import tempfile
from importlib.util import find_spec as _find_spec

import dj_database_url

BASE_DIR = os.path.dirname(os.path.abspath(__file__))
SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ALLOWED_HOSTS = ["*"]

_sqlite_dir = os.environ.get("DW_TEST_DIR") or tempfile.gettempdir()
DATABASE_URL = os.environ.get("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=600)}
    # One test database per pytest process, so that two runs on one server never share it.
    DATABASES["default"]["TEST"] = {"NAME": f"test_dw_{os.getpid()}"}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.path.join(_sqlite_dir, "dw_tests.sqlite3"),
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
            "TEST": {"NAME": os.path.join(_sqlite_dir, f"dw_test_{os.getpid()}.sqlite3")},
        }
    }

# A second alias on the same server, for the tests of the DATABASE setting (a project that
# keeps durable_workflows' tables on another database). Only those tests create it.
DATABASES["other"] = {**DATABASES["default"], "TEST": {
    "NAME": f"test_dw_other_{os.getpid()}" if DATABASE_URL
    else os.path.join(_sqlite_dir, f"dw_test_other_{os.getpid()}.sqlite3")}}

# Subprocesses started by tests (crash tests, qcluster workers) point at the test database.
if os.environ.get("DW_DB_NAME"):
    DATABASES["default"]["NAME"] = os.environ["DW_DB_NAME"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "django_q",
    "durable_workflows",
    "tests.testapp",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

STATIC_URL = "/static/"

REST_FRAMEWORK = {"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"}

# Tasks run in the caller's thread: start() runs the instance before it returns.
Q_CLUSTER = {"name": "tests", "orm": "default", "sync": True, "timeout": 60, "retry": 120}


def worker_q_cluster(name: str, redis_url: str) -> dict:
    """Q_CLUSTER of the real `qcluster` processes tests start (the worker tests, the chaos
    run): the broker (DW_BROKER: orm or redis), the cluster name and its timings come from
    the environment the test sets."""
    env = os.environ.get
    cluster = {
        "name": env("DW_CLUSTER_NAME", name),
        "workers": int(env("DW_WORKERS", "2")),
        # timeout < retry: a task is stopped before the ORM broker would hand it out again.
        "timeout": int(env("DW_Q_TIMEOUT", "20")),
        "retry": int(env("DW_Q_RETRY", "30")),
        "poll": 0.1,
        "catch_up": False,
    }
    if env("DW_BROKER", "orm") == "redis":
        cluster["redis"] = redis_url
    else:
        cluster["orm"] = "default"
    return cluster

DURABLE_WORKFLOWS: dict[str, object] = {
    "LEASE_SECONDS": float(os.environ.get("DW_LEASE_SECONDS", 30)),
    "HEARTBEAT_SECONDS": float(os.environ.get("DW_HEARTBEAT_SECONDS", 10)),
}
# The dispatcher of a subprocess a test starts (tests/test_tasks_dispatcher.py).
if os.environ.get("DW_DISPATCHER"):
    DURABLE_WORKFLOWS["DISPATCHER"] = os.environ["DW_DISPATCHER"]
    DURABLE_WORKFLOWS["TASKS_BACKEND"] = os.environ.get("DW_TASKS_BACKEND", "immediate")

# Django's tasks framework (Django 6.0+, or Django 5.2 with the django-tasks backport; without
# either, the durable_workflows.E009 check refuses it): tests/test_tasks_backend.py.
_TASKS_FRAMEWORK = ("django.tasks" if _find_spec("django.tasks") is not None
                    else "django_tasks" if _find_spec("django_tasks") is not None else None)
TASKS = {} if _TASKS_FRAMEWORK is None else {
    "default": {"BACKEND": "durable_workflows.tasks_backend.DurableTaskBackend", "QUEUES": ["default", "emails"]},
    "retrying": {"BACKEND": "durable_workflows.tasks_backend.DurableTaskBackend",
                 "OPTIONS": {"RETRY": {"max_attempts": 3, "initial_delay": 0, "jitter": False}}},
    "patient": {"BACKEND": "durable_workflows.tasks_backend.DurableTaskBackend",
                "OPTIONS": {"RETRY": {"max_attempts": 2, "initial_delay": "1h", "jitter": False}}},
    # Django's own backend, for TasksDispatcher (tests/test_tasks_dispatcher.py).
    "immediate": {"BACKEND": f"{_TASKS_FRAMEWORK}.backends.immediate.ImmediateBackend"},
}

# django-tasks-db's DatabaseBackend, where it is installed (it needs the tasks framework too):
# its `db_worker` runs workflows through TasksDispatcher (tests/test_tasks_db_worker.py).
TASKS_DB = bool(TASKS) and _find_spec("django_tasks_db") is not None
if TASKS_DB:
    INSTALLED_APPS.append("django_tasks_db")
    TASKS["db"] = {"BACKEND": "django_tasks_db.DatabaseBackend"}
