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


def bare_insert_commit(n: int) -> float:
    """Seconds per INSERT + COMMIT of one small row, autocommit, same connection."""
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS dw_bench_bare")
        cursor.execute("CREATE TABLE dw_bench_bare (id varchar(64) PRIMARY KEY, payload text)")
        started = time.perf_counter()
        for i in range(n):
            cursor.execute("INSERT INTO dw_bench_bare (id, payload) VALUES (%s, %s)", [f"row-{i}", "1"])
        elapsed = time.perf_counter() - started
        cursor.execute("DROP TABLE dw_bench_bare")
    return elapsed / n


def per_step(n: int) -> tuple[float, int]:
    """Seconds per new step in a run of n steps, and queries per step."""
    handle = client.start("bench.steps", 0)  # warm-up: the run's fixed costs, measured apart
    started = time.perf_counter()
    handle = client.start("bench.steps", 0)
    fixed = time.perf_counter() - started
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        handle = client.start("bench.steps", n)
        elapsed = time.perf_counter() - started
    assert handle.state == "completed"
    fixed_queries = 0
    with CaptureQueriesContext(connection) as zero:
        client.start("bench.steps", 0)
    fixed_queries = len(zero.captured_queries)
    return (elapsed - fixed) / n, (len(queries.captured_queries) - fixed_queries) / n


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
    bare = statistics.median(bare_insert_commit(STEPS) for _ in range(ROUNDS))
    step_runs = [per_step(STEPS) for _ in range(ROUNDS)]
    step = statistics.median(s for s, _ in step_runs)
    step_queries = step_runs[0][1]
    print(f"\nEngine benchmark on {vendor} ({STEPS} steps a run, median of {ROUNDS} runs)\n")
    print(f"{'measure':<42}{'value':>14}")
    print("-" * 56)
    print(f"{'bare INSERT+COMMIT':<42}{bare * 1000:>11.3f} ms")
    print(f"{'one new step (checkpoint)':<42}{step * 1000:>11.3f} ms")
    print(f"{'queries per new step':<42}{step_queries:>14.1f}")
    print(f"{'step / bare ratio':<42}{step / bare:>13.2f}x")
    print()
    print(f"{'replay of cached steps':<24}{'time':>14}{'queries':>10}")
    print("-" * 48)
    for n in (10, 100, 1000):
        seconds, queries = replay_cost(n)
        print(f"{n:<24}{seconds * 1000:>11.2f} ms{queries:>10}")
    WorkflowInstance.objects.filter(workflow__startswith="bench.").delete()


if __name__ == "__main__":
    main()
