"""Lanes: the line of positions that the workflow function, or one parallel branch of it,
runs along.

Every primitive takes the next position of the lane it is called in, so a branch has
positions of its own and a replay finds each branch's records whatever order the branches
finished in. A record's slot is (branch, position): the branch "" is the workflow function
itself, "3:1" is branch 1 of the `wf.parallel` at position 3, and "3:1/0:2" is a branch of
a `wf.parallel` inside that one.

Which lane a call is in is a context variable, set by the executor for the workflow
function and by `wf.parallel` for each branch it starts. A thread the engine did not start
has none of them, so a primitive called from it is refused rather than recorded in a lane
that another thread is using.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .waits import Wait

CURRENT: contextvars.ContextVar[Lane | None] = contextvars.ContextVar("durable_workflows_lane", default=None)


class Aborted(BaseException):
    """Unwinds a branch whose sibling failed: the branch starts no new primitive."""


@dataclass(eq=False)
class Group:
    """One `wf.parallel` call: a branch that fails marks it, and its siblings stop."""

    failed: bool = False


@dataclass(eq=False)
class Lane:
    wf: Any
    branch: str
    #: What `wf.now()` reads: the end of the lane's last step or wait.
    clock: datetime
    parent: Lane | None = None
    group: Group | None = None
    position: int = 0
    #: The signal that stopped the lane (it waits, or the run stopped), if any.
    stopped: BaseException | None = None
    #: The durable waits the lane stopped at: one, or one per waiting branch below it.
    waits: list[Wait] = field(default_factory=list)
    attempt: int | None = None
    #: In an async workflow, the asyncio task the lane belongs to: primitives called from
    #: another task would take positions in the order tasks happen to run.
    task: Any = None

    def advance(self, when: datetime | None) -> None:
        """Move the clock to `when`, never back: primitives that run at the same time (an
        `asyncio.gather`) may end in another order on replay, and the lane's time after
        them all is the same either way."""
        if when is not None and when > self.clock:
            self.clock = when

    def take(self) -> Slot:
        slot = Slot(self, self.position)
        self.position += 1
        return slot

    def aborted(self) -> bool:
        lane: Lane | None = self
        while lane is not None:
            if lane.group is not None and lane.group.failed:
                return True
            lane = lane.parent
        return False

    def fork(self, position: int, count: int) -> list[Lane]:
        """The lanes of the `count` branches of the `wf.parallel` at `position`."""
        group = Group()
        prefix = f"{self.branch}/" if self.branch else ""
        return [Lane(self.wf, f"{prefix}{position}:{i}", self.clock, parent=self, group=group)
                for i in range(count)]


@dataclass(frozen=True)
class Slot:
    """The position a primitive took, in its lane."""

    lane: Lane
    position: int

    @property
    def branch(self) -> str:
        return self.lane.branch

    @property
    def key(self) -> tuple[str, int]:
        return (self.lane.branch, self.position)

    def describe(self) -> str:
        return describe(self.lane.branch, self.position)


def describe(branch: str, position: int) -> str:
    """ "position 4", or "position 0 of branch 3:1 (branch 1 of the wf.parallel at position 3)"."""
    if not branch:
        return f"position {position}"
    at, index = branch.rsplit("/", 1)[-1].split(":")
    return f"position {position} of branch {branch} (branch {index} of the wf.parallel at position {at})"


def branch_data(branch: str) -> dict[str, Any]:
    """The lifecycle event's extra data for a record in `branch`: nothing for the function's own."""
    return {"branch": branch} if branch else {}
