"""Child workflows: `wf.start_child`, `wf.wait_child` and `wf.run_child`.

Starting a child is recorded like a step whose result is the child's id: a replay returns the
same handle and starts nothing. The child's row is inserted, already Queued, in the same
commit as that record (the run's next write), so either both exist or neither does, and a
parent that starts a thousand children commits them together; they are dispatched once that
commit is done. The child's id is derived from the parent's id and the position. Waiting for a child is a durable wait
(waits.py): the child's final state is read when the wait is reached, and a child that
finishes later wakes its waiting parent itself (instances.finished).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import serialization
from ..exceptions import ChildWorkflowFailed, StoreFault, WorkflowCancelled, WorkflowIdConflict
from ..models import AlarmReason, StepKind, StepState, WorkflowInstance
from ..registry import get_definition
from ..states import State, as_state
from . import observe
from .cursor import Cursor
from .events import EventBuffer
from .faults import engine_io
from .forks import lineage
from .instances import enqueue, existing
from .lanes import Slot, branch_data
from .lifecycle import check_id, conceive, insert_txn
from .waits import Wait, complete_wait, fail_wait, new_wait, replay_wait

if TYPE_CHECKING:
    from .context import WorkflowContext

logger = logging.getLogger("durable_workflows")


@dataclass(frozen=True)
class ChildHandle:
    """What `wf.start_child` returns: the child's id, for `wf.wait_child` (or the client)."""

    instance_id: str

    def __str__(self) -> str:
        return self.instance_id


def child_id(parent_id: str, position: int, branch: str = "") -> str:
    """The id of the child started at `position` (of `branch`): readable, and at most 255
    characters. A branch's part has colons, which no position of the function's own has,
    so that a grandchild's id never equals a child's."""
    where = f"{branch}.{position}" if branch else str(position)
    candidate = f"{parent_id}.{where}"
    if len(candidate) <= 255:
        return candidate
    digest = hashlib.sha256(parent_id.encode()).hexdigest()[:32]
    return f"{parent_id[:200]}~{digest}.{where}"


def start_at(wf: WorkflowContext, slot: Slot, workflow: Any, args: tuple[Any, ...],
             kwargs: dict[str, Any], instance_id: str | None) -> ChildHandle:
    definition = get_definition(workflow)  # UnknownWorkflow: the workflow's, nothing stored
    cursor = Cursor(wf, slot)
    record = cursor.replay(definition.name, StepKind.START_CHILD)
    if record is not None and record.state == StepState.COMPLETED:
        return ChildHandle(serialization.loads(record.result))
    cursor.stage()
    check_id(instance_id)
    wanted = instance_id or child_id(wf.instance_id, slot.position, slot.branch)
    checkpoint = cursor.checkpoint
    found = None
    if wanted not in checkpoint.children:
        if instance_id is not None:  # a derived id is checked with the insert (children_rows.py)
            with engine_io():
                found = existing(wanted, definition)
        if found is None:
            # Inserted, Queued, with the run's next write (and dispatched once it commits):
            # a crash before that leaves neither the child nor the record of its start.
            checkpoint.start_child(conceive(definition, args, kwargs, wanted, state=State.QUEUED,
                                            parent_id=wf.instance_id, parent_position=slot.position))
        elif found.parent_id != wf.instance_id:
            raise WorkflowIdConflict(f"instance {wanted!r} already exists and is not a child of {wf.instance_id!r}")
    record = new_wait(cursor, definition.name, StepKind.START_CHILD, state=StepState.COMPLETED,
                      result=serialization.dumps(wanted, "a child id"), attempts=1)
    record.finished_at = record.started_at
    cursor.keep(record)
    cursor.events.add("child.started", slot.position, name=definition.name, child=wanted, **branch_data(slot.branch))
    if checkpoint.children and cursor.concurrent:
        checkpoint.save()  # other branches run on: the child must not wait for their next write
    if found is not None and found.state == State.PENDING:
        # A child that an older release created and did not queue (a crash) is queued now.
        try:
            with engine_io():
                enqueue(found)
        except StoreFault:
            raise
        except Exception:
            # The broker refused the task. The child is Queued, so recover() sends it again;
            # the workflow must not see the broker's error (nor take another branch for it).
            logger.warning("durable_workflows: could not dispatch child %s; recovery will", wanted,
                           exc_info=True, extra=observe.about(wanted, definition.name))
    return ChildHandle(wanted)


def wait_at(wf: WorkflowContext, slot: Slot, child: ChildHandle | str) -> Any:
    wanted = child.instance_id if isinstance(child, ChildHandle) else child
    if not isinstance(wanted, str):
        raise TypeError(f"wait_child needs a ChildHandle or an instance id, got {child!r}")
    cursor = Cursor(wf, slot)
    record, outcome = replay_wait(cursor, wanted, StepKind.CHILD)
    if outcome.returns:
        return outcome.value
    cursor.stage(record)
    row = _child_row(cursor, wanted)
    # A fork (forks.py) may wait for the children its copied records started.
    if row is None or (row.parent_id != wf.instance_id and row.parent_id not in _lineage(cursor)):
        raise ValueError(f"instance {wanted!r} is not a child of {wf.instance_id!r}; wait_child waits only for this instance's children")
    if record is None:
        record = new_wait(cursor, wanted, StepKind.CHILD, state=StepState.AWAITING)
    state = as_state(row.state)
    if state == State.COMPLETED:
        return complete_wait(cursor, record, row.result)
    if state in (State.FAILED, State.CANCELLED):
        fail_wait(cursor, record, _child_error(row))
    started = "child.waiting" if record._state.adding else None
    cursor.suspend(Wait(record, AlarmReason.CHILD, started, ready=lambda: _finished(wanted)))


def _child_row(cursor: Cursor, wanted: str) -> WorkflowInstance | None:
    """The child's row. The children a run has seen finished are read once per run, all
    together, so that a parent waiting for many replays them with one query."""
    starting = cursor.checkpoint.children.get(wanted)
    if starting is not None:
        return starting  # started by this run, inserted with its next write
    finished = cursor.run.finished_children
    with engine_io():
        if finished is None:
            rows = WorkflowInstance.objects.filter(parent_id=cursor.instance_id, state__in=[
                State.COMPLETED, State.FAILED, State.CANCELLED]).only(*_CHILD_FIELDS)
            finished = cursor.run.finished_children = {r.pk: r for r in rows}
        if wanted in finished:
            return finished[wanted]
        return WorkflowInstance.objects.filter(pk=wanted).only(*_CHILD_FIELDS).first()


_CHILD_FIELDS = ("id", "state", "result", "error_type", "error_message", "error_traceback",
                 "cancel_reason", "parent_id")


def _lineage(cursor: Cursor) -> list[str]:
    run = cursor.run
    if run.instance.forked_from is None:
        return [cursor.instance_id]
    with engine_io():
        return lineage(run.instance)


def _finished(wanted: str) -> bool:
    return WorkflowInstance.objects.filter(
        pk=wanted, state__in=[State.COMPLETED, State.FAILED, State.CANCELLED]).exists()


def _child_error(row: WorkflowInstance) -> BaseException:
    if as_state(row.state) == State.CANCELLED:
        return WorkflowCancelled(
            f"child workflow {row.pk!r} was cancelled" + (f": {row.cancel_reason}" if row.cancel_reason else ""))
    return ChildWorkflowFailed(f"child workflow {row.pk!r} failed: {row.error_type}: {row.error_message}",
                               row.pk, row.error or {})


def insert_children_txn(children: list[WorkflowInstance], buffers: list[EventBuffer]) -> set[str]:
    """Insert the children a run started, and their lifecycle rows, inside the run's
    transaction. Returns the ids found taken, which are left as they are: a child an older
    release created before the record of its start (it is queued if it was left Pending),
    or an instance made by hand under the id the parent derives, which the parent's
    `wait_child` then refuses as not its child."""
    taken = set(WorkflowInstance.objects.filter(pk__in=[c.pk for c in children]).values_list("pk", flat=True))
    insert_txn([c for c in children if c.pk not in taken], [b for b in buffers if b.instance_id not in taken])
    return taken
