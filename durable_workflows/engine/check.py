"""The replay check: would the code installed now replay every unfinished instance?

Each instance's function runs against its recorded history exactly as a resume would, with
one difference: a lane stops at its first new work (a step, wait or child without a
finished record), so no step runs and nothing is started. What a real replay would fail on,
a `NonDeterminismError` (another call where the history has something else), a failure that
cannot be rebuilt (`ReplayError`), an unknown workflow, arguments the function no longer
takes, or any error the changed code raises on the recorded results, is reported.

Nothing is written: each batch is checked inside a transaction that is rolled back (read-only
on PostgreSQL, so a write would fail rather than be undone). Instances are read in batches,
with the records of a batch in one query, so that memory stays flat however many there are.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .. import database
from ..exceptions import ContinueAsNew, LeaseLost, StoreFault, Suspend, UnknownWorkflow
from ..models import StepRecord, WorkflowInstance
from ..registry import get_definition
from ..states import TERMINAL
from . import store as stores
from .checkpoint import Checkpoint
from .events import EventBuffer
from .executor import run_function
from .lease import Lease
from .runs import Run
from .store import REPLAY_DEFERRED

BATCH = 500


@dataclass(frozen=True)
class ReplayProblem:
    """An unfinished instance whose replay would fail under the code installed now."""

    #: The instance that would fail, and its workflow's name.
    instance_id: str
    workflow: str
    #: The exception its replay would raise ("NonDeterminismError", "UnknownWorkflow", a
    #: `TypeError` for arguments the function no longer takes...), and its message.
    error_type: str
    message: str
    #: Where it would fail (NonDeterminismError): the position, its branch, and both calls.
    position: int | None = None
    branch: str = ""
    recorded: str = ""
    called: str = ""


@dataclass
class CheckReport:
    checked: int = 0
    workflows: set[str] = field(default_factory=set)
    problems: list[ReplayProblem] = field(default_factory=list)

    def summary(self) -> str:
        kinds = len(self.workflows)
        return (f"checked {self.checked} instance{'s' if self.checked != 1 else ''} of {kinds} "
                f"workflow{'s' if kinds != 1 else ''}: {len(self.problems)} would fail")


def check_replay(workflow: Any = None) -> list[ReplayProblem]:
    """The unfinished instances (of `workflow`, or of all) whose replay would fail under the
    code installed now; empty when every one would replay. Runs no step, writes nothing."""
    return run_check(workflow).problems


def run_check(workflow: Any = None, on_problem: Callable[[ReplayProblem], None] | None = None) -> CheckReport:
    name = _workflow_name(workflow) if workflow is not None else None
    report = CheckReport()
    db = database.connection()
    outermost = not db.in_atomic_block
    for batch in _batches(name):
        with database.atomic():
            if db.vendor == "postgresql" and outermost:
                with db.cursor() as cursor:
                    cursor.execute("SET TRANSACTION READ ONLY")
            records = _records_of([instance.pk for instance in batch])
            for instance in batch:
                report.checked += 1
                report.workflows.add(instance.workflow)
                problem = check_instance(instance, records.get(instance.pk, {}))
                if problem is not None:
                    report.problems.append(problem)
                    if on_problem is not None:
                        on_problem(problem)
            database.set_rollback(True)
    return report


def _workflow_name(workflow: Any) -> str:
    """The name to check. A workflow the code no longer has is checked all the same while
    unfinished instances of it exist (each would fail, and is listed); a name nothing has is
    `UnknownWorkflow`, so that a mistyped name does not pass as "nothing would fail"."""
    try:
        return get_definition(workflow).name
    except UnknownWorkflow:
        if isinstance(workflow, str) and WorkflowInstance.objects.filter(workflow=workflow).exclude(
                state__in=TERMINAL).exists():
            return workflow
        raise


def check_instance(instance: WorkflowInstance, records: dict[tuple[str, int], StepRecord]) -> ReplayProblem | None:
    try:
        definition = get_definition(instance.workflow)
    except UnknownWorkflow as error:
        return _problem(instance, error)
    lease = Lease(instance.pk, instance.epoch, "replay-check", store=stores.current())
    run = Run(instance, "check", lease, Checkpoint(instance, lease, EventBuffer(instance.pk, instance.workflow)))
    wf, returned, value = run_function(definition, run, records, checking=True)
    if wf._halted is not None:
        raise wf._halted
    if wf._fatal is not None:
        return _problem(instance, wf._fatal)
    if returned or isinstance(value, (Suspend, ContinueAsNew)):
        return None  # it replayed to its end, or to the first new work of every lane, or continued
    if isinstance(value, (LeaseLost, StoreFault)) or not isinstance(value, Exception):
        raise value
    return _problem(instance, value)


def _problem(instance: WorkflowInstance, error: BaseException) -> ReplayProblem:
    return ReplayProblem(
        instance_id=instance.pk, workflow=instance.workflow, error_type=type(error).__name__,
        message=str(error), position=getattr(error, "position", None), branch=getattr(error, "branch", ""),
        recorded=getattr(error, "recorded", ""), called=getattr(error, "called", ""),
    )


def _batches(workflow: str | None) -> Iterator[list[WorkflowInstance]]:
    """The unfinished instances, BATCH at a time, in id order (keyset pages: a later page
    costs what the first does, and instances finishing meanwhile shift nothing)."""
    rows = WorkflowInstance.objects.exclude(state__in=TERMINAL).order_by("pk")
    if workflow is not None:
        rows = rows.filter(workflow=workflow)
    last = None
    while True:
        page = rows if last is None else rows.filter(pk__gt=last)
        batch = list(page[:BATCH])
        if not batch:
            return
        yield batch
        last = batch[-1].pk


def _records_of(ids: list[str]) -> dict[str, dict[tuple[str, int], StepRecord]]:
    grouped: dict[str, dict[tuple[str, int], StepRecord]] = defaultdict(dict)
    for record in StepRecord.objects.filter(instance_id__in=ids).defer(*REPLAY_DEFERRED).order_by():
        grouped[record.instance_id][record.slot] = record
    return grouped
