"""Operator holds: `client.pause(id, reason)` and `client.resume(id)`.

A hold is not a state: the state machine does not know of it. A Queued instance stays Queued
and a Paused one Paused; a Running one runs the step it is in to its end and stops before the
next one begins, moving to Paused with no wait and no alarm (`Checkpoint.hold`). What keeps a
held instance where it is, is the claim: every claim (fresh, resume, recovery) refuses a held
instance in the very statement that claims it (store/), so nothing that would start or resume
it gets round the hold, whatever sent it: a fired alarm, a sent event, a finished child, a free
concurrency slot, a redispatch. What came meanwhile stays in the database (the fired alarm, the
stored event), and `release` runs the instance at once when something did.

A run learns of a hold from its checkpoints, which the fence refuses once the instance is
held (fence.py): no read per step, and nothing on the hot path when no instance is held. A
refused write of work already done (a step's result) is written again past the hold and the
run stops before its next step's attempt; a refused write that begins an attempt stops it
there, the attempt never begun (checkpoint.py).
"""

from __future__ import annotations

from functools import partial

from .. import database
from ..dispatch import get_dispatcher, on_commit
from ..exceptions import InvalidTransition, WorkflowNotFound
from ..models import Alarm, WorkflowInstance
from ..states import TERMINAL, State, as_state
from ..text import storable
from . import clock


def hold(instance_id: str, reason: str = "") -> None:
    """Hold an instance that has not finished (again: a new reason replaces the old one).
    `InvalidTransition` for a finished instance, `WorkflowNotFound` for an unknown one."""
    rows = WorkflowInstance.objects.filter(pk=instance_id)
    if rows.exclude(state__in=TERMINAL).update(held=True, held_reason=storable(reason), updated_at=clock.now()):
        return
    state = rows.values_list("state", flat=True).first()
    if state is None:
        raise WorkflowNotFound(f"no workflow instance with id {instance_id!r}")
    raise InvalidTransition(f"cannot pause instance {instance_id!r}: it is already {as_state(state).label}")


def release(instance_id: str) -> bool:
    """End the hold, and run the instance at once if something became due meanwhile: a
    Queued one is started, a Paused one resumed unless its alarm is still to come (one that
    stopped for the hold has none; one waiting for an event or a child that has not come
    replays up to its wait and pauses again). Returns whether it was held.
    `WorkflowNotFound` for an unknown instance."""
    now = clock.now()
    rows = WorkflowInstance.objects.filter(pk=instance_id)
    with database.atomic():
        # The UPDATE comes first: it locks the row against a claim or a pause meanwhile.
        if not rows.filter(held=True).update(held=False, held_reason="", updated_at=now):
            if not rows.exists():
                raise WorkflowNotFound(f"no workflow instance with id {instance_id!r}")
            return False
        instance = rows.only("id", "state", "epoch").first()
        assert instance is not None  # its row is locked
        mode = _due_txn(instance)
    if mode is not None:
        _dispatch(instance, mode)
    return True


def _due_txn(instance: WorkflowInstance) -> str | None:
    """How the instance must run now that its hold ended (None: not now)."""
    now = clock.now()
    state = as_state(instance.state)
    if state == State.QUEUED:
        # As dispatched now: the lost-task scans send it again if this task is lost.
        WorkflowInstance.objects.filter(pk=instance.pk).update(dispatched_at=now)
        return "fresh"
    if state != State.PAUSED:
        return None  # Running: its run goes on (or recovery takes it); Pending: queued as it commits
    alarm = Alarm.objects.filter(instance_id=instance.pk).first()
    if alarm is None:
        return "resume"
    if alarm.fired_at is None and alarm.fire_at > now:
        return None  # it comes due later, and fires as any alarm does
    # Fired now, so that a lost resume is sent again by the lost-resume scan.
    Alarm.objects.filter(pk=alarm.pk).update(fired_at=now)
    return "resume"


def after_hold(instance: WorkflowInstance) -> bool:
    """After a run's move to Paused for a hold has committed: whether the instance is held
    still. A `release` that came between the refused write and that move found it Running
    and left it to its run, so the run resumes it now."""
    row = WorkflowInstance.objects.filter(pk=instance.pk).values_list("held", "state", "epoch").first()
    if row is None or row[0] or as_state(row[1]) != State.PAUSED:
        return True
    instance.epoch = row[2]
    _dispatch(instance, "resume")
    return False


def _dispatch(instance: WorkflowInstance, mode: str) -> None:
    on_commit(partial(get_dispatcher().dispatch, instance.pk, mode, instance.epoch))
