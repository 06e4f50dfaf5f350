"""Reading the step log that tests.workers.workflows writes, and the checks made on it."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Execution:
    """One execution of one step by one process: its start, and its end if it got there."""

    instance: str
    epoch: int
    step: str
    pid: int
    start: float
    end: float | None
    in_transaction: bool


def read(path: Path) -> list[Execution]:
    if not path.exists():
        return []
    runs: dict[tuple, Execution] = {}
    order: list[tuple] = []
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        key = (entry["instance"], entry["epoch"], entry["step"], entry["pid"])
        if entry["event"] == "start":
            runs[key] = Execution(entry["instance"], entry["epoch"], entry["step"], entry["pid"],
                                  entry["at"], None, entry["in_transaction"])
            order.append(key)
        elif key in runs:
            runs[key].end = entry["at"]
    return [runs[key] for key in order]


def starts(executions: list[Execution]) -> Counter:
    """How many times each (instance, step) started."""
    return Counter((e.instance, e.step) for e in executions)


def overlaps(executions: list[Execution], killed_at: float | None = None) -> list[tuple]:
    """Pairs of executions of one instance by different claims whose times overlap.

    An execution without an end was cut short by a kill: it lasted until `killed_at` (or,
    without one, forever, so that any later execution counts as overlapping it).
    """
    by_instance: dict[str, list[Execution]] = defaultdict(list)
    for execution in executions:
        by_instance[execution.instance].append(execution)
    found = []
    for runs in by_instance.values():
        runs.sort(key=lambda e: e.start)
        for i, first in enumerate(runs):
            first_end = first.end if first.end is not None else (killed_at or float("inf"))
            for second in runs[i + 1:]:
                if (second.pid, second.epoch) == (first.pid, first.epoch):
                    continue
                if second.start < first_end:
                    found.append((first, second))
    return found
