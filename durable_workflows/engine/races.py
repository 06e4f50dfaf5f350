"""`wf.race(*branches)`: the branches of `wf.parallel`, of which the first to finish wins.

The branches run on lanes of their own, as `wf.parallel`'s do. The first to end, by returning
or by raising, is the winner: `wf.race` returns `(index, value)`, or raises its error. From
that moment the others start nothing new: each goes on with the primitive it is in (a running
step finishes, and its result is kept) and stops at its next one; a branch that waits (a
sleep, an event, a child) is abandoned there, its wait no longer waking the run. While no
branch has finished and every unfinished one waits, the run pauses at all their waits, as
`wf.parallel` does, and the first of them to end resumes it.

Which branch won is a decision, not a fact the history would show again: two branches whose
waits both ended while the run was paused would finish in whatever order their threads do.
So the winner is recorded, as a marker at the race's position (a record of kind "parallel"
named "race", whose result is the index), written with the run's next write, before anything
after the race can have an effect. A replay that finds the marker runs the winning branch
alone, which replays its records to the same end; the other branches' records stay in the
history, unread. A crash before the marker is written leaves nothing after the race written
either, and the race is decided again.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .. import serialization
from ..exceptions import NonDeterminismError
from ..models import StepKind, StepState
from . import branches, stops
from .cursor import Cursor
from .lanes import CURRENT, Aborted, Lane, Slot

if TYPE_CHECKING:
    from .context import WorkflowContext

#: The name of a race's marker record.
RACE = "race"


def checked(fns: Sequence[Any]) -> list[Callable[[], Any]]:
    if not fns:
        raise ValueError("wf.race needs at least one branch")
    return branches.checked(fns, None, primitive="race")[0]


class _Referee:
    """Decides the winner: the first branch whose function ends, under a lock, since sync
    branches end in threads of their own. Once it has one, the other branches stop at their
    next primitive (the flag `wf.parallel` sets for a failed branch)."""

    def __init__(self, lanes: list[Lane]) -> None:
        self.lanes = lanes
        self.lock = threading.Lock()
        self.winner: int | None = None

    def _ended(self, index: int) -> None:
        with self.lock:
            if self.winner is None:
                self.winner = index
                group = self.lanes[index].group
                if group is not None:
                    group.failed = True

    def _raised(self, index: int, error: BaseException) -> None:
        lane = CURRENT.get()
        if stops.is_failure(error) and (lane is None or lane.stopped is None):
            self._ended(index)

    def entrant(self, index: int, fn: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            try:
                value = fn()
            except BaseException as error:
                self._raised(index, error)
                raise
            if not inspect.isawaitable(value):
                self._ended(index)
            return value
        return run

    def async_entrant(self, index: int, fn: Callable[[], Any]) -> Callable[[], Any]:
        async def run() -> Any:
            try:
                value = fn()
                if inspect.isawaitable(value):
                    value = await value
            except BaseException as error:
                self._raised(index, error)
                raise
            self._ended(index)
            return value
        return run


def _recorded_winner(wf: WorkflowContext, slot: Slot, count: int) -> int | None:
    marker = Cursor(wf, slot).replay(RACE, StepKind.PARALLEL)  # another record: the code changed
    if marker is None:
        return None
    winner = serialization.loads(marker.result)
    if not isinstance(winner, int) or not 0 <= winner < count:
        raise NonDeterminismError(
            f"non-deterministic replay at {slot.describe()}: the recorded race was won by branch "
            f"{winner!r}, and the code now races {count} branches")
    return winner


def _mark_winner(wf: WorkflowContext, slot: Slot, winner: int) -> None:
    cursor = Cursor(wf, slot)
    if not cursor.recorded():
        marker = cursor.new_record(RACE, StepKind.PARALLEL, staged=False, state=StepState.COMPLETED,
                                   result=serialization.dumps(winner, "the winner of wf.race"))
        marker.finished_at = marker.started_at
        cursor.keep(marker)


def _conclude(wf: WorkflowContext, slot: Slot, lanes: list[Lane], outcomes: list[branches.Outcome],
              winner: int | None) -> tuple[int, Any]:
    branches.raise_stops(wf, outcomes)
    if winner is None:
        if slot.lane.aborted() or any(isinstance(value, Aborted) for _, value in outcomes):
            raise Aborted()  # a branch further out failed
        branches.suspend_if_waiting(slot.lane, lanes)
        raise AssertionError("wf.race: no branch finished and none waits")  # pragma: no cover
    wf._engine(_mark_winner, wf, slot, winner)
    slot.lane.advance(lanes[winner].clock)
    ok, value = outcomes[winner]
    if not ok:
        raise value
    return winner, value


def _start(wf: WorkflowContext, slot: Slot, count: int) -> tuple[list[Lane], int | None]:
    winner = _recorded_winner(wf, slot, count)
    return slot.lane.fork(slot.position, count), winner


def run_sync(wf: WorkflowContext, slot: Slot, fns: list[Callable[[], Any]]) -> tuple[int, Any]:
    lanes, winner = _start(wf, slot, len(fns))
    if winner is not None:
        (outcome,) = branches.outcomes_sync(wf, [lanes[winner]], [fns[winner]], None)
        return _conclude(wf, slot, lanes, [outcome if i == winner else (False, Aborted()) for i in range(len(lanes))],
                         winner)
    referee = _Referee(lanes)
    outcomes = branches.outcomes_sync(wf, lanes, [referee.entrant(i, fn) for i, fn in enumerate(fns)], None)
    return _conclude(wf, slot, lanes, outcomes, referee.winner)


async def run_async(wf: WorkflowContext, slot: Slot, fns: list[Callable[[], Any]]) -> tuple[int, Any]:
    lanes, winner = _start(wf, slot, len(fns))
    if winner is not None:
        (outcome,) = await branches.outcomes_async([lanes[winner]], [fns[winner]], None)
        return _conclude(wf, slot, lanes, [outcome if i == winner else (False, Aborted()) for i in range(len(lanes))],
                         winner)
    referee = _Referee(lanes)
    outcomes = await branches.outcomes_async(lanes, [referee.async_entrant(i, fn) for i, fn in enumerate(fns)], None)
    return _conclude(wf, slot, lanes, outcomes, referee.winner)
