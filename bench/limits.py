"""Concurrency-limit benchmark: a workflow with `concurrency=2` against the same without.

    python bench/limits.py            # PostgreSQL + ORM broker (BENCH_POSTGRES_URL), 2 workers

BENCH_LIMITS (default 300) three-step workflows are started one by one while a 2-worker
cluster runs, and timed from the first start to the last completion; the limited and the
unlimited workflow take turns, BENCH_ROUNDS (default 3) rounds each. With two workers a limit
of two costs no parallelism, so what shows is the limit's own price: the claim that counts
slots under the group's lock, the wait of those that find no slot, and the hand-over to the
next when one finishes. Task rows are counted from PostgreSQL's statistics. Prints a table;
asserts nothing.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
N = int(os.environ.get("BENCH_LIMITS", "300"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


def main() -> int:
    sys.path.insert(0, str(ROOT))
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "bench.workers_settings", "BENCH_BROKER": "orm",
        "DATABASE_URL": os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/dw_bench"),
        "BENCH_CLUSTER": f"limits{os.getpid()}",
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
    log = Path(tempfile.mkdtemp(prefix="dw-bench-limits-")) / "cluster.log"
    cluster = QCluster("limits", dict(os.environ), log, workers=2, settings="bench.workers_settings")
    rates: dict[str, list[float]] = {"bench.three_steps": [], "bench.three_steps_limited": []}
    tasks: dict[str, list[int]] = {name: [] for name in rates}
    try:
        cluster.start().wait_ready()
        for _ in range(ROUNDS):
            for name in rates:
                rate, inserted = _round(name)
                rates[name].append(rate)
                tasks[name].append(inserted)
    finally:
        cluster.close()
        get_broker().purge_queue()
    plain, limited = rates["bench.three_steps"], rates["bench.three_steps_limited"]
    ratios = [lim / free for lim, free in zip(limited, plain, strict=True)]
    rows = [
        ("without a limit: workflows/s (rounds)", _spread(plain)),
        ("concurrency=2: workflows/s (rounds)", _spread(limited)),
        ("limited / unlimited, per round", ", ".join(f"{r:.2f}x" for r in ratios)
         + f" (median {statistics.median(ratios):.2f}x)"),
        ("task rows per instance, without / with", f"{statistics.mean(tasks['bench.three_steps']) / N:.2f} / "
                                                   f"{statistics.mean(tasks['bench.three_steps_limited']) / N:.2f}"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"| {f'{N} three-step workflows, 2 workers, PostgreSQL + ORM broker':<{width}} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name:<{width}} | {value} |")
    return 0


def _round(name: str) -> tuple[float, int]:
    from bench.backlog import _inserted_tasks
    from durable_workflows import client
    from durable_workflows.models import WorkflowInstance

    WorkflowInstance.objects.filter(workflow=name).delete()
    before = _inserted_tasks()
    began = time.monotonic()
    for i in range(N):
        client.start(name, i)
    done = WorkflowInstance.objects.filter(workflow=name, state="completed")
    while done.count() < N:
        time.sleep(0.05)
    rate = N / (time.monotonic() - began)
    time.sleep(1.0)  # PostgreSQL's statistics are flushed at most once a second
    return rate, _inserted_tasks() - before


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} (" + ", ".join(f"{v:.0f}" for v in values) + ")"


if __name__ == "__main__":
    sys.exit(main())
