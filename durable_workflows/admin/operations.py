"""What an operator may do to an instance from the admin, each through the engine.

The admin never writes a state itself: cancel goes through `client.cancel`, pause and its
resume through `client.pause` and `client.resume`, "resume now" through `engine.fire_alarm_now`, and "recover" hands the instance to the dispatcher in recover
mode, where `engine.execute` takes it over only if its lease really expired. Each function
returns the sentence to show, or raises `Refused` (or the engine's `InvalidTransition`) with
the reason the instance was left as it was.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from .. import client
from ..dispatch import get_dispatcher, on_commit
from ..engine import clock, fire_alarm_now
from ..exceptions import DurableWorkflowError, UnknownWorkflow
from ..models import Alarm, WorkflowInstance
from ..states import TERMINAL, State, as_state
from .display import relative


class Refused(DurableWorkflowError):
    """The instance is not in a state this operation applies to."""


def cancel(instance_id: str, reason: str) -> str:
    handle = client.cancel(instance_id, reason)
    if handle.state == State.CANCELLED:
        return f"Cancelled {instance_id}."
    return f"Cancel requested for {instance_id}: it stops at its next step boundary."


def pause(instance_id: str, reason: str) -> str:
    handle = client.pause(instance_id, reason)
    if handle.state == State.RUNNING:
        return f"Paused {instance_id}: it stops before its next step."
    return f"Paused {instance_id}: nothing starts or resumes it until it is resumed."


def release(instance_id: str) -> str:
    """End the hold (client.resume)."""
    if not _load(instance_id).held:
        raise Refused(f"instance {instance_id} is not paused by an operator.")
    return f"Resumed {instance_id}; it is {client.resume(instance_id).state.label} now."


def resume_now(instance_id: str, seen_epoch: int | None = None) -> str:
    """Resume now, unless it resumed already: from the page, `seen_epoch` is the epoch the
    operator saw, and a later one means its alarm fired first and a worker took it (so
    this run's next sleep is not cut short); without it, the one state it applies to."""
    if seen_epoch is not None:
        instance = _load(instance_id)
        if instance.epoch != seen_epoch:
            return _under_way(instance, seen_epoch)
    instance = _load_in(instance_id, State.PAUSED, "resumed")
    if instance.held:
        raise Refused(f"instance {instance_id} is paused by an operator: resume it (end the hold) instead.")
    if not fire_alarm_now(instance_id):
        # The ticker may have fired the alarm between our two statements.
        again = _load(instance_id)
        if again.epoch != instance.epoch or Alarm.objects.filter(instance_id=instance_id,
                                                                  fired_at__isnull=False).exists():
            return _under_way(again, instance.epoch)
        raise Refused(f"instance {instance_id} has no pending alarm to fire; it may have resumed already.")
    state = as_state(_load(instance_id).state)
    if state == State.PAUSED:
        return f"Resuming {instance_id}: it has been handed to a worker."
    return f"Resumed {instance_id}; it is {state.label} now."


def _under_way(instance: WorkflowInstance, seen_epoch: int) -> str:
    """What to say when the alarm fired before "resume now" could fire it: not a refusal."""
    state = as_state(instance.state)
    if instance.epoch == seen_epoch and state == State.PAUSED:
        return f"Resuming {instance.pk}: its alarm fired first, and it has been handed to a worker."
    return f"Resumed {instance.pk} already: its alarm fired first. It is {state.label} now."


def fork(instance_id: str) -> str:
    """A fork of the instance (client.fork) from its first failed or unfinished position."""
    try:
        handle = client.fork(instance_id)
    except (TypeError, ValueError, UnknownWorkflow) as error:
        raise Refused(f"instance {instance_id} cannot be forked: {error}") from None
    return f"Forked {instance_id} as {handle.instance_id}; it is {handle.refresh().state.label} now."


def recover(instance_id: str) -> str:
    instance = _load_in(instance_id, State.RUNNING, "recovered")
    now = clock.now()
    expires = instance.lease_expires_at
    if not instance.is_stale(now):
        # Running and not stale: it holds a lease, so `expires` is set.
        raise Refused(
            f"instance {instance_id} is not stale: {instance.lease_owner or 'its worker'} holds its lease, "
            f"which expires {relative(cast(datetime, expires), now)}."
        )
    dispatcher = get_dispatcher()
    pk, epoch = instance.pk, instance.epoch
    on_commit(lambda: dispatcher.dispatch(pk, "recover", epoch))
    return f"Recovering {instance_id}: it has been handed to a worker."


def can_cancel(instance: WorkflowInstance) -> bool:
    return as_state(instance.state) not in TERMINAL


def can_resume(instance: WorkflowInstance) -> bool:
    return as_state(instance.state) == State.PAUSED and not instance.held


def _load_in(instance_id: str, wanted: State, done: str) -> WorkflowInstance:
    """The instance, if it is in the one state the operation applies to."""
    instance = _load(instance_id)
    state = as_state(instance.state)
    if state != wanted:
        raise Refused(f"instance {instance_id} is {state.label}: only a {wanted.label} instance can be {done}.")
    return instance


def _load(instance_id: str) -> WorkflowInstance:
    return client.get(instance_id).instance
