"""Settings for `qcluster` processes started by the worker tests.

The test that starts a cluster passes, through the environment, the pytest test database
(DW_DB_NAME, read by tests.settings), the broker (DW_BROKER: orm or redis), the cluster
name (DW_CLUSTER_NAME, a fresh queue per test) and the timings it needs.
"""

import os

from tests.settings import *  # noqa: F401,F403
from tests.settings import DATABASES, INSTALLED_APPS, worker_q_cluster

_env = os.environ.get

INSTALLED_APPS = [*INSTALLED_APPS, "tests.workers"]

Q_CLUSTER = worker_q_cluster("tests", _env("DW_REDIS_URL", "redis://127.0.0.1:6379/0"))

DURABLE_WORKFLOWS = {
    "LEASE_SECONDS": float(_env("DW_LEASE_SECONDS", "30")),
    "HEARTBEAT_SECONDS": float(_env("DW_HEARTBEAT_SECONDS", "10")),
    "REDISPATCH_AFTER_SECONDS": float(_env("DW_REDISPATCH_AFTER_SECONDS", "60")),
    "WAKEUP": _env("DW_WAKEUP", "notify"),
    # The step limiter the worker tests of limiters share (tests.testapp.rate_workflows).
    "LIMITERS": {"shared": _env("DW_SHARED_LIMIT", "20/s")},
}
# Runs sent through another django.tasks backend (tests/test_tasks_db_worker.py).
if _env("DW_DISPATCHER"):
    DURABLE_WORKFLOWS["DISPATCHER"] = _env("DW_DISPATCHER", "")
    DURABLE_WORKFLOWS["TASKS_BACKEND"] = _env("DW_TASKS_BACKEND", "default")

# Encryption at rest with these keys, newest first (tests/test_workers_codecs.py).
if _env("DW_CODEC_KEYS"):
    DURABLE_WORKFLOWS["CODEC"] = "durable_workflows.codecs.FernetCodec"
    DURABLE_WORKFLOWS["CODEC_KEYS"] = _env("DW_CODEC_KEYS", "").split(",")

# Persistent connections, as the README recommends for workers.
DATABASES["default"]["CONN_MAX_AGE"] = int(_env("DW_CONN_MAX_AGE", "600"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"durable_workflows": {"handlers": ["stderr"], "level": "INFO"}},
}

# A cluster whose machine's clock is off by this many seconds (tests.clock_skew).
if _env("DW_CLOCK_SKEW_SECONDS"):
    from tests.clock_skew import apply as _skew

    _skew(float(_env("DW_CLOCK_SKEW_SECONDS", "0")))
