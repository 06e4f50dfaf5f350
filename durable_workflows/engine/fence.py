"""The fence every write of a running executor carries.

A run may write only while the instance row still says it is the run's: the same epoch (no
other executor claimed it since), still Running, and (for the writes that record progress)
no cancel requested. One object states that condition once and renders it for each way the
engine writes: an ORM filter, and the WHERE clause of the PostgreSQL statements and the
heartbeat's UPDATE.
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

    def lenient(self) -> Fence:
        """The same fence, passing a cancel request (for the heartbeat and the cancel)."""
        return replace(self, uncancelled=False)

    def filter(self) -> dict[str, Any]:
        """Keyword arguments for `WorkflowInstance.objects.filter()`."""
        conditions: dict[str, Any] = {"pk": self.instance_id, "epoch": self.epoch, "state": self.state}
        if self.uncancelled:
            conditions["cancel_requested"] = False
        return conditions

    def where(self, casts: bool = False) -> str:
        """The condition as SQL with %s placeholders, for `params()`. `casts` types each
        placeholder, as a statement prepared on the server needs."""
        return _where(self.uncancelled, casts)

    def params(self) -> tuple[Any, ...]:
        """The values of `where()`'s placeholders (the same at every write of a run)."""
        return self._params

    @cached_property
    def _params(self) -> tuple[Any, ...]:
        return (self.instance_id, self.epoch, self.state.value)


@lru_cache(maxsize=4)
def _where(uncancelled: bool, casts: bool) -> str:
    text, bigint = ("::text", "::bigint") if casts else ("", "")
    sql = f"id = %s{text} AND epoch = %s{bigint} AND state = %s{text}"
    return sql + " AND NOT cancel_requested" if uncancelled else sql
