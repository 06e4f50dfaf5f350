"""Replay-check benchmark: `check_replay()` over many unfinished instances.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test python bench/check.py
    python bench/check.py                                    # SQLite file

Creates BENCH_INSTANCES (default 10,000) paused instances of a 10-step workflow (10 finished
steps and a sleep each, inserted directly), then times the check and reports its peak Python
memory at two sizes: flat means the instances are streamed, not loaded at once. Prints a
table; asserts nothing.
"""

from __future__ import annotations

import os
import sys
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from durable_workflows import check_replay, workflow  # noqa: E402
from durable_workflows.models import StepRecord, WorkflowInstance  # noqa: E402
from durable_workflows.serialization import dumps, encode_input  # noqa: E402

INSTANCES = int(os.environ.get("BENCH_INSTANCES", 10_000))
STEPS = 10


def identity(value):
    return value


@workflow("bench.ten_steps")
def ten_steps(wf, n: int):
    total = 0
    for i in range(STEPS):
        total += wf.step(f"Step {i}", identity, i)
    wf.sleep("1h")
    return total


def create(count: int) -> None:
    """`count` instances paused at their sleep, as ten_steps leaves them."""
    WorkflowInstance.objects.filter(workflow="bench.ten_steps").delete()
    now = timezone.now()
    for start in range(0, count, 1000):
        ids = [f"check-{i:06d}" for i in range(start, min(start + 1000, count))]
        WorkflowInstance.objects.bulk_create(
            WorkflowInstance(id=pk, workflow="bench.ten_steps", input=encode_input([0], {}), state="paused",
                             epoch=2, run_count=1)
            for pk in ids)
        records = []
        for pk in ids:
            records += [StepRecord(instance_id=pk, position=i, name=f"Step {i}", kind="step", state="completed",
                                   result=dumps(i, "a result"), attempts=1, started_at=now, finished_at=now)
                        for i in range(STEPS)]
            records.append(StepRecord(instance_id=pk, position=STEPS, name="sleep", kind="sleep", state="sleeping",
                                      started_at=now, wake_at=now + timedelta(hours=1)))
        StepRecord.objects.bulk_create(records)


def measure(count: int) -> tuple[float, int]:
    create(count)
    tracemalloc.start()
    started = time.perf_counter()
    problems = check_replay("bench.ten_steps")
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert problems == [], problems[:3]
    return elapsed, peak


def main() -> None:
    call_command("migrate", verbosity=0)
    print(f"\nReplay check of paused {STEPS}-step instances on {connection.vendor}\n")
    print(f"{'instances':>10}{'seconds':>10}{'instances/s':>14}{'peak memory':>14}")
    print("-" * 48)
    for count in (INSTANCES // 5, INSTANCES):
        # Timed without tracemalloc's overhead; the peak from a second, traced run.
        create(count)
        started = time.perf_counter()
        assert check_replay("bench.ten_steps") == []
        elapsed = time.perf_counter() - started
        _, peak = measure(count)
        print(f"{count:>10}{elapsed:>10.2f}{count / elapsed:>14.0f}{peak / 2**20:>11.1f} MB")
    WorkflowInstance.objects.filter(workflow="bench.ten_steps").delete()


if __name__ == "__main__":
    main()
