"""Generations benchmark: the cost of a resume at the start and at the end of a workflow that
loops a thousand times, with `wf.continue_as_new` and within one history.

    python bench/generations.py                                   # SQLite file
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test python bench/generations.py

Each turn of the loop runs three steps, then sleeps; the resume that ends the sleep replays
the turn's history and goes on to the next turn. With `wf.continue_as_new` that history is
the turn's own (three steps and the sleep), so the resume costs the same in the last turn as
in the first; within one history it is every turn so far. Runs inline, each run executed by
this script (a dispatcher that only collects the runs it is handed), so the times are the
engine's own; the statements of the first and the last such resume are counted too.
BENCH_TURNS sets the number of turns (1000). Prints a table; asserts nothing.
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

from durable_workflows import client, workflow  # noqa: E402
from durable_workflows.dispatch import DISPATCHER_OVERRIDE, BaseDispatcher  # noqa: E402
from durable_workflows.engine import execute, fire_alarm_now  # noqa: E402
from durable_workflows.models import StepRecord, WorkflowInstance  # noqa: E402

TURNS = int(os.environ.get("BENCH_TURNS", 1000))
#: Resumes measured at each end of the loop; the table shows their medians.
EDGE = 20


def work(turn: int, i: int) -> int:
    return turn + i


@workflow("bench.generations")
def generations(wf, turn: int, turns: int) -> int:
    for i in range(3):
        wf.step(f"S{i}", work, turn, i)
    wf.sleep("1h")
    if turn + 1 < turns:
        wf.continue_as_new(turn + 1, turns)
    return turn


@workflow("bench.one_history")
def one_history(wf, turns: int) -> int:
    for turn in range(turns):
        for i in range(3):
            wf.step(f"S{turn}.{i}", work, turn, i)
        wf.sleep("1h")
    return turns


class Collect(BaseDispatcher):
    """Keeps the runs it is handed, for the loop below to execute one at a time."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, str, int]] = []

    def dispatch(self, instance_id: str, mode: str, epoch: int) -> None:
        self.runs.append((instance_id, mode, epoch))


def drain(dispatcher: Collect) -> None:
    while dispatcher.runs:
        execute(*dispatcher.runs.pop(0))


def loop(name: str, *args: int) -> tuple[list[float], list[int], int]:
    """Run the loop to its end; the time and the statements of each resume that ended a
    sleep, and the most step records the instance had."""
    dispatcher = Collect()
    token = DISPATCHER_OVERRIDE.set(dispatcher)
    resumes: list[float] = []
    statements: list[int] = []
    peak = 0
    try:
        handle = client.start(name, *args)
        drain(dispatcher)  # up to the first sleep
        while handle.refresh().state == "paused":
            peak = max(peak, StepRecord.objects.filter(instance_id=handle.instance_id).count())
            fire_alarm_now(handle.instance_id)
            connection.queries_log.clear()  # it keeps the last 9,000 statements only
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                execute(*dispatcher.runs.pop(0))  # the resume that ends the sleep
                resumes.append(time.perf_counter() - started)
            statements.append(len(queries.captured_queries))
            drain(dispatcher)  # the next generation's first run, up to its sleep
    finally:
        DISPATCHER_OVERRIDE.reset(token)
    assert handle.state == "completed", handle.error
    return resumes, statements, peak


def main() -> None:
    call_command("migrate", verbosity=0)
    median = statistics.median
    print(f"\nA loop of {TURNS} turns (three steps and a sleep each), on {connection.vendor}, inline\n")
    print(f"{'history':<22}{'first resumes':>15}{'last resumes':>15}{'last/first':>12}{'statements':>12}"
          f"{'most records':>14}")
    print("-" * 90)
    loop("bench.generations", 0, 5 * EDGE)  # warm-up: statements prepared, code loaded, caches full
    loop("bench.one_history", EDGE)
    for label, name, args in (("wf.continue_as_new", "bench.generations", (0, TURNS)),
                              ("one history", "bench.one_history", (TURNS,))):
        resumes, statements, peak = loop(name, *args)
        # The last window leaves out the final resume, which finishes the workflow instead.
        first, last = median(resumes[:EDGE]), median(resumes[-EDGE - 1:-1])
        counts = f"{median(statements[:EDGE]):g} / {median(statements[-EDGE - 1:-1]):g}"
        print(f"{label:<22}{first * 1000:>12.2f} ms{last * 1000:>12.2f} ms{last / first:>11.2f}x{counts:>12}"
              f"{peak:>14}")
    WorkflowInstance.objects.filter(workflow__startswith="bench.").delete()


if __name__ == "__main__":
    main()
