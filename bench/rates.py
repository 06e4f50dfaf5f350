"""Rate-limit benchmark: how close a rate-limited workflow, and a step limiter, run to their
limit with real workers.

    python bench/rates.py            # PostgreSQL + Redis (BENCH_POSTGRES_URL, BENCH_REDIS_URL)

For each limit, BENCH_PERIODS (default 10) periods' worth of one-step instances are started
at once while two 2-worker clusters (two cluster names, each with its ticker) run. The rate
achieved is read from what is stored: (instances - limit) / (last first claim - first first
claim), which a perfect sliding window makes exactly the limit (the first N start at once,
each next N a period later). The limiter row does the same with the steps' start times of a
workflow whose one step takes the "bench" limiter. "most in a window" is the largest number
of first claims (or steps) in any window of the period: never above the limit. The last row
is what the same workers start a second without a limit: a limit above it is out of reach on
that machine. Prints a table; asserts nothing.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PERIODS = int(os.environ.get("BENCH_PERIODS", "10"))
LIMITER = 50


def main() -> int:
    sys.path.insert(0, str(ROOT))
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "bench.workers_settings", "BENCH_BROKER": os.environ.get("BENCH_BROKER", "redis"),
        "DATABASE_URL": os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/dw_bench"),
        "BENCH_CLUSTER": f"rates{os.getpid()}", "BENCH_LIMITER": f"{LIMITER}/s",
    })
    from bench.workers import _create_postgres_database

    _create_postgres_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command
    from django_q.brokers import get_broker

    from durable_workflows.models import WorkflowInstance
    from tests.workers.cluster import QCluster

    call_command("migrate", verbosity=0)
    WorkflowInstance.objects.all().delete()
    get_broker().purge_queue()
    log_dir = Path(tempfile.mkdtemp(prefix="dw-bench-rates-"))
    clusters = [QCluster(name, {**os.environ, "BENCH_CLUSTER": f"rates{os.getpid()}{name}"} if name == "b"
                         else dict(os.environ), log_dir / f"cluster-{name}.log", workers=2,
                         settings="bench.workers_settings") for name in ("a", "b")]
    rows = []
    try:
        for cluster in clusters:
            cluster.start().wait_ready()
        capacity = _capacity()
        for name, limit in (("bench.rate_10", 10), ("bench.rate_50", 50), ("bench.rate_200", 200)):
            rows.append((f"rate_limit={limit}/s", limit, *_round(name, limit, steps=False)))
        rows.append((f'limiter "bench" {LIMITER}/s', LIMITER, *_round("bench.limited_step", LIMITER, steps=True)))
    finally:
        for cluster in clusters:
            cluster.close()
        get_broker().purge_queue()
    print(f"| {PERIODS} periods' worth, 2 clusters x 2 workers, PostgreSQL + Redis | limit/s | achieved/s "
          f"| of the limit | most in a window | wall time |")
    print("|---|---|---|---|---|---|")
    for label, limit, achieved, most, wall in rows:
        print(f"| {label} | {limit} | {achieved:.1f} | {achieved / limit:.1%} | {most} | {wall:.1f} s |")
    print(f"| no limit (what these workers start at all) | - | {capacity:.1f} | - | - | - |")
    return 0


def _capacity() -> float:
    """First claims a second of the same one-step workflow without a limit: a limit above
    this cannot be reached on this machine, whatever the limiter does."""
    from durable_workflows import client
    from durable_workflows.models import WorkflowInstance

    n = 500
    ids = [h.instance_id for h in client.start_many("bench.rate_none", [[i] for i in range(n)])]
    done = WorkflowInstance.objects.filter(pk__in=ids, state="completed")
    while done.count() < n:
        time.sleep(0.1)
    stamps = sorted(WorkflowInstance.objects.filter(pk__in=ids).values_list("started_at", flat=True))
    return (n - 1) / (stamps[-1] - stamps[0]).total_seconds()


def _round(name: str, limit: int, steps: bool) -> tuple[float, int, float]:
    from durable_workflows import client
    from durable_workflows.models import StepRecord, WorkflowInstance

    n = limit * PERIODS
    began = time.monotonic()
    ids = [h.instance_id for h in client.start_many(name, [[i] for i in range(n)])]
    done = WorkflowInstance.objects.filter(pk__in=ids, state="completed")
    while done.count() < n:
        time.sleep(0.1)
    wall = time.monotonic() - began
    if steps:
        stamps = list(StepRecord.objects.filter(instance_id__in=ids).values_list("started_at", flat=True))
    else:
        stamps = list(WorkflowInstance.objects.filter(pk__in=ids).values_list("started_at", flat=True))
    stamps.sort()
    achieved = (n - limit) / (stamps[-1] - stamps[0]).total_seconds()
    return achieved, _most_in_a_window(stamps, timedelta(seconds=1)), wall


def _most_in_a_window(stamps: list[datetime], period: timedelta) -> int:
    most, end = 0, 0
    for start, at in enumerate(stamps):
        while end < len(stamps) and stamps[end] < at + period:
            end += 1
        most = max(most, end - start)
    return most


if __name__ == "__main__":
    sys.exit(main())
