"""Engine benchmark: per-step checkpoint cost against a bare INSERT+COMMIT, and replay cost.

    python bench/engine.py                                   # SQLite file
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test python bench/engine.py

Prints a table; asserts nothing. The bare INSERT+COMMIT runs on the same connection in the
same run, so the ratio is meaningful whatever the machine.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from durable_workflows import client, workflow  # noqa: E402
from durable_workflows.engine import execute  # noqa: E402
from durable_workflows.models import Alarm, WorkflowInstance  # noqa: E402

STEPS = int(os.environ.get("BENCH_STEPS", 200))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 5))


def identity(value):
    return value


@workflow("bench.steps")
def many_steps(wf, n: int):
    for i in range(n):
        wf.step("Step", identity, i)
    return n


@workflow("bench.replay")
def replay(wf, n: int):
    for i in range(n):
        wf.step("Step", identity, i)
    wf.sleep("1h")


BARE_TABLE = "CREATE TABLE dw_bench_bare (id varchar(64) PRIMARY KEY, payload text)"
BARE_INSERT = "INSERT INTO dw_bench_bare (id, payload) VALUES (%s, %s)"


def bare_insert_commit(n: int) -> float:
    """Seconds per INSERT + COMMIT of one small row, autocommit, through Django's cursor."""
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS dw_bench_bare")
        cursor.execute(BARE_TABLE)
        started = time.perf_counter()
        for i in range(n):
            cursor.execute(BARE_INSERT, [f"row-{i}", "1"])
        elapsed = time.perf_counter() - started
        cursor.execute("DROP TABLE dw_bench_bare")
    return elapsed / n


def bare_prepared(n: int) -> float | None:
    """The same INSERT as a server-side prepared statement (PostgreSQL only): the cheapest
    INSERT+COMMIT psycopg can send, for comparison with the checkpoint, which is prepared too."""
    if connection.vendor != "postgresql":
        return None
    import psycopg

    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS dw_bench_bare")
        cursor.execute(BARE_TABLE)
    raw = connection.connection
    previous, raw.prepare_threshold = raw.prepare_threshold, 0
    try:
        with psycopg.Cursor(raw) as cursor:
            started = time.perf_counter()
            for i in range(n):
                cursor.execute(BARE_INSERT, [f"row-{i}", "1"])
            elapsed = time.perf_counter() - started
    finally:
        raw.prepare_threshold = previous
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE dw_bench_bare")
    return elapsed / n


def per_step(n: int) -> float:
    """Seconds per new step in a run of n steps.

    Timed without capturing queries: a captured query goes through Django's debug cursor, and
    the engine then renders each prepared statement's text for the log, which would be timed
    too. The run's fixed costs (start, claim, finish) are measured on a run of no steps and
    taken off.
    """
    client.start("bench.steps", 0)  # warm-up: the statements get prepared
    fixed = []
    for _ in range(3):
        started = time.perf_counter()
        client.start("bench.steps", 0)
        fixed.append(time.perf_counter() - started)
    started = time.perf_counter()
    handle = client.start("bench.steps", n)
    elapsed = time.perf_counter() - started
    assert handle.state == "completed"
    return (elapsed - statistics.median(fixed)) / n


def queries_per_step(n: int) -> float:
    """Statements sent for each new step of a run of n steps (the run's fixed ones taken off)."""
    with CaptureQueriesContext(connection) as zero:
        client.start("bench.steps", 0)
    with CaptureQueriesContext(connection) as queries:
        client.start("bench.steps", n)
    return (len(queries.captured_queries) - len(zero.captured_queries)) / n


def replay_cost(n: int) -> tuple[float, int]:
    """Seconds and queries for one resume that replays n cached steps (then pauses again)."""
    handle = client.start("bench.replay", n)
    assert handle.state == "paused"
    times, counts = [], []
    for _ in range(ROUNDS):
        instance = WorkflowInstance.objects.get(pk=handle.instance_id)
        Alarm.objects.filter(instance_id=instance.pk).update(fire_at=timezone.now())
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            state = execute(instance.pk, "resume", instance.epoch)
            times.append(time.perf_counter() - started)
        assert state == "paused", state
        counts.append(len(queries.captured_queries))
    return statistics.median(times), max(counts)


def main() -> None:
    call_command("migrate", verbosity=0)
    vendor = connection.vendor
    # Interleaved rounds: the bare inserts and the steps of one round see the same disk and
    # the same neighbours, so the ratio holds up on a noisy machine better than the times.
    bares, prepared, steps, ratios, prepared_ratios = [], [], [], [], []
    step_queries = queries_per_step(STEPS)
    for _ in range(ROUNDS):
        bare = bare_insert_commit(STEPS)
        bare_p = bare_prepared(STEPS)
        step = per_step(STEPS)
        bares.append(bare)
        steps.append(step)
        ratios.append(step / bare)
        if bare_p is not None:
            prepared.append(bare_p)
            prepared_ratios.append(step / bare_p)
    median = statistics.median
    print(f"\nEngine benchmark on {vendor} ({STEPS} steps a run, median of {ROUNDS} interleaved runs)\n")
    print(f"{'measure':<46}{'value':>14}")
    print("-" * 60)
    print(f"{'bare INSERT+COMMIT (Django cursor)':<46}{median(bares) * 1000:>11.3f} ms")
    if prepared:
        print(f"{'bare INSERT+COMMIT (prepared)':<46}{median(prepared) * 1000:>11.3f} ms")
    print(f"{'one new step (checkpoint)':<46}{median(steps) * 1000:>11.3f} ms")
    print(f"{'queries per new step':<46}{step_queries:>14.1f}")
    print(f"{'step / bare ratio':<46}{median(ratios):>13.2f}x")
    if prepared_ratios:
        print(f"{'step / prepared bare ratio':<46}{median(prepared_ratios):>13.2f}x")
    print()
    print(f"{'replay of cached steps':<24}{'time':>14}{'queries':>10}")
    print("-" * 48)
    for n in (10, 100, 1000):
        seconds, queries = replay_cost(n)
        print(f"{n:<24}{seconds * 1000:>11.2f} ms{queries:>10}")
    WorkflowInstance.objects.filter(workflow__startswith="bench.").delete()


if __name__ == "__main__":
    main()
