"""Sending events to instances: `send_event`, the other half of `wf.wait_for_event`.

An event is stored in the instance's inbox whatever the instance is doing, and waits there
until a wait of its name takes it. When the instance is Paused at such a wait, the send also
ends the wait: the wait's alarm is marked fired and a resume is dispatched once the send
commits. A resume that gets lost is sent again by the periodic scans, as for any fired
alarm, so a committed event is never lost.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from . import serialization
from .dispatch import get_dispatcher, on_commit
from .engine import pg, record_events
from .engine.inbox import check_name
from .engine.waits import lock_txn, wake_txn
from .exceptions import InvalidTransition, WorkflowNotFound
from .models import (
    AlarmReason,
    InboxMessage,
    StepKind,
    StepRecord,
    StepState,
    WorkflowInstance,
)
from .states import TERMINAL, State, as_state


def send_event(instance_id: str, name: str, payload: Any = None, *, event_id: str | None = None) -> bool:
    """Send the event `name` with `payload` to an instance. True when it was stored; False
    when this instance already received an event with `event_id` (nothing changes then).

    Raises `WorkflowNotFound` for an unknown id, `InvalidTransition` for a finished instance,
    `SerializationError` for a payload that cannot be stored and `ValueError` for a bad name
    or event id; none of them stores anything.
    """
    check_name(name)
    if event_id is not None and (
        not isinstance(event_id, str) or not event_id or len(event_id) > 255 or "\x00" in event_id
    ):
        raise ValueError(f"event_id must be text of 1 to 255 characters without NUL, got {event_id!r}")
    stored = serialization.dumps(payload, f"the payload of event {name!r}")
    if not isinstance(instance_id, str):
        raise WorkflowNotFound(f"no workflow instance with id {instance_id!r}")
    now = timezone.now()
    if pg.usable():
        return _send_pg(instance_id, name, stored, event_id, now)
    with transaction.atomic():
        # The instance row is locked first: that orders this send against the run's pause
        # (which looks in the inbox again under the same lock) and against another send of
        # the same event_id.
        instance = lock_txn(instance_id)
        if instance is None:
            raise WorkflowNotFound(f"no workflow instance with id {instance_id!r}")
        if event_id is not None and InboxMessage.objects.filter(instance_id=instance_id, event_id=event_id).exists():
            return False  # a redelivery, also once the instance has finished
        if as_state(instance.state) in TERMINAL:
            raise InvalidTransition(
                f"cannot send event {name!r} to instance {instance_id!r}: it is already "
                f"{as_state(instance.state).label}"
            )
        InboxMessage.objects.create(instance_id=instance_id, name=name, payload=stored,
                                    event_id=event_id, received_at=now)
        events = record_events(instance.pk, instance.workflow,
                               ("event.received", {"name": name, "event_id": event_id}))
        if as_state(instance.state) == State.PAUSED:
            _wake_txn(instance, name)
        events.write_txn()
    events.send()
    return True


def _send_pg(instance_id: str, name: str, stored: str, event_id: str | None, now: Any) -> bool:
    """The same on PostgreSQL in two statements: the row lock, then one that stores the
    event, fires the wait's alarm when it waits for it, and logs it."""
    with transaction.atomic():
        instance = lock_txn(instance_id)
        if instance is None:
            raise WorkflowNotFound(f"no workflow instance with id {instance_id!r}")
        state = as_state(instance.state)
        if state in TERMINAL:
            if event_id is not None and InboxMessage.objects.filter(instance_id=instance_id, event_id=event_id).exists():
                return False
            raise InvalidTransition(
                f"cannot send event {name!r} to instance {instance_id!r}: it is already {state.label}"
            )
        data = {"name": name, "event_id": event_id}
        accepted, woken = pg.store_message(instance_id, instance.epoch, state == State.PAUSED, name,
                                           stored, event_id, now, data)
        if not accepted:
            return False
        if woken is not None:
            dispatcher = get_dispatcher()
            on_commit(lambda: dispatcher.dispatch(instance_id, "resume", instance.epoch))
    record_events(instance_id, instance.workflow, ("event.received", data)).send()
    return True


def _wake_txn(instance: WorkflowInstance, name: str) -> None:
    """End the instance's wait for `name`, if that is what it waits for."""
    wait = StepRecord.objects.filter(
        instance_id=instance.pk, kind=StepKind.EVENT, state=StepState.AWAITING, name=name
    ).order_by("-position").first()
    if wait is None:
        return
    wake_txn(instance, wait.position, AlarmReason.EVENT)
