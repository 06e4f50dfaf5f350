"""The instance state machine: one table, and one function every state change goes through."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import models

from .exceptions import InvalidTransition

if TYPE_CHECKING:
    from .models import WorkflowInstance


class State(models.TextChoices):
    """An instance's state: stored in lower case, equal to its value in either case."""

    PENDING = "pending", "Pending"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"

    # States compare equal to their value in any case ("completed", "Completed"), because
    # DESIGN and the admin name them capitalised while the API and the database use lower case.
    # A hash can agree with only one spelling, and it is the value's: as set members and dict
    # keys, use the State or its value ("completed" in {State.COMPLETED}).
    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return self.value == other.lower()
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    def __hash__(self) -> int:
        return hash(self.value)


TRANSITIONS: dict[State, frozenset[State]] = {
    State.PENDING: frozenset({State.RUNNING, State.QUEUED}),
    State.QUEUED: frozenset({State.RUNNING, State.CANCELLED}),
    State.RUNNING: frozenset({State.COMPLETED, State.PAUSED, State.FAILED, State.CANCELLED}),
    State.PAUSED: frozenset({State.RUNNING, State.CANCELLED}),
    State.COMPLETED: frozenset(),
    State.FAILED: frozenset(),
    State.CANCELLED: frozenset(),
}

TERMINAL = frozenset(state for state, nexts in TRANSITIONS.items() if not nexts)
FINISHING = frozenset({State.COMPLETED, State.FAILED, State.CANCELLED})


def as_state(value: State | str) -> State:
    """Accept `State.RUNNING`, "running" or "Running"; refuse anything else by name."""
    if isinstance(value, State):
        return value
    try:
        return State(str(value).lower())
    except ValueError:
        names = ", ".join(s.value for s in State)
        raise ValueError(f"unknown state {value!r}; expected one of: {names}") from None


def can_transition(from_state: State | str, to_state: State | str) -> bool:
    return as_state(to_state) in TRANSITIONS[as_state(from_state)]


def check_transition(from_state: State | str, to_state: State | str) -> None:
    source, target = as_state(from_state), as_state(to_state)
    if target not in TRANSITIONS[source]:
        allowed = ", ".join(sorted(s.label for s in TRANSITIONS[source])) or "none, it is terminal"
        raise InvalidTransition(
            f"cannot move from {source.label} to {target.label} (allowed: {allowed})"
        )


def transition_values(source: State, target: State, fields: dict[str, Any]) -> dict[str, Any]:
    """Check the move against the table and return the columns it writes.

    `transition()` runs the compare-and-set through the ORM; the engine's PostgreSQL fast
    path (engine/store/postgres.py) sends the same values and the same conditions as one statement
    together with the move's event rows. Both go through this check.
    """
    check_transition(source, target)
    from .engine import clock  # here: the engine imports this module as it loads

    now = clock.now()
    values: dict[str, Any] = {"state": target, "updated_at": now, **fields}
    if target in FINISHING:
        values.setdefault("finished_at", now)
        values.setdefault("lease_owner", "")
        values.setdefault("lease_expires_at", None)
    return values


def transition(
    instance: WorkflowInstance,
    to: State | str,
    *,
    expect_epoch: int | None = None,
    fence: Any = None,
    **fields: Any,
) -> WorkflowInstance:
    """Move `instance` to `to` with a compare-and-set on its current state (and epoch, or
    the whole fence of a running executor: `engine.fence.Fence`).

    Raises `InvalidTransition` when the table forbids the move, or when the row is no longer
    in the state the caller saw (another process moved it first). On success the in-memory
    instance is updated with the new state and fields.
    """
    from .models import WorkflowInstance

    target = as_state(to)
    source = as_state(instance.state)
    values = transition_values(source, target, fields)
    conditions: dict[str, Any] = {"pk": instance.pk, "state": source}
    if expect_epoch is not None:
        conditions["epoch"] = expect_epoch
    if fence is not None:
        conditions.update(fence.filter())
    updated = WorkflowInstance.objects.filter(**conditions).update(**values)
    if updated != 1:
        current = (
            WorkflowInstance.objects.filter(pk=instance.pk).values_list("state", flat=True).first()
        )
        if current is None:
            raise InvalidTransition(f"instance {instance.pk!r} no longer exists")
        raise InvalidTransition(
            f"cannot move instance {instance.pk!r} from {source.label} to {target.label}: "
            f"it is {as_state(current).label} now"
        )
    for key, value in values.items():
        setattr(instance, key, value)
    return instance
