"""A run: one claim of one instance, and what surrounds it (its claim, its records, how it
ends when cancelled, what its end tells the family).

A claim moves the instance to Running with a new epoch (the fencing token every later write
of the run carries, see fence.py) and a lease; the store does the reading and writing
(store/).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import traceback as tb
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..exceptions import InvalidTransition, LeaseLost
from ..models import StepRecord, WorkflowInstance
from ..states import State, as_state, transition_values
from ..text import storable
from . import clock, concurrency, holds
from . import store as stores
from .checkpoint import Checkpoint
from .events import EventBuffer
from .faults import engine_io
from .instances import finished
from .lease import Lease
from .observe import RunInfo, about

logger = logging.getLogger("durable_workflows")

MODES = ("fresh", "resume", "recover")


def executor_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def error_fields(error: BaseException) -> dict[str, str]:
    """An error as it is stored: whatever its message holds, the write is never refused
    (text.py), so the failure is recorded once, with its own type."""
    return {
        "error_type": storable(type(error).__name__)[:255],
        "error_message": storable(_message(error)),
        "error_traceback": storable("".join(tb.format_exception(type(error), error, error.__traceback__))),
    }


def _message(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:  # an error whose __str__ fails is still the workflow's failure
        return f"<{type(error).__name__}: its message could not be read>"


@dataclass(eq=False)
class Run:
    """One claim of one instance: the lease it holds and what it has not yet written."""

    instance: WorkflowInstance
    mode: str
    lease: Lease
    checkpoint: Checkpoint
    #: The wait (branch, position) whose fired alarm resumed this run, if any, and the time
    #: that alarm was set for (a timeout's alarm is set for the wait's deadline; a send's
    #: or a child's wake for the moment it came).
    woken: tuple[str, int] | None = None
    woken_at: datetime | None = None
    #: The children found finished when the run first waited for one (children.py).
    finished_children: dict[str, WorkflowInstance] | None = None
    #: What observers (metrics, tracing) know of this run (observe.py).
    observed: RunInfo | None = None
    #: Inbox messages read ahead by its event waits, per event name (inbox.py).
    read_ahead: dict[str, Any] = field(default_factory=dict)
    #: It committed the instance's next generation, whose resume goes out once it is over.
    continued: bool = False

    @property
    def instance_id(self) -> str:
        return self.instance.pk

    @property
    def events(self) -> EventBuffer:
        return self.checkpoint.events

    def settle_lost_lease(self) -> str | None:
        """After a refused write: cancel if that is why; pause if the instance is held (the
        write that began a step's attempt was refused); otherwise leave it to the new owner.
        Returns the state the run left the instance in, if it moved it."""
        for _ in range(2):
            with engine_io():
                current = stores.current().current(self.lease.fence)
            if current is not None and current.cancel_requested:
                cancel_running(current, self.lease)
                return None
            if current is None or not current.held:
                return None
            try:
                self.checkpoint.hold()
            except LeaseLost:
                continue  # a cancel came meanwhile
            held_still = holds.after_hold(self.instance)
            logger.info("workflow %s paused: it is held%s", self.instance_id,
                        "" if held_still else ", and resumed at once (its hold ended meanwhile)",
                        extra=about(self.instance_id, self.instance.workflow))
            return State.PAUSED
        return None


def _new_run(store: stores.Store, instance: WorkflowInstance, mode: str, owner: str, epoch: int,
             events: EventBuffer, woken: tuple[str, int] | None = None, woken_at: datetime | None = None) -> Run:
    lease = Lease(instance.pk, epoch, owner, store=store)
    return Run(instance, mode, lease, Checkpoint(instance, lease, events), woken, woken_at)


def cancel_running(instance: WorkflowInstance, lease: Lease) -> bool:
    """Move a Running instance whose cancel was requested to Cancelled (by its owner)."""
    events = EventBuffer(instance.pk, instance.workflow)
    events.add("workflow.cancelled", None, reason=instance.cancel_reason)
    with engine_io():
        try:
            values = transition_values(as_state(instance.state), State.CANCELLED,
                                       {"family_pending": has_family(instance)})
            lease.store.commit(stores.Write(lease.fence.lenient(), values, [], events.rows(), transition=True))
        except (InvalidTransition, LeaseLost):
            return False
    for key, value in values.items():
        setattr(instance, key, value)
    events.send()
    after_final(instance)
    return True


def has_family(instance: WorkflowInstance) -> bool:
    """Whether an instance about to fail or be cancelled has anyone to tell: a parent, or
    children (which are cancelled with it)."""
    return instance.parent_id is not None or stores.current().has_children(instance.pk)


def after_final(instance: WorkflowInstance) -> None:
    """Tell the instance's parent and children it finished, and let the next instance have
    its concurrency slot; a failure here is made good by the periodic `recover()`, so it is
    logged, never raised into a run that is over."""
    try:
        finished(instance)
    except Exception:
        logger.exception("durable_workflows: could not tell the parent or children of %s that it finished",
                         instance.pk, extra=about(instance.pk, instance.workflow))
    try:
        concurrency.slot_freed(instance)
    except Exception:
        logger.exception("durable_workflows: could not admit the next instance after %s", instance.pk,
                         extra=about(instance.pk, instance.workflow))


def claim(instance_id: str, mode: str, epoch: int | None = None) -> Run | None:
    """Take ownership of an instance for one run, or return None if it is not ours to run.

    `epoch` is the epoch the task was dispatched for: a duplicate or stale task finds the epoch
    moved on and does nothing. A database error is a `StoreFault`.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    with engine_io():
        return _claim(instance_id, mode, epoch)


def _claim(instance_id: str, mode: str, epoch: int | None) -> Run | None:
    now = clock.now()
    owner = executor_name()
    store = stores.current()
    claimed = store.claim(instance_id, mode, epoch, owner, now, Lease.until(now))
    if claimed is None:
        return None
    claimed.events.send()
    instance = claimed.instance
    return _new_run(store, instance, mode, owner, instance.epoch, claimed.events, claimed.woken, claimed.woken_at)


def load_records(instance_id: str) -> dict[tuple[str, int], StepRecord]:
    """Every step record of the instance, in one read."""
    with engine_io():
        return stores.current().load_records(instance_id)
