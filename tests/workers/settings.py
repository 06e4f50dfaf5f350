"""Settings for `qcluster` processes started by the worker tests.

The test that starts a cluster passes, through the environment, the pytest test database
(DW_DB_NAME, read by tests.settings), the broker (DW_BROKER: orm or redis), the cluster
name (DW_CLUSTER_NAME, a fresh queue per test) and the timings it needs.
"""

import os

from tests.settings import *  # noqa: F401,F403
from tests.settings import DATABASES, INSTALLED_APPS

_env = os.environ.get

INSTALLED_APPS = [*INSTALLED_APPS, "tests.workers"]

Q_CLUSTER = {
    "name": _env("DW_CLUSTER_NAME", "tests"),
    "workers": int(_env("DW_WORKERS", "2")),
    # timeout < retry: a task is stopped before the ORM broker would hand it out again.
    "timeout": int(_env("DW_Q_TIMEOUT", "20")),
    "retry": int(_env("DW_Q_RETRY", "30")),
    "poll": 0.1,
    "catch_up": False,
}
if _env("DW_BROKER", "orm") == "redis":
    Q_CLUSTER["redis"] = _env("DW_REDIS_URL", "redis://127.0.0.1:6379/0")
else:
    Q_CLUSTER["orm"] = "default"

DURABLE_WORKFLOWS = {
    "LEASE_SECONDS": float(_env("DW_LEASE_SECONDS", "30")),
    "HEARTBEAT_SECONDS": float(_env("DW_HEARTBEAT_SECONDS", "10")),
    "REDISPATCH_AFTER_SECONDS": float(_env("DW_REDISPATCH_AFTER_SECONDS", "60")),
}

# Persistent connections, as the README recommends for workers.
DATABASES["default"]["CONN_MAX_AGE"] = int(_env("DW_CONN_MAX_AGE", "600"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"durable_workflows": {"handlers": ["stderr"], "level": "INFO"}},
}
