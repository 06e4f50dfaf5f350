"""Forks: a new instance that replays the first part of another's history and runs the rest
under the code installed now, to repair an instance that failed (after the fix is deployed).

The fork gets the same workflow and input, and copies of the original's records before a
position of the workflow function (`from_position`); a parallel branch's records count at
the position of the `wf.parallel` that started them. Its first run replays the copies, so
those steps do not run again, and goes on from there. The original is left as it is.

Only a finished instance is forked: two live instances replaying one history would both run
its next steps. A fork may wait for the children its copied records started, however many
forks deep (`lineage`), and a child that finishes wakes whoever waits for it, forks included
(instances.finished).
"""

from __future__ import annotations

from django.db import IntegrityError

from .. import database, serialization
from ..dispatch import on_commit
from ..exceptions import InvalidTransition, WorkflowIdConflict, WorkflowNotFound
from ..models import StepRecord, StepState, WorkflowInstance
from ..registry import get_definition
from ..serialization import decode_input
from ..states import TERMINAL, as_state
from . import clock
from .instances import enqueue
from .lifecycle import conceive, insert_txn

#: Columns of a record that its copy does not take: its own key and instance.
_NOT_COPIED = {"id", "instance"}


def fork(instance_id: str, *, from_position: int | None = None, new_id: str | None = None) -> WorkflowInstance:
    original = WorkflowInstance.objects.filter(pk=instance_id).first()
    if original is None:
        raise WorkflowNotFound(f"no workflow instance with id {instance_id!r}")
    state = as_state(original.state)
    if state not in TERMINAL:
        raise InvalidTransition(f"cannot fork instance {instance_id!r}: it is {state.label}, not finished; "
                                "cancel it first")
    definition = get_definition(original.workflow)  # UnknownWorkflow: nothing could run it
    args, kwargs = decode_input(original.input)
    # The code deployed now may take other arguments: a fork it could not call would only fail.
    fork = conceive(definition, args, kwargs, new_id, now=clock.now(), forked_from=original.pk,
                    stored_input=serialization.resealed(original.input), priority=original.priority)
    records = list(StepRecord.objects.filter(instance_id=original.pk))
    for record in records:  # copies under the newest key, which a key rotation may have passed
        record.result = serialization.resealed(record.result)
    end = max((_top(r) for r in records), default=-1) + 1
    if from_position is None:
        from_position = min((_top(r) for r in records if r.state != StepState.COMPLETED), default=end)
    elif isinstance(from_position, bool) or not isinstance(from_position, int):
        raise TypeError(f"from_position must be a whole number, got {from_position!r}")
    elif not 0 <= from_position <= end:
        raise ValueError(f"from_position must be between 0 and {end} (the end of the recorded history "
                         f"of {instance_id!r}), got {from_position}")
    if new_id is not None and WorkflowInstance.objects.filter(pk=new_id).exists():
        raise WorkflowIdConflict(f"instance {new_id!r} already exists")
    fields = [f.name for f in StepRecord._meta.concrete_fields if f.name not in _NOT_COPIED]
    try:
        with database.atomic():
            insert_txn([fork], [])
            StepRecord.objects.bulk_create(
                StepRecord(instance=fork, **{name: getattr(r, name) for name in fields})
                for r in records if _top(r) < from_position
            )
    except IntegrityError:
        fork._state.adding = True
        if new_id is not None and WorkflowInstance.objects.filter(pk=new_id).exists():
            raise WorkflowIdConflict(f"instance {new_id!r} already exists") from None
        raise
    on_commit(lambda: enqueue(fork))
    return fork


def _top(record: StepRecord) -> int:
    """The position in the workflow function that the record belongs to."""
    return int(record.branch.split(":", 1)[0]) if record.branch else record.position



def lineage(instance: WorkflowInstance, limit: int = 100) -> list[str]:
    """The instance's id and those it was forked from, nearest first: a fork's copied records
    may have started children of any of them."""
    ids = [instance.pk]
    source = instance.forked_from
    while source and source not in ids and len(ids) < limit:
        ids.append(source)
        source = WorkflowInstance.objects.filter(pk=source).values_list("forked_from", flat=True).first()
    return ids
