"""The idle mode of bench/workers.py: what an idle cluster costs the database.

    python bench/workers.py --mode idle

A `qcluster` on PostgreSQL with the Redis broker (so django-q2 polls no table), no workflow
running, with 2 and with 8 workers and the default LEASE_SECONDS: the transactions a second
the database counts for the bench's database (`xact_commit + xact_rollback` of
`pg_stat_database`), read before and after a window of BENCH_IDLE_SECONDS (default 60: a
whole period of the `Schedule` backstop, whose tasks run once a minute) once the cluster has
settled, minus the bench's own reads; total and per worker process, with WAKEUP "notify"
and "poll" (BENCH_IDLE_WAKEUPS).

PostgreSQL: BENCH_POSTGRES_URL with "_idle" added to its database name (default
postgres://postgres@127.0.0.1:5432/dw_bench_idle, created if missing), so that nothing else
works on it while it is measured. BENCH_IDLE_WORKERS picks the cluster sizes (default "2,8").
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.tables import markdown

IDLE_SECONDS = float(os.environ.get("BENCH_IDLE_SECONDS", "60"))
# How long after its workers are up a cluster is left alone before the window opens: the
# workers' first passes, the choice of the ticker, and django-q2's first look at the Schedule
# rows (about 30 s after the start, when every overdue backstop task runs at once) are over.
SETTLE_SECONDS = float(os.environ.get("BENCH_IDLE_SETTLE_SECONDS", "35"))
WORKER_COUNTS = [int(n) for n in os.environ.get("BENCH_IDLE_WORKERS", "2,8").split(",")]
# The WAKEUP settings measured, each with every cluster size.
WAKEUPS = os.environ.get("BENCH_IDLE_WAKEUPS", "notify,poll").split(",")
# The default lease: the non-holders' tries to take the cluster's ticker follow it.
LEASE_SECONDS = 30


def run(postgres_url: str, redis_url: str, script: str, root: Path) -> int:
    """Measure each cluster size in a process of its own; print the table."""
    from bench.workers import _create_postgres_database

    url = postgres_url + "_idle"
    _create_postgres_database(url)
    results = []
    for wakeup, workers in [(w, n) for w in WAKEUPS for n in WORKER_COUNTS]:
        print(f"idle cluster of {workers} workers, WAKEUP {wakeup} ...", file=sys.stderr, flush=True)
        env = {**os.environ, "BENCH_WAKEUP": wakeup,
               "DJANGO_SETTINGS_MODULE": "bench.workers_settings", "BENCH_BROKER": "redis",
               "BENCH_REDIS_URL": redis_url, "BENCH_CLUSTER": f"benchidle{uuid.uuid4().hex[:8]}",
               "BENCH_WORKERS": str(workers), "BENCH_LEASE_SECONDS": str(LEASE_SECONDS),
               "BENCH_HEARTBEAT_SECONDS": "10", "DATABASE_URL": url, "PYTHONUNBUFFERED": "1"}
        done = subprocess.run([sys.executable, script, "--json", "--mode", "idle"], env=env, cwd=root,
                              stdout=subprocess.PIPE, text=True)
        if done.returncode != 0:
            raise SystemExit(f"idle cluster of {workers} workers: the measuring process failed")
        results.append({**json.loads(done.stdout.strip().splitlines()[-1]), "wakeup": wakeup})
    print(table(results))
    return 0


def measure() -> dict[str, Any]:
    """Runs in a process whose settings point at the idle bench's database and Redis."""
    from django.core.management import call_command
    from django.db import connection
    from django_q.conf import Conf

    from durable_workflows.models import WorkflowInstance
    from tests.workers.cluster import QCluster

    call_command("migrate", verbosity=0)
    WorkflowInstance.objects.all().delete()
    database = connection.settings_dict["NAME"]
    connection.close()
    log_dir = Path(tempfile.mkdtemp(prefix="dw-bench-idle-"))
    workers = int(Conf.WORKERS)
    cluster = QCluster("idle", dict(os.environ), log_dir / "cluster.log", workers=workers,
                       settings="bench.workers_settings")
    try:
        cluster.start().wait_ready()
        time.sleep(SETTLE_SECONDS)
        with _stats_connection() as stats:
            before, began = _transactions(stats, database), time.monotonic()
            time.sleep(IDLE_SECONDS)
            after, ended = _transactions(stats, database), time.monotonic()
        if not cluster.alive:
            raise RuntimeError(f"the cluster died during the window:\n{cluster.log()[-3000:]}")
    except BaseException:
        print(cluster.log()[-5000:], file=sys.stderr)
        raise
    finally:
        cluster.close()
        shutil.rmtree(log_dir, ignore_errors=True)
    # The first read commits after it read the counter: one transaction of ours in the window.
    per_second = (after - before - 1) / (ended - began)
    return {"workers": workers, "seconds": ended - began, "per_second": per_second,
            "per_worker": per_second / workers}


def _stats_connection() -> Any:
    """A connection of the bench's own, outside Django, in autocommit: each read is one
    transaction, on the bench's database like the cluster's."""
    import psycopg

    return psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)


def _transactions(stats: Any, database: str) -> int:
    # The counters a backend reports reach pg_stat_database at most a second late; a window
    # of many seconds makes that error small. In autocommit each read is a transaction of
    # its own, with a fresh snapshot of the statistics.
    row = stats.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
                        [database]).fetchone()
    return int(row[0])


def table(results: list[dict[str, Any]]) -> str:
    header = ["idle cluster, PostgreSQL + Redis", "transactions / s", "per worker process"]
    body = [[f"{r['workers']} workers, WAKEUP {r['wakeup']} ({r['seconds']:.0f} s window)",
             f"{r['per_second']:.1f}",
             f"{r['per_worker']:.2f}"] for r in results]
    return markdown(header, body)
