"""An instance after its birth (lifecycle.py): the repeated start that finds it, its move
from Pending to Queued, its cancellation, and what its end owes its family."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import IntegrityError

from .. import database
from ..dispatch import get_dispatcher
from ..exceptions import InvalidTransition, WorkflowIdConflict, WorkflowNotFound
from ..models import Alarm, AlarmReason, StepKind, StepRecord, StepState, WorkflowInstance
from ..registry import WorkflowDefinition, get_definition
from ..states import TERMINAL, State, as_state, transition
from ..text import storable
from . import clock
from .concurrency import slot_freed
from .events import record_events
from .lifecycle import check_id, conceive, insert_txn, queued
from .waits import at_once_here, lock_txn, resume_on_commit, wake_waiting_txn

WorkflowRef = str | Callable[..., Any] | WorkflowDefinition


def findable(instance_id: object) -> bool:
    """Whether an instance could have this id: the check_id rule, so that a lookup of an id
    no instance can have (not text, or with a NUL, which PostgreSQL refuses as a query
    parameter) is "not found" rather than a database error."""
    return isinstance(instance_id, str) and "\x00" not in instance_id


def existing(instance_id: str, definition: WorkflowDefinition) -> WorkflowInstance | None:
    """The instance a repeated start with `instance_id` returns, if there is one; an id
    taken by another workflow is a conflict, never that other instance."""
    instance = WorkflowInstance.objects.filter(pk=instance_id).first()
    if instance is not None and instance.workflow != definition.name:
        raise WorkflowIdConflict(
            f"instance {instance_id!r} already exists for workflow {instance.workflow!r}, "
            f"not {definition.name!r}"
        )
    return instance


def create(workflow: WorkflowRef, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any],
           instance_id: str | None) -> tuple[WorkflowInstance, bool]:
    """Insert the instance, Pending, or return the existing one with that id (idempotent
    start). A repeat is answered before the arguments are checked: it returns what the
    first start stored, whatever it was given this time."""
    definition = get_definition(workflow)
    check_id(instance_id)
    if instance_id is not None:
        found = existing(instance_id, definition)
        if found is not None:
            return found, False
    instance = conceive(definition, args, kwargs, instance_id, now=clock.now())
    try:
        with database.atomic():
            insert_txn([instance], [])
    except IntegrityError:
        instance._state.adding = True
        found = existing(instance_id, definition) if instance_id is not None else None
        if found is None:
            raise
        return found, False
    return instance, True


def enqueue(instance: WorkflowInstance | str) -> None:
    """Move a Pending instance to Queued and hand it to the dispatcher."""
    if isinstance(instance, str):
        found = WorkflowInstance.objects.filter(pk=instance).first()
        if found is None:
            return
        instance = found
    if instance.state != State.PENDING:
        return
    events = queued(instance)
    try:
        with database.atomic():
            transition(instance, State.QUEUED, dispatched_at=clock.now())
            events.write_txn()
    except InvalidTransition:
        return
    events.send()
    get_dispatcher().dispatch(instance.pk, "fresh", instance.epoch)


def cancel_instance(instance_id: str, reason: str = "") -> None:
    """Cancel an instance: Queued or Paused at once, Running (or Pending) at its next step
    boundary, by its own run. Raises `InvalidTransition` for a finished instance and
    `WorkflowNotFound` for an unknown one."""
    reason = storable(reason)
    for _ in range(5):
        instance = WorkflowInstance.objects.filter(pk=instance_id).first()
        if instance is None:
            raise WorkflowNotFound(f"no workflow instance with id {instance_id!r}")
        state = as_state(instance.state)
        if state in TERMINAL:
            raise InvalidTransition(f"cannot cancel instance {instance_id!r}: it is already {state.label}")
        if state in (State.RUNNING, State.PENDING):
            # A cancel ends a hold: the run (or the recovery) that ends it must be let in.
            updated = WorkflowInstance.objects.filter(pk=instance.pk, state=state).update(
                cancel_requested=True, cancel_reason=reason, held=False, updated_at=clock.now()
            )
            if updated:
                return
            continue
        events = record_events(instance.pk, instance.workflow, ("workflow.cancelled", {"reason": reason}))
        try:
            with database.atomic():
                transition(instance, State.CANCELLED, cancel_requested=True, cancel_reason=reason,
                           held=False, family_pending=has_family(instance))
                Alarm.objects.filter(instance_id=instance.pk).delete()
                events.write_txn()
        except InvalidTransition:
            continue
        events.send()
        finished(instance)
        slot_freed(instance)
        return
    raise InvalidTransition(f"instance {instance_id!r} kept changing state; cancel it again")


def has_family(instance: WorkflowInstance) -> bool:
    """Whether an instance about to fail or be cancelled has anyone to tell: a parent, or
    children (which are cancelled with it)."""
    return instance.parent_id is not None or WorkflowInstance.objects.filter(parent_id=instance.pk).exists()


def finished(instance: WorkflowInstance) -> None:
    """After an instance's move to a final state has committed: wake its parent if the
    parent waits for it, and cancel its unfinished children if it failed or was cancelled
    (a completed parent leaves them running).

    The final move set `family_pending` when there is anyone to tell, and it is cleared only
    once they have been told: a process that dies in between leaves the flag for `recover()`
    to find."""
    if not instance.family_pending:
        return
    if instance.parent_id:
        wake_parent(instance.parent_id, instance.pk)
        for fork_id in waiting_forks(instance):
            wake_parent(fork_id, instance.pk)
    if as_state(instance.state) in (State.FAILED, State.CANCELLED):
        cancel_children(instance.pk, f"its parent {instance.pk!r} {as_state(instance.state).label.lower()}")
    WorkflowInstance.objects.filter(pk=instance.pk).update(family_pending=False)
    instance.family_pending = False


def waiting_forks(child: WorkflowInstance) -> list[str]:
    """The instances other than its parent that wait for this child: forks of the parent
    (forks.py), whose copied records started it. The waits' own index finds them."""
    return list(
        StepRecord.objects.filter(kind=StepKind.CHILD, state=StepState.AWAITING, name=child.pk)
        .exclude(instance_id=child.parent_id).values_list("instance_id", flat=True).distinct()
    )


def wake_parent(parent_id: str, child_id: str) -> bool:
    if not at_once_here(False) and Alarm.objects.filter(
            instance_id=parent_id, fired_at__isnull=True, fire_at__lte=clock.now()).exists():
        # A resume of the parent is already due (a sibling woke it, and the alarm pass has
        # not taken it yet): that run will find this child finished, as its end committed
        # before. Many children ending together lock the parent's row once, not each.
        return True
    with database.atomic():
        # Locks the parent row: a parent pausing right now is ordered before or after this.
        parent = lock_txn(parent_id)
        if parent is None:
            return False
        woken = wake_waiting_txn(parent, StepKind.CHILD, child_id, AlarmReason.CHILD, at_once=False)
    if woken is not None and at_once_here(False):
        resume_on_commit(parent)
    return woken is not None


def cancel_children(parent_id: str, reason: str) -> list[str]:
    cancelled = []
    unfinished = WorkflowInstance.objects.filter(parent_id=parent_id).exclude(state__in=TERMINAL)
    for child_id, state in unfinished.values_list("pk", "state"):
        try:
            cancel_instance(child_id, reason)
        except (InvalidTransition, WorkflowNotFound):
            continue  # it finished meanwhile
        if as_state(state) == State.PENDING:
            enqueue(child_id)  # created but never queued (a crash): its run cancels it
        cancelled.append(child_id)
    return cancelled
