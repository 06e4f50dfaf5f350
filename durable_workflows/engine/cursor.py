"""The one public handle a primitive gets on the run: its slot, and the three things it does there.

A primitive (a step, a sleep, an event or child wait) takes the next position of its lane
and then, at that position, does one of three things:

- `replay()`: the record the history has here, checked against the primitive's name and
  kind (a different one is a non-determinism error, which ends the instance), or None;
- `stage(record)`: begin new work here, or go on with unfinished work (a step in flight or
  waiting to retry, a wait not yet over). This is where a replay ends, so a replay check
  (check.py) stops the lane here, before any side effect: the rule is the cursor's, and a
  primitive cannot forget it. A new record is registered with the run, so that its wait or
  its end is written with the run's next write;
- `suspend(wait)`: stop the lane at a durable wait, which the executor commits once the
  function has unwound.

A new kind of wait is one module, written with the cursor alone: take the cursor
(`Cursor.enter(wf, "wait_for_x")`, or `Cursor(wf, slot)` where the context took the slot),
`replay_wait(cursor, name, kind)` (waits.py) for a recorded outcome, `cursor.stage(...)`
before anything new, `complete_wait` / `fail_wait` when it is over, and otherwise
`cursor.suspend(Wait(record, reason, started_event, ready=...))`. Its record kind is a
`StepKind` and its alarm reason an `AlarmReason` (models.py), and the pair is registered in
`waits.WAIT_KINDS` with the module; what wakes it from outside the run (a send, a child's
end) calls `waits.wake_waiting_txn(instance, kind, name)`. The engine does not switch on the
kind anywhere else: a woken or timed-out wait resumes as a replay, so the module's own
function, seeing its record and `cursor.run.woken`, decides how the wait ended. waits.py
(sleeps), inbox.py (events) and children.py (child waits) are written this way.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn

from ..exceptions import Suspend
from ..models import StepRecord
from . import clock
from .lanes import Lane, Slot

if TYPE_CHECKING:
    from .checkpoint import Checkpoint
    from .context import WorkflowContext
    from .events import EventBuffer
    from .lease import Lease
    from .runs import Run
    from .waits import Wait


class Cursor:
    """A primitive's position in its lane, and the run's facts it may read there."""

    __slots__ = ("wf", "slot")

    def __init__(self, wf: WorkflowContext, slot: Slot) -> None:
        self.wf = wf
        self.slot = slot

    @classmethod
    def enter(cls, wf: WorkflowContext, primitive: str) -> Cursor:
        """Check that `primitive` may run now (scope, stops, deadline), and take its slot."""
        return cls(wf, wf._enter(primitive))

    @staticmethod
    def ahead(wf: WorkflowContext, lane: Lane) -> tuple[StepRecord | None, bool]:
        """What the history has at the lane's next position, without taking it (a patch
        takes none where the code before it ran): its record, and whether the recorded run
        called wf.parallel there."""
        key = (lane.branch, lane.position)
        return wf._records.get(key), key in wf._parallels

    def __repr__(self) -> str:
        return f"<Cursor {self.slot.describe()} of {self.wf.instance_id}>"

    # -- where ----------------------------------------------------------------------------
    @property
    def lane(self) -> Lane:
        return self.slot.lane

    @property
    def key(self) -> tuple[str, int]:
        return self.slot.key

    @property
    def branch(self) -> str:
        return self.slot.branch

    @property
    def position(self) -> int:
        return self.slot.position

    # -- read-only facts ------------------------------------------------------------------
    @property
    def instance_id(self) -> str:
        return self.wf.instance_id

    @property
    def workflow(self) -> str:
        return self.wf.workflow

    @property
    def run(self) -> Run:
        return self.wf._run

    @property
    def checkpoint(self) -> Checkpoint:
        return self.wf._run.checkpoint

    @property
    def events(self) -> EventBuffer:
        return self.wf._run.events

    @property
    def lease(self) -> Lease:
        return self.wf._run.lease

    @property
    def concurrent(self) -> bool:
        """Whether other lanes may run now, so that what this one starts is written at once."""
        return self.wf._concurrent(self.slot.lane)

    @property
    def checking(self) -> bool:
        """A replay check: nothing this primitive does may reach past the history."""
        return self.wf._checking

    @property
    def clock(self) -> datetime:
        """The lane's recorded time (what `wf.now()` answers there)."""
        return self.slot.lane.clock

    # -- the three moves --------------------------------------------------------------------
    def replay(self, name: str, kind: str) -> StepRecord | None:
        return self.wf._replayed(self.slot, name, kind)

    def stage(self, record: StepRecord | None = None) -> StepRecord | None:
        """New or unfinished work begins here: a replay check stops the lane now; a new
        `record` becomes the run's record of this slot."""
        if self.wf._checking:
            signal = Suspend()
            self.slot.lane.stopped = signal
            raise signal
        if record is not None:
            self.wf._records.setdefault(self.slot.key, record)
        return record

    def new_record(self, name: str, kind: str, *, staged: bool = True, **fields: Any) -> StepRecord:
        """The record of work this run does here for the first time, staged. (`staged=False`
        is for a marker of what already happened, a branch's failure, which is no new work.)"""
        record = StepRecord.new(instance_id=self.wf.instance_id, branch=self.slot.branch,
                                position=self.slot.position, name=name, kind=kind,
                                started_at=clock.now(), **fields)
        if staged:
            self.stage(record)
        else:
            self.wf._records.setdefault(self.slot.key, record)
        return record

    def recorded(self) -> bool:
        """Whether the run has a record at this slot, from the history or staged by this run."""
        return self.slot.key in self.wf._records

    def keep(self, record: StepRecord) -> None:
        """`record` changed: it goes out with the run's next write."""
        self.wf._run.checkpoint.dirty[self.slot.key] = record

    def suspend(self, wait: Wait) -> NoReturn:
        self.wf._suspend(self.slot, wait)

    def fail_run(self, error: BaseException) -> BaseException:
        """`error` ends the instance whatever the workflow does; returned for the caller to raise."""
        self.wf._fatal = error
        return error
