"""What a run has done and not yet written, and the fenced writes that commit it.

A run's writes go out in as few transactions as possible: a step's record, the events of
everything since the last write, buffered `set_meta` values and, when due, the lease
extension share one commit. A finished step's record waits for the run's next write, which
comes before anything else can have an effect (`defer`): a run that ends with a step ends
in one commit, not two. Each transaction starts with its UPDATE of the instance row
(write-first), which on PostgreSQL takes the row lock that orders it against a competing
claim, and on SQLite avoids a lock upgrade. On PostgreSQL the common writes are single
prepared statements instead. The store (store/) does the writing; this module decides what
goes out together.

The buffers change only once a write has committed. A write that fails raises `LeaseLost`
(the fence no longer holds) or `StoreFault` (the database failed), and either ends the run.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from ..dispatch import get_dispatcher
from ..exceptions import LeaseLost
from ..models import StepRecord, WorkflowInstance
from ..states import State, as_state, transition_values
from . import clock
from . import store as stores
from .events import EventBuffer, record_events
from .faults import engine_io
from .fence import Fence
from .instances import enqueue
from .lanes import branch_data
from .lease import Lease
from .lifecycle import queued
from .observe import about
from .store.orm import ends
from .waits import Wait

logger = logging.getLogger("durable_workflows")


class Checkpoint:
    def __init__(self, instance: WorkflowInstance, lease: Lease, events: EventBuffer) -> None:
        self.instance = instance
        self.lease = lease
        self.events = events
        self.dirty: dict[tuple[str, int], StepRecord] = {}
        #: The instance's meta with the run's `set_meta` calls applied, until written.
        self.meta: dict[str, Any] | None = None
        #: A step finished since the last write: the recovery count goes back to zero.
        self.step_finished = False
        #: A finished step waits in `dirty` for the next write (see `defer`).
        self.deferred = False
        #: Inbox messages taken by event waits since the last write: id -> the wait's position.
        self.taken: dict[int, int] = {}
        #: Children started since the last write, inserted (Queued) by it: id -> unsaved row.
        self.children: dict[str, WorkflowInstance] = {}
        self._children_events: list[EventBuffer] = []
        #: Of the children the last write inserted, those whose id was found taken.
        self._children_existing: set[str] = set()
        # Looked up once per run.
        self.store = stores.current()

    def start_child(self, child: WorkflowInstance) -> None:
        self.children[child.pk] = child
        self._children_events.append(queued(child))

    def cancel_children(self, reason: str) -> None:
        """The run fails or is cancelled: the children it started and has not written yet
        are written Cancelled, and never dispatched."""
        now = clock.now()
        for child in self.children.values():
            child.state = State.CANCELLED
            child.cancel_requested, child.cancel_reason = True, reason
            child.finished_at = now
        self._children_events = [record_events(child.pk, child.workflow, ("workflow.cancelled", {"reason": reason}))
                                 for child in self.children.values()]

    def current_meta(self) -> dict[str, Any]:
        return self.meta if self.meta is not None else (self.instance.meta or {})

    # -- a step's progress -----------------------------------------------------------------
    def defer(self, record: StepRecord) -> None:
        """Hold a finished step's record for the run's next write. That write comes before
        anything else can have an effect: the next step's attempt saves first, a wait or a
        child goes out with it, and the run's end takes it along. So a crash in between
        runs the step again, just as a crash during its commit would."""
        self.dirty[record.slot] = record
        self.deferred = True

    def save(self, record: StepRecord | None = None, now: datetime | None = None, *,
             begins: int | None = None) -> None:
        """Commit `record`, the buffered records, events and meta; extend the lease when due.
        `now` is the engine's time if the caller has just read it (a step attempt's start).

        The write is refused once the instance is held (fence.py), which is how a run learns
        of a hold. `begins` is given by the write that begins a step's attempt: how many
        events were buffered before the attempt added its own. That attempt then never
        began: `record` and those events are taken out of the buffers again, and the run
        stops (`hold`). Any other write records work already done, which is kept: it is
        written again past the hold, and the run stops before its next step's attempt."""
        if record is not None:
            self.dirty[record.slot] = record
        records = list(self.dirty.values())
        if now is None:
            now = clock.now()
        reset = self.step_finished and self.instance.recovery_count > 0
        renew = reset or self.lease.renewal_due()
        fields: dict[str, Any] = {}
        lease_until = self.lease.until(now)
        if renew:
            fields = {"lease_expires_at": lease_until, "updated_at": now}
        if reset:
            fields["recovery_count"] = 0
        written_meta = self.meta  # read once: an async workflow may set it meanwhile
        if written_meta is not None:
            fields["meta"] = written_meta
        write = self._write(fields, records, lease_until=lease_until, fence=self.lease.fence.new_work)
        try:
            with engine_io():
                self._commit(write)
        except LeaseLost:
            if begins is not None:
                if record is not None:
                    self.dirty.pop(record.slot, None)
                del self.events.pending[begins:]
                raise
            if not self._held():
                raise
            write = self._write(fields, records, lease_until=lease_until)
            with engine_io():
                self._commit(write)
            self.lease.held = True
        if write.renewed:
            self.lease.renewed()
        self._committed(write.values, written_meta)

    # -- the run's end, or its pause -------------------------------------------------------
    def finish(self, to: State, **fields: Any) -> None:
        """Commit the move to Completed or Failed, with everything still buffered."""
        if self.meta is not None:
            fields["meta"] = self.meta
        values = transition_values(as_state(self.instance.state), to, fields)
        write = self._write(values, list(self.dirty.values()), transition=True)
        with engine_io():
            self._commit(write)
        self._committed(values, self.meta)

    def pause(self, waits: list[Wait]) -> None:
        """Commit the durable waits the run stopped at (one, or one per waiting branch):
        their records, the alarm of the first to end, and the move to Paused. Called by the
        executor once the workflow function has unwound, so nothing the function did while
        unwinding (a `finally:`) is lost or half-written."""
        for wait in waits:
            record = wait.record
            self.dirty[record.slot] = record
            if wait.started_event:
                self.events.add(wait.started_event, record.position, name=record.name,
                                until=_iso(wait.until), **branch_data(record.branch))
        first = min(waits, key=ends)
        self.events.add("workflow.paused", first.record.position, reason=first.reason,
                        until=_iso(first.until), **branch_data(first.record.branch))
        fields: dict[str, Any] = {"lease_owner": "", "lease_expires_at": None}
        if self.meta is not None:
            fields["meta"] = self.meta
        values = transition_values(as_state(self.instance.state), State.PAUSED, fields)
        write = self._write(values, list(self.dirty.values()), transition=True)
        write.waits = waits
        with engine_io():
            self._commit(write)
        self._committed(values, self.meta)

    def hold(self) -> None:
        """The instance is held (`client.pause`) and the run stopped before a step's attempt
        began (`save`): commit what it did before (the step it finished last, the waits it got past),
        and the move to Paused with no wait and no alarm, so that only `client.resume`
        runs it again. LeaseLost if the fence failed meanwhile (a cancel came)."""
        self.events.add("workflow.paused", None, reason="held")
        fields: dict[str, Any] = {"lease_owner": "", "lease_expires_at": None}
        if self.step_finished and self.instance.recovery_count > 0:
            fields["recovery_count"] = 0
        if self.meta is not None:
            fields["meta"] = self.meta
        values = transition_values(as_state(self.instance.state), State.PAUSED, fields)
        write = self._write(values, list(self.dirty.values()), transition=True)
        with engine_io():
            self._commit(write)
        self._committed(values, self.meta)

    def _held(self) -> bool:
        """After a refused write: whether a hold, and nothing else, refused it."""
        with engine_io():
            current = self.store.current(self.lease.fence)
        return current is not None and current.held and not current.cancel_requested

    # -- the writes ------------------------------------------------------------------------
    def _write(self, values: dict[str, Any], records: list[StepRecord], *, transition: bool = False,
               lease_until: datetime | None = None, fence: Fence | None = None) -> stores.Write:
        return stores.Write(fence or self.lease.fence, values, records, self.events.rows(), transition=transition,
                            taken=self.taken, children=list(self.children.values()),
                            children_events=self._children_events, lease_until=lease_until)

    def _commit(self, write: stores.Write) -> None:
        self.store.commit(write)
        self._children_existing = write.existing_children

    def _committed(self, values: dict[str, Any], written_meta: dict[str, Any] | None) -> None:
        """The write committed: bring the buffers and the in-memory instance up to date.
        (Meta set while the write was out, from an async workflow's event loop, stays.)"""
        self.dirty = {}
        self.deferred = False
        self.taken = {}
        if self.meta is written_meta:
            self.meta = None
        self.step_finished = False
        for key, value in values.items():
            setattr(self.instance, key, value)
        self.events.send()
        if self.children:
            self._dispatch_children()

    def _dispatch_children(self) -> None:
        """Hand the children just inserted to the dispatcher. One it cannot take stays
        Queued, and `recover()` sends it again; the run goes on."""
        children, self.children = list(self.children.values()), {}
        buffers, self._children_events = self._children_events, []
        existing, self._children_existing = self._children_existing, set()
        for buffer in buffers:
            if buffer.instance_id not in existing:
                buffer.send()
        dispatcher = get_dispatcher()
        for child in children:
            if child.pk in existing:
                enqueue(child.pk)  # one an older release left Pending is queued; others stay as they are
                continue
            if child.state != State.QUEUED:
                continue  # cancelled with the run that started it
            try:
                dispatcher.dispatch(child.pk, "fresh", child.epoch)
            except Exception:
                logger.warning("durable_workflows: could not dispatch child %s; recovery will", child.pk,
                               exc_info=True, extra=about(child.pk, child.workflow))


def _iso(when: Any) -> str | None:
    return None if when is None else when.isoformat()
