"""The chaos test: a supervised 2-worker cluster on a private PostgreSQL (and Redis) runs 40
five-step workflows while a worker, the guard, the whole cluster and the database (and,
with the Redis broker, Redis) are killed at random moments. Every instance completes, and
every step that ran twice was cut short by one of those faults.

The harness is in tests/chaos/; bench/chaos.py runs the long version and prints timings.
Nothing here fails on a time: the deadlines only bound a hang. It runs once per CI run, on
the PostgreSQL pass, and needs the PostgreSQL server binaries and redis-server (it never
uses the machine's own servers: it starts private ones on free ports).
"""

from __future__ import annotations

import json

import pytest
from django.db import connection

from tests.chaos import servers
from tests.chaos.launch import run_driver

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

# A short lease and redispatch delay, so that the recoveries come quickly.
SHORT = ["--n", "40", "--lease", "3", "--heartbeat", "1", "--redispatch", "5",
         "--q-timeout", "8", "--q-retry", "10", "--deadline", "300"]


@pytest.mark.parametrize(("broker", "faults"), [("orm", 4), ("redis", 5)])
def test_faults_while_workflows_run_leave_every_instance_completed(broker, faults):
    if connection.vendor != "postgresql":
        pytest.skip("the chaos test runs once per CI run, on the PostgreSQL pass")
    reason = servers.missing()
    if reason:
        pytest.skip(reason)

    summary = run_driver(["--broker", broker, "--faults", str(faults), *SHORT], timeout=900)
    shown = {k: v for k, v in summary.items() if k != "cluster_log_tail"}
    about = (f"seed {summary.get('seed')}, run kept in {summary.get('run_dir')}\n"
             f"{json.dumps(shown, indent=1)}\n{summary.get('cluster_log_tail', '')}")

    assert "error" not in summary, about
    # Each fault struck while steps were in flight: the worker kill (the guard started a
    # new worker), the guard kill (the supervisor started a new cluster beside the orphaned
    # workers), the database crash, the cluster kill, the Redis restart.
    kinds = sorted(f["kind"] for f in summary["faults"])
    expected = ["cluster", "db", "guard", "worker"] + (["redis"] if broker == "redis" else [])
    assert kinds == sorted(expected), about
    assert summary["completed"] == 40, about
    assert summary["failed"] == 0, about
    assert summary["missing_steps"] == [], about
    assert summary["unexplained_reruns"] == [], about
    assert summary["overlaps"] == [], about
    assert summary["leftovers"] == [], about
