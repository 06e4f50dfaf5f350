"""Retention benchmark: how fast `purge_expired()` deletes finished instances and their rows.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test python bench/purge.py   # BENCH_PURGE=1000000

Fills the database with BENCH_PURGE (default 100,000) finished instances of a three-step
workflow, each with its 3 step records and 8 lifecycle rows (copies of one real run, made in
SQL so that the set-up takes seconds), then times one `purge_expired()` that deletes them all,
and reads the process's peak memory (BENCH_PURGE_BATCH sets the batch size, default 1,000).
Prints a table; asserts nothing. PostgreSQL only.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

import django  # noqa: E402

django.setup()

from datetime import timedelta  # noqa: E402

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from durable_workflows import client, purge_expired, workflow  # noqa: E402
from durable_workflows.models import Event, StepRecord, WorkflowInstance  # noqa: E402

N = int(os.environ.get("BENCH_PURGE", "100000"))
BATCH = int(os.environ.get("BENCH_PURGE_BATCH", "1000"))


def identity(value):
    return value


@workflow("bench.kept", purge_after="1d")
def kept(wf, n: int):
    for i in range(3):
        wf.step(f"Step {i}", identity, n + i)
    return n


def _columns(model, replace: dict[str, str]) -> tuple[str, str]:
    names = [f.column for f in model._meta.concrete_fields if not f.primary_key or model is WorkflowInstance]
    quoted = ", ".join(connection.ops.quote_name(n) for n in names)
    values = ", ".join(replace.get(n, f"t.{connection.ops.quote_name(n)}") for n in names)
    return quoted, values


def fill(n: int) -> None:
    """n copies of one finished run, its rows included, finished two days ago."""
    template = client.start("bench.kept", 0).instance_id
    WorkflowInstance.objects.filter(pk=template).update(finished_at=timezone.now() - timedelta(days=2))
    new_id = "'bench-kept-' || g"
    with connection.cursor() as cursor:
        for model, key in ((WorkflowInstance, "id"), (StepRecord, "instance_id"), (Event, "instance_id")):
            columns, values = _columns(model, {key: new_id})
            table = model._meta.db_table
            cursor.execute(f"INSERT INTO {table} ({columns}) SELECT {values} FROM {table} t, "
                           f"generate_series(1, %s) g WHERE t.{key} = %s", [n, template])


def main() -> None:
    if connection.vendor != "postgresql":
        raise SystemExit("bench/purge.py needs DATABASE_URL pointing at PostgreSQL")
    call_command("migrate", verbosity=0)
    WorkflowInstance.objects.filter(workflow="bench.kept").delete()
    started = time.perf_counter()
    fill(N)
    with connection.cursor() as cursor:
        # As autovacuum would have by then, and the fill's writes on disk: the purge is
        # timed on its own, not behind the set-up's checkpoint.
        cursor.execute("VACUUM ANALYZE")
        cursor.execute("CHECKPOINT")
    filled = time.perf_counter() - started
    rows = (WorkflowInstance.objects.filter(workflow="bench.kept").count(),
            StepRecord.objects.filter(instance__workflow="bench.kept").count(),
            Event.objects.filter(instance__workflow="bench.kept").count())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    deleted = purge_expired(batch_size=BATCH)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    table = [
        ("finished instances / their steps / their events", f"{rows[0]:,} / {rows[1]:,} / {rows[2]:,}"),
        ("set-up (copies made in SQL)", f"{filled:.1f} s"),
        (f"purge_expired(batch_size={BATCH}): deleted", f"{deleted:,} in {seconds:.1f} s = {deleted / seconds:,.0f} instances/s"),
        ("peak memory of this process, before / after", f"{before / 1024:.0f} / {after / 1024:.0f} MB"),
    ]
    width = max(len(name) for name, _ in table)
    print(f"\n| {'purge (bench/purge.py), PostgreSQL':<{width}} | value |\n|{'-' * (width + 2)}|---|")
    for name, value in table:
        print(f"| {name:<{width}} | {value} |")


if __name__ == "__main__":
    main()
