"""Settings for the benchmarks: DATABASE_URL picks PostgreSQL, otherwise a SQLite file."""

import os
import tempfile

import dj_database_url

SECRET_KEY = "bench-only"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django_q",
    "durable_workflows",
]


def database(sqlite_name: str) -> dict:
    """DATABASE_URL if set, otherwise a SQLite file in the temp dir; persistent connections."""
    if os.environ.get("DATABASE_URL"):
        return dj_database_url.parse(os.environ["DATABASE_URL"], conn_max_age=600)
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.path.join(tempfile.gettempdir(), sqlite_name),
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
        "CONN_MAX_AGE": 600,
    }


DATABASES = {"default": database("dw_bench.sqlite3")}
Q_CLUSTER = {"name": "bench", "orm": "default", "sync": True, "timeout": 60, "retry": 120}
DURABLE_WORKFLOWS = {
    "DISPATCHER": "durable_workflows.dispatch.InlineDispatcher",
    # BENCH_EVENT_LOG=0: no lifecycle rows, to see what they cost a step.
    "EVENT_LOG": os.environ.get("BENCH_EVENT_LOG", "1") != "0",
}
