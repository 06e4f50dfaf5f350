"""The fence every write of a running executor carries.

A run may write only while the instance row still says it is the run's: the same epoch (no
other executor claimed it since), still Running, (for the writes that record progress) no
cancel requested, and (for its checkpoints) not held by an operator (`client.pause`). One
object states that condition once and renders it for each way the engine writes: an ORM
filter, and the WHERE clause of the PostgreSQL statements and the heartbeat's UPDATE.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
from typing import Any

from ..states import State


@dataclass(frozen=True)
class Fence:
    instance_id: str
    epoch: int
    state: State = State.RUNNING
    #: Refuse the write once a cancel is requested (progress writes); the heartbeat and the
    #: move to Cancelled itself leave this off.
    uncancelled: bool = True
    #: Refuse the write once the instance is held: a run learns of a hold from its
    #: checkpoints (checkpoint.py), and stops before its next step. The run's end, its move
    #: to Paused and what it writes again past the hold leave this off.
    unheld: bool = False

    def lenient(self) -> Fence:
        """The same fence, passing a cancel request (for the heartbeat and the cancel)."""
        return replace(self, uncancelled=False, unheld=False)

    @cached_property
    def new_work(self) -> Fence:
        """The same fence, refusing a hold too: for the checkpoints of a run's progress."""
        return replace(self, unheld=True)

    def filter(self) -> dict[str, Any]:
        """Keyword arguments for `WorkflowInstance.objects.filter()`."""
        conditions: dict[str, Any] = {"pk": self.instance_id, "epoch": self.epoch, "state": self.state}
        if self.uncancelled:
            conditions["cancel_requested"] = False
        if self.unheld:
            conditions["held"] = False
        return conditions

    def where(self, casts: bool = False) -> str:
        """The condition as SQL with %s placeholders, for `params()`. `casts` types each
        placeholder, as a statement prepared on the server needs."""
        return _where(self.uncancelled, self.unheld, casts)

    def params(self) -> tuple[Any, ...]:
        """The values of `where()`'s placeholders (the same at every write of a run)."""
        return self._params

    @cached_property
    def _params(self) -> tuple[Any, ...]:
        return (self.instance_id, self.epoch, self.state.value)


@lru_cache(maxsize=8)
def _where(uncancelled: bool, unheld: bool, casts: bool) -> str:
    text, bigint = ("::text", "::bigint") if casts else ("", "")
    sql = f"id = %s{text} AND epoch = %s{bigint} AND state = %s{text}"
    if uncancelled:
        sql += " AND NOT cancel_requested"
    return sql + " AND NOT held" if unheld else sql
