"""Settings of a chaos run: the driver and every `qcluster` it starts.

Everything points at the run's private servers, whose ports the driver passes in the
environment (DW_CHAOS_PG_PORT, DW_CHAOS_REDIS_PORT). There is no fallback: without them
these settings refuse to load rather than reach the shared PostgreSQL or Redis.
"""

import os

from tests.settings import *  # noqa: F401,F403
from tests.settings import INSTALLED_APPS, worker_q_cluster

_env = os.environ.get

INSTALLED_APPS = [*INSTALLED_APPS, "tests.chaos"]

# What the README recommends for workers: persistent connections, checked before reuse.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "chaos",
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": os.environ["DW_CHAOS_PG_PORT"],
        "CONN_MAX_AGE": 600,
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": {"connect_timeout": 5},
    }
}

_redis = f"redis://127.0.0.1:{os.environ['DW_CHAOS_REDIS_PORT']}/0" if _env("DW_BROKER") == "redis" else ""
Q_CLUSTER = worker_q_cluster("chaos", _redis)

DURABLE_WORKFLOWS = {
    "LEASE_SECONDS": float(_env("DW_LEASE_SECONDS", "5")),
    "HEARTBEAT_SECONDS": float(_env("DW_HEARTBEAT_SECONDS", "1")),
    "REDISPATCH_AFTER_SECONDS": float(_env("DW_REDISPATCH_AFTER_SECONDS", "10")),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"timed": {"format": "%(created).3f %(process)d %(name)s %(levelname)s %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "timed"}},
    "loggers": {"durable_workflows": {"handlers": ["stderr"], "level": "INFO"}},
}
