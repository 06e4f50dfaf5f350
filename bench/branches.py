"""Parallel-branch benchmark: what `wf.parallel` costs over the same steps in sequence.

    python bench/branches.py                                   # SQLite file
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test python bench/branches.py

Runs inline (no workers), so the numbers are the engine's own. Each round runs the sequence
and the branches back to back, so the ratio holds up on a noisy machine better than the times.
Prints a table; asserts nothing.
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

from durable_workflows import client, workflow  # noqa: E402
from durable_workflows.models import WorkflowInstance  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", 30))


def work(seconds: float, i: int) -> int:
    if seconds:
        time.sleep(seconds)
    return i


@workflow("bench.sequence")
def sequence(wf, seconds: float) -> list:
    return [wf.step(f"S{i}", work, seconds, i) for i in range(3)]


@workflow("bench.parallel")
def parallel(wf, seconds: float) -> list:
    return wf.parallel(*(lambda i=i: wf.step(f"S{i}", work, seconds, i) for i in range(3)))


@workflow("bench.parallel_async")
async def parallel_async(wf, seconds: float) -> list:
    return await wf.parallel(*(lambda i=i: wf.step(f"S{i}", work, seconds, i) for i in range(3)))


def timed(name: str, seconds: float) -> float:
    started = time.perf_counter()
    handle = client.start(name, seconds)
    elapsed = time.perf_counter() - started
    assert handle.state == "completed", handle.error
    return elapsed


def compare(seconds: float, rounds: int) -> dict[str, list[float]]:
    names = ("bench.sequence", "bench.parallel", "bench.parallel_async")
    for name in names:
        timed(name, 0)  # warm-up: statements prepared, threads' code loaded
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(rounds):
        for name in names:
            times[name].append(timed(name, seconds))
    return times


def main() -> None:
    call_command("migrate", verbosity=0)
    median = statistics.median
    print(f"\nThree steps in sequence and as three branches, on {connection.vendor}, inline\n")
    print(f"{'steps':<22}{'sequence':>12}{'wf.parallel':>14}{'ratio':>8}{'async wf.parallel':>20}{'ratio':>8}")
    print("-" * 84)
    for seconds, rounds in ((0.0, ROUNDS), (1.0, 3)):
        times = compare(seconds, rounds)
        seq, par, par_async = (times[name] for name in ("bench.sequence", "bench.parallel", "bench.parallel_async"))
        ratio = median(p / s for p, s in zip(par, seq, strict=True))
        ratio_async = median(p / s for p, s in zip(par_async, seq, strict=True))
        label = "instant" if not seconds else f"{seconds:g} s each"
        print(f"{label:<22}{median(seq) * 1000:>9.1f} ms{median(par) * 1000:>11.1f} ms{ratio:>7.2f}x"
              f"{median(par_async) * 1000:>17.1f} ms{ratio_async:>7.2f}x")
    WorkflowInstance.objects.filter(workflow__startswith="bench.").delete()


if __name__ == "__main__":
    main()
