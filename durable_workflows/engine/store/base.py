"""The one interface through which a run reads and writes what it stands on.

A run claims its instance, loads its records, and commits what it did in fenced writes; each
of those is one method here, so that each is written once for every database (`OrmStore`),
once more only where PostgreSQL can do it in a single statement (`PostgresStore`), and once
in memory for the replay core's unit tests (`MemoryStore`). What a method must do is said
here and held to by one contract suite (tests/store_contract.py) run against each store.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ...states import State

if TYPE_CHECKING:
    from ...models import Alarm, StepRecord, WorkflowInstance
    from ..events import EventBuffer, PendingEvent
    from ..fence import Fence
    from ..lease import Lease
    from ..waits import Wait

#: The states a fresh claim and a resume take an instance from (a recovery takes a Running
#: one whose lease expired).
CLAIMABLE = {"fresh": (State.QUEUED, State.PENDING), "resume": (State.PAUSED,)}


@dataclass
class Claimed:
    """What a claim took: the instance as it now is (Running, its epoch moved on), the
    events the claim buffered (sent once it committed), and for a resume the wait whose
    fired alarm woke it."""

    instance: WorkflowInstance
    events: EventBuffer
    woken: tuple[str, int] | None = None
    woken_at: datetime | None = None


@dataclass
class Write:
    """One fenced commit of a run: the instance row's new `values` (a checked transition
    when `transition`), then the records, the inbox messages its waits took (id -> the
    taking wait's position), the children it started, the alarm ending its `waits`, and
    its event rows. All of it or nothing; `LeaseLost` when the fence no longer holds."""

    fence: Fence
    values: dict[str, Any]
    records: list[StepRecord]
    events: list[PendingEvent]
    transition: bool = False
    taken: dict[int, int] = field(default_factory=dict)
    children: list[WorkflowInstance] = field(default_factory=list)
    children_events: list[EventBuffer] = field(default_factory=list)
    waits: list[Wait] | None = None
    #: Until when the lease runs if this write extends it.
    lease_until: datetime | None = None
    #: Set by the store: whether the lease was extended (`values` then says until when) ...
    renewed: bool = False
    #: ... and which of `children` were found to exist already.
    existing_children: set[str] = field(default_factory=set)


class Store(ABC):
    """Where a run's instance, records and events live."""

    #: For messages and the docs: which store this is.
    name = "store"

    @abstractmethod
    def claim(self, instance_id: str, mode: str, epoch: int | None, owner: str, now: datetime,
              lease_until: datetime) -> Claimed | None:
        """Move the instance to Running under a new epoch, owned by `owner` until
        `lease_until`, if a claim of `mode` may take it (for `epoch` when given: a task for
        an epoch that has moved on takes nothing). None when it is not ours to run."""

    @abstractmethod
    def load_records(self, instance_id: str) -> dict[tuple[str, int], StepRecord]:
        """Every record of the instance by slot (branch, position), in one read."""

    @abstractmethod
    def load_deferred(self, record: StepRecord, fields: list[str]) -> None:
        """Read the columns `load_records` left out of `record` (a step replayed unfinished)."""

    @abstractmethod
    def commit(self, write: Write) -> None:
        """Commit `write` (see `Write`), setting the new records' keys."""

    @abstractmethod
    def continue_as_new(self, fence: Fence, values: dict[str, Any], events: list[PendingEvent]) -> None:
        """Start the instance's next generation (engine/generations.py): `values` on the
        instance row (the checked move to Paused, the new input and generation), every step
        record and every inbox message already taken deleted, its alarm replaced by one
        fired now, and `events` written. All of it or nothing; `LeaseLost` when the fence no
        longer holds. Messages not yet taken stay, for the next generation's waits."""

    @abstractmethod
    def current(self, fence: Fence) -> WorkflowInstance | None:
        """The instance if the (lenient) fence still holds, else None: after a refused write,
        whether a cancel is why."""

    @abstractmethod
    def renew(self, lease: Lease) -> bool | None:
        """Extend the lease if the run still owns the instance (its fence, passing a cancel
        request, and its owner): None when it does not, else whether a cancel was requested.
        Called by the heartbeat, which must not wait long on one row."""

    @abstractmethod
    def release(self, lease: Lease) -> None:
        """Give the lease up at once, so that a recovery need not wait for it to expire."""

    @abstractmethod
    def has_children(self, instance_id: str) -> bool:
        """Whether the instance started any child."""

    # -- outside a run: what the contract suite and the unit tests start from and look at --
    @abstractmethod
    def insert(self, instance: WorkflowInstance) -> None:
        """Store a new instance as it is (the births of engine/lifecycle.py do more)."""

    @abstractmethod
    def instance(self, instance_id: str) -> WorkflowInstance | None:
        """The instance as stored, or None."""

    @abstractmethod
    def alarm(self, instance_id: str) -> Alarm | None:
        """The instance's alarm, or None."""

    @abstractmethod
    def fire(self, instance_id: str, now: datetime) -> int | None:
        """Make the instance's alarm fired now; its epoch, or None when it has no alarm."""

    @abstractmethod
    def event_rows(self, instance_id: str) -> list[tuple[str, int | None, dict[str, Any]]]:
        """The instance's event rows (kind, position, data), oldest first."""
