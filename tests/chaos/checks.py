"""What a chaos run proves, read from the step log and the faults it recorded.

Every step body appends a start and an end line (tests/workers/steplog.py). A step that ran
more than once is a re-run, and each re-run must be explained by a fault: the execution
before it either never logged its end (a fault killed it mid-step), or it overlaps the
fault's window, from WINDOW seconds before the fault struck until WINDOW seconds after it
was over. The WINDOW before covers a step that ended but whose checkpoint commit the fault
cut off; the rest covers a database outage, during which a finished step's checkpoint
fails (and its run is recovered), and the moments after it, when a run that connected
before the crash finds its connection dead.

Each re-run is attributed to one fault: the kill that took the process it ran in (or the
guard kill that orphaned it), or else the nearest fault whose window it overlaps.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import replace
from itertools import pairwise
from typing import Any

from tests.chaos.faults import Fault
from tests.workers import steplog
from tests.workers.steplog import Execution

WINDOW = 2.0


def _explaining(earlier: Execution, faults: list[Fault]) -> int | None:
    """Index of the fault that explains a re-run after `earlier`, or None."""
    if earlier.end is None:
        # A killed process's step started before the kill; an orphaned worker may start one
        # more between its guard's death and its own exit (the fault's end).
        killers = [i for i, f in enumerate(faults)
                   if (earlier.pid in f.killed and f.at >= earlier.start)
                   or (earlier.pid in f.orphaned and f.over >= earlier.start)]
        return killers[0] if killers else -1  # -1: cut short, but not by a fault of ours
    near = [i for i, f in enumerate(faults)
            if earlier.end >= f.at - WINDOW and earlier.start <= f.over + WINDOW]
    if not near:
        return None
    return min(near, key=lambda i: abs(faults[i].at - earlier.end))


def _kill_time(execution: Execution, faults: list[Fault]) -> Execution:
    """An execution without an end lasted until the fault that killed its process, or, for
    a worker orphaned by a guard kill, until it had exited (the fault's end)."""
    if execution.end is not None:
        return execution
    for fault in faults:
        if execution.pid in fault.killed and fault.at >= execution.start:
            return replace(execution, end=fault.at)
        if execution.pid in fault.orphaned and fault.over >= execution.start:
            return replace(execution, end=fault.over)
    return execution


def analyse(executions: list[Execution], faults: list[Fault], instance_ids: list[str],
            steps: list[str]) -> dict[str, Any]:
    by_step: dict[tuple[str, str], list[Execution]] = defaultdict(list)
    for execution in executions:
        by_step[(execution.instance, execution.step)].append(execution)
    reruns = 0
    per_fault: Counter = Counter()
    delays: dict[int, list[float]] = defaultdict(list)
    unexplained: list[dict[str, Any]] = []
    not_ours = 0
    for (instance, step), runs in by_step.items():
        runs.sort(key=lambda e: e.start)
        for earlier, later in pairwise(runs):
            reruns += 1
            index = _explaining(earlier, faults)
            if index is None:
                unexplained.append({"instance": instance, "step": step, "pid": earlier.pid,
                                    "start": earlier.start, "end": earlier.end,
                                    "rerun_start": later.start, "rerun_pid": later.pid})
            elif index == -1:
                not_ours += 1
            else:
                per_fault[index] += 1
                delays[index].append(later.start - faults[index].at)
    missing = [(pk, step) for pk in instance_ids for step in steps
               if not any(e.end is not None for e in by_step.get((pk, step), []))]
    overlaps = steplog.overlaps([_kill_time(e, faults) for e in executions])
    return {
        "executions": len(executions),
        "reruns": reruns,
        "reruns_per_fault": [per_fault.get(i, 0) for i in range(len(faults))],
        "rerun_delay_per_fault": [max(delays[i]) if delays[i] else None for i in range(len(faults))],
        "reruns_cut_short_not_by_a_fault": not_ours,
        "unexplained_reruns": unexplained,
        "missing_steps": missing,
        "overlaps": [[a.instance, a.step, a.pid, b.step, b.pid] for a, b in overlaps],
    }


def steps_done_before(executions: list[Execution], moment: float) -> int:
    """Distinct (instance, step) pairs whose execution had logged its end by `moment`."""
    return len({(e.instance, e.step) for e in executions if e.end is not None and e.end <= moment})


def clean_rate(executions: list[Execution], until: float) -> float | None:
    """Steps finished per second before the first fault: from the first step's start to
    `until`, distinct steps ended over the time taken. None without enough data."""
    if not executions:
        return None
    first = min(e.start for e in executions)
    done = steps_done_before(executions, until)
    return done / (until - first) if until > first and done >= 10 else None


def step_seconds(executions: list[Execution]) -> float | None:
    """Median wall time of one step body, as measured from the step log."""
    lengths = [e.end - e.start for e in executions if e.end is not None]
    return statistics.median(lengths) if lengths else None
