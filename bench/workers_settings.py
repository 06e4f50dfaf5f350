"""Settings for bench/workers.py and the `qcluster` processes it starts.

DATABASE_URL picks PostgreSQL, otherwise a SQLite file; BENCH_BROKER picks "redis" or "orm".
Q_CLUSTER and DATABASES here are the ones the README recommends for workers.
"""

import os

from django.apps import AppConfig

from bench.settings import database

SECRET_KEY = "bench-only"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


class BenchWorkersConfig(AppConfig):
    """Registers the benchmark's workflows in every process, the workers included."""

    name = "bench"
    label = "bench_workers"

    def ready(self) -> None:
        import bench.workers  # noqa: F401


INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django_q",
    "durable_workflows",
    "bench.workers_settings.BenchWorkersConfig",
]

DATABASES = {"default": database("dw_bench_workers.sqlite3")}
if os.environ.get("BENCH_SQLITE") and not os.environ.get("DATABASE_URL"):
    DATABASES["default"]["NAME"] = os.environ["BENCH_SQLITE"]

Q_CLUSTER = {
    "name": os.environ.get("BENCH_CLUSTER", "bench"),
    "workers": int(os.environ.get("BENCH_WORKERS", "2")),
    "timeout": 300,
    "retry": 360,
    "poll": 0.1,
    "catch_up": False,
    "log_level": "WARNING",
}
if os.environ.get("BENCH_SAVE_LIMIT"):
    # Otherwise django-q2's default (250): what a bare task costs out of the box.
    Q_CLUSTER["save_limit"] = int(os.environ["BENCH_SAVE_LIMIT"])
if os.environ.get("BENCH_BROKER", "orm") == "redis":
    Q_CLUSTER["redis"] = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
else:
    Q_CLUSTER["orm"] = "default"

DURABLE_WORKFLOWS = {
    "LEASE_SECONDS": float(os.environ.get("BENCH_LEASE_SECONDS", "5")),
    "HEARTBEAT_SECONDS": float(os.environ.get("BENCH_HEARTBEAT_SECONDS", "1")),
    "ALARM_POLL_SECONDS": float(os.environ.get("BENCH_ALARM_POLL_SECONDS", "0.2")),
    "RECOVERY_POLL_SECONDS": float(os.environ.get("BENCH_RECOVERY_POLL_SECONDS", "1")),
    "REDISPATCH_AFTER_SECONDS": float(os.environ.get("BENCH_REDISPATCH_AFTER_SECONDS", "60")),
    "WAKEUP": os.environ.get("BENCH_WAKEUP", "notify"),
    "LIMITERS": {"bench": os.environ.get("BENCH_LIMITER", "50/s")},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"durable_workflows": {"handlers": ["stderr"], "level": "INFO"}},
}
