"""Sending events to instances: `send_event`, the other half of `wf.wait_for_event`.

An event is stored in the instance's inbox whatever the instance is doing, and waits there
until a wait of its name takes it. When the instance is Paused at such a wait, the send also
ends the wait: the wait's alarm is marked fired and a resume is dispatched once the send
commits. A resume that gets lost is sent again by the periodic scans, as for any fired
alarm, so a committed event is never lost.
"""

from __future__ import annotations

from typing import Any

from . import database, serialization
from .engine import clock, record_events
from .engine import store as stores
from .engine.inbox import check_name
from .engine.instances import findable
from .engine.store import postgres
from .engine.waits import lock_txn, resume_on_commit, wake_waiting_txn
from .exceptions import InvalidTransition, WorkflowNotFound
from .models import (
    AlarmReason,
    InboxMessage,
    StepKind,
)
from .states import TERMINAL, State, as_state
from .text import refused


def send_event(instance_id: str, name: str, payload: Any = None, *, event_id: str | None = None) -> bool:
    """Send the event `name` with `payload` to an instance. True when it was stored; False
    when this instance already received an event with `event_id` (nothing changes then).

    Raises `WorkflowNotFound` for an unknown id, `InvalidTransition` for a finished instance,
    `SerializationError` for a payload that cannot be stored and `ValueError` for a bad name
    or event id; none of them stores anything.
    """
    check_name(name)
    if event_id is not None and (
        not isinstance(event_id, str) or not event_id or len(event_id) > 255 or refused(event_id)
    ):
        raise ValueError(f"event_id must be text of 1 to 255 characters without NUL or lone surrogates, "
                         f"got {event_id!r}")
    stored = serialization.dumps(payload, f"the payload of event {name!r}")
    if not findable(instance_id):
        raise WorkflowNotFound(f"no workflow instance with id {instance_id!r}")
    now = clock.now()
    data = {"name": name, "event_id": event_id}
    woken: int | tuple[str, int] | None = None
    with database.atomic():
        # The instance row is locked first: that orders this send against the run's pause
        # (which looks in the inbox again under the same lock) and against another send of
        # the same event_id.
        instance = lock_txn(instance_id)
        if instance is None:
            raise WorkflowNotFound(f"no workflow instance with id {instance_id!r}")
        state = as_state(instance.state)
        if state in TERMINAL:
            if event_id is not None and _received(instance_id, event_id):
                return False  # a redelivery, also once the instance has finished
            raise InvalidTransition(
                f"cannot send event {name!r} to instance {instance_id!r}: it is already {state.label}"
            )
        events = record_events(instance_id, instance.workflow, ("event.received", data))
        if stores.single_statements():
            # One statement stores it, fires the wait's alarm and logs it.
            stored_it, woken = postgres.store_message(instance_id, instance.epoch, state == State.PAUSED, name,
                                                stored, event_id, now, data)
        else:
            stored_it = event_id is None or not _received(instance_id, event_id)
            if stored_it:
                InboxMessage.objects.create(instance_id=instance_id, name=name, payload=stored,
                                            event_id=event_id, received_at=now)
                woken = wake_waiting_txn(instance, StepKind.EVENT, name, AlarmReason.EVENT)
                events.write_txn()
        if not stored_it:
            return False
    if woken is not None:
        resume_on_commit(instance)
    events.send()
    return True


def _received(instance_id: str, event_id: str) -> bool:
    return InboxMessage.objects.filter(instance_id=instance_id, event_id=event_id).exists()
