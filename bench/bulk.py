"""Bulk action benchmark: how fast `client.bulk("cancel", ...)` cancels Queued instances, and
that its memory does not grow with their number.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test python bench/bulk.py   # BENCH_BULK=100000

For 10,000 and then BENCH_BULK (default 100,000) instances: fills the database with that many
Queued instances and no worker (copies of one, made in SQL so that the set-up takes seconds),
times one `client.bulk("cancel", state="queued", workflow=...)` that cancels them all, then
fills again and cancels once more under tracemalloc for the peak of Python's allocations
during the call. Prints a table; asserts nothing. PostgreSQL only.
"""

from __future__ import annotations

import os
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from bench.tables import markdown  # noqa: E402
from durable_workflows import bulk, client, workflow  # noqa: E402
from durable_workflows.engine.instances import create  # noqa: E402
from durable_workflows.models import Event, WorkflowInstance  # noqa: E402

N = int(os.environ.get("BENCH_BULK", "100000"))
NAME = "bench.bulk"


@workflow(NAME)
def waits(wf, n: int):
    wf.sleep("1h")
    return n


def clear() -> None:
    with connection.cursor() as cursor:
        for model in (Event, WorkflowInstance):
            key = "id" if model is WorkflowInstance else "instance_id"
            cursor.execute(f"DELETE FROM {model._meta.db_table} WHERE {key} LIKE 'bench-bulk-%%'")


def fill(n: int) -> None:
    """n Queued copies of one instance, as if started with no worker to take them."""
    clear()
    template, _ = create(NAME, (0,), {}, "bench-bulk-template")
    table = WorkflowInstance._meta.db_table
    names = [f.column for f in WorkflowInstance._meta.concrete_fields]
    replace = {"id": "'bench-bulk-' || g", "state": "'queued'"}
    values = ", ".join(replace.get(name, f"t.{connection.ops.quote_name(name)}") for name in names)
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} ({', '.join(map(connection.ops.quote_name, names))}) "
                       f"SELECT {values} FROM {table} t, generate_series(1, %s) g WHERE t.id = %s", [n, template.pk])
        cursor.execute(f"DELETE FROM {table} WHERE id = %s", [template.pk])
        cursor.execute(f"VACUUM ANALYZE {table}")


def cancel_all() -> tuple[int, float]:
    started = time.perf_counter()
    count = client.bulk("cancel", state="queued", workflow=NAME)
    return count, time.perf_counter() - started


def measure(n: int) -> list[str]:
    fill(n)
    count, seconds = cancel_all()
    assert WorkflowInstance.objects.filter(workflow=NAME, state="queued").count() == 0
    fill(n)
    tracemalloc.start()
    traced_count, traced_seconds = cancel_all()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return [f"{n:,}", f"{count:,}", f"{seconds:.2f} s", f"{count / seconds:,.0f}",
            f"{peak / 1024 / 1024:.1f} MB", f"{traced_seconds:.2f} s"]


def main() -> None:
    if connection.vendor != "postgresql":
        raise SystemExit("bench/bulk.py needs DATABASE_URL pointing at PostgreSQL")
    call_command("migrate", verbosity=0)
    rows = [measure(n) for n in sorted({10_000, N})]
    clear()
    print(f"\nclient.bulk(\"cancel\", state=\"queued\", workflow=...) on PostgreSQL, chunks of {bulk.CHUNK_SIZE}\n")
    print(markdown(["Queued instances", "cancelled", "time", "instances/s",
                    "peak Python memory (tracemalloc)", "time under tracemalloc"], rows))


if __name__ == "__main__":
    main()
