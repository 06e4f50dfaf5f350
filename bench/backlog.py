"""Backlog benchmark: no redispatch storm when the queue is longer than the redispatch wait.

    python bench/backlog.py            # PostgreSQL + ORM broker (BENCH_POSTGRES_URL)

N three-step workflows (BENCH_BACKLOG, default 5000) are started at once, in one
`start_many`, behind a 2-worker cluster whose REDISPATCH_AFTER_SECONDS is 5 s, far shorter
than the time the backlog takes to drain. Every instance still Queued 5 s after its task went
out is a candidate for a redispatch on each recovery scan; the per-instance back-off is what
keeps that from feeding the queue. Counted from PostgreSQL's own statistics: the task rows
inserted into django-q2's ORM queue, against one per instance. Prints a table; asserts nothing.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
N = int(os.environ.get("BENCH_BACKLOG", "5000"))
REDISPATCH = 5.0


def main() -> int:
    sys.path.insert(0, str(ROOT))
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "bench.workers_settings", "BENCH_BROKER": "orm",
        "DATABASE_URL": os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/dw_bench"),
        "BENCH_REDISPATCH_AFTER_SECONDS": str(REDISPATCH), "BENCH_CLUSTER": f"backlog{os.getpid()}",
    })
    from bench.workers import _create_postgres_database

    _create_postgres_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    import tempfile

    from django.core.management import call_command

    from durable_workflows import client
    from durable_workflows.models import WorkflowInstance
    from tests.workers.cluster import QCluster

    call_command("migrate", verbosity=0)
    WorkflowInstance.objects.all().delete()
    before = _inserted_tasks()
    began = time.monotonic()
    handles = client.start_many("bench.three_steps", [[i] for i in range(N)])
    started = time.monotonic()
    log = Path(tempfile.mkdtemp(prefix="dw-bench-backlog-")) / "cluster.log"
    cluster = QCluster("backlog", dict(os.environ), log, workers=2, settings="bench.workers_settings")
    try:
        cluster.start().wait_ready()
        opened = time.monotonic()
        done = WorkflowInstance.objects.filter(pk__in=[h.instance_id for h in handles], state="completed")
        while done.count() < N:
            time.sleep(0.5)
        drained = time.monotonic()
    finally:
        cluster.close()
        # Copies still queued when the last instance finished were enqueued all the same
        # (counted below); they must not stay behind to slow the next run's queue.
        from django_q.brokers import get_broker

        get_broker().purge_queue()
    time.sleep(1.0)  # PostgreSQL's statistics are flushed at most once a second
    tasks = _inserted_tasks() - before
    redispatched = sum(WorkflowInstance.objects.filter(pk__in=[h.instance_id for h in handles])
                       .values_list("redispatches", flat=True))
    rows = [
        ("instances (start_many, one call)", f"{N} in {started - began:.2f} s"),
        ("REDISPATCH_AFTER_SECONDS", f"{REDISPATCH:g} s"),
        ("drain with 2 workers", f"{drained - opened:.1f} s ({N / (drained - opened):.0f} workflows/s)"),
        ("task rows enqueued", f"{tasks} ({tasks - N} beyond one per instance, {(tasks - N) / N:.1%})"),
        ("redispatches left on the instances", f"{redispatched} (a run resets its count)"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"| {'measure':<{width}} | value |\n|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name:<{width}} | {value} |")
    return 0


def _inserted_tasks() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
        cursor.execute("SELECT coalesce(sum(n_tup_ins), 0) FROM pg_stat_user_tables WHERE relname = 'django_q_ormq'")
        return int(cursor.fetchone()[0])


if __name__ == "__main__":
    sys.exit(main())
