"""Acting on every instance a filter selects (`client.bulk`): the API's `instances/bulk/`, the
admin's "select all" actions and `manage.py durable_workflows bulk` all come here.

The instances are taken a chunk at a time in primary-key order (keyset: each chunk starts
after the last id of the one before), each chunk in its own transaction, so a million
instances take bounded memory and no lock is held for long. Only instances that existed
when the action began are acted on, so the forks a bulk fork makes are not forked again.
An instance that cannot take the action (a cancel of one that has finished) is skipped.

Each action is one entry of `ACTIONS`: the states an instance must be in to take it, and
what it does to a chunk of ids inside the chunk's transaction, returning how many it acted on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from . import database, filters
from .engine import clock
from .engine.cancels import cancel_many_txn
from .engine.forks import fork
from .engine.holds import hold, release
from .exceptions import InvalidTransition, UnknownWorkflow, WorkflowNotFound
from .models import WorkflowInstance
from .states import TERMINAL, State

#: Ids read and acted on per transaction.
CHUNK_SIZE = 500

UNFINISHED = frozenset(State) - TERMINAL


@dataclass(frozen=True)
class Action:
    #: The states an instance must be in to take the action; the others are skipped.
    states: frozenset[State]
    #: Called with a chunk of ids and the reason, inside the chunk's transaction.
    chunk: Callable[[Sequence[str], str], int]
    #: Whether what it makes may match the filters again (a fork of a Failed instance may
    #: fail too): then it stops after as many instances as matched when it began.
    bounded: bool = False


def each(act: Callable[[str, str], Any]) -> Callable[[Sequence[str], str], int]:
    """A chunk function from a function of one instance: an instance that refuses (it moved
    on meanwhile, or its workflow is gone) is skipped and the rest of the chunk goes on."""

    def chunk(ids: Sequence[str], reason: str) -> int:
        done = 0
        for instance_id in ids:
            try:
                with database.atomic():
                    act(instance_id, reason)
            except (InvalidTransition, WorkflowNotFound, UnknownWorkflow, TypeError, ValueError):
                continue
            done += 1
        return done

    return chunk


ACTIONS: dict[str, Action] = {
    "cancel": Action(UNFINISHED, cancel_many_txn),
    # A fork of each finished instance from its first failed or unfinished position.
    "fork": Action(TERMINAL, each(lambda instance_id, reason: fork(instance_id)), bounded=True),
    "pause": Action(UNFINISHED, each(hold)),
    "resume": Action(UNFINISHED, lambda ids, reason: _released(ids)),
    # The API's choices, the command's help and the error messages read the names from here.
}


def _released(ids: Sequence[str]) -> int:
    """Resume each held instance of the chunk; those not held are skipped."""
    done = 0
    for instance_id in ids:
        try:
            done += release(instance_id)
        except WorkflowNotFound:  # deleted meanwhile
            continue
    return done


def check(action: Any, given: Mapping[str, Any], reason: Any = "") -> tuple[Action, dict[str, Any]]:
    """The action and the checked filters, or a `ValueError` naming what is wrong: an unknown
    action or filter, a bad value, or no filter at all (an action on every instance is too
    easy to run by mistake)."""
    if not isinstance(action, str) or action not in ACTIONS:
        raise ValueError(f"unknown bulk action {action!r}; expected one of: {', '.join(sorted(ACTIONS))}")
    if not isinstance(reason, str):
        raise TypeError(f"a reason must be text, got {reason!r}")
    checked = filters.check(given)
    if not checked:
        raise ValueError(f"bulk {action} needs at least one filter ({', '.join(filters.NAMES)}), "
                         "so that it never acts on every instance by mistake")
    return ACTIONS[action], checked


def run(action: str, given: Mapping[str, Any], reason: str = "", chunk_size: int | None = None) -> int:
    """Do `action` to every instance the filters select; returns how many took it (for a
    fork: how many forks were made). Bad input changes nothing (see `check`)."""
    _, checked = check(action, given, reason)
    return apply(action, WorkflowInstance.objects.filter(filters.condition(checked)), reason, chunk_size)


def apply(action: str, queryset: QuerySet[WorkflowInstance], reason: str = "", chunk_size: int | None = None) -> int:
    """`run` on the instances of a queryset (the admin's "select all" of a filtered list),
    without the need for a filter."""
    if action not in ACTIONS:
        raise ValueError(f"unknown bulk action {action!r}; expected one of: {', '.join(sorted(ACTIONS))}")
    chosen = ACTIONS[action]
    size = CHUNK_SIZE if chunk_size is None else chunk_size
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"chunk_size must be a whole number, 1 or more, got {size!r}")
    selected = queryset.filter(state__in=list(chosen.states), created_at__lte=clock.now()).order_by("pk")
    # A clock that stands still (a test's) stamps what the action makes with the same time
    # as what matched: never more than matched at the start.
    most = selected.count() if chosen.bounded else None
    done = seen = 0
    last: str | None = None
    while most is None or seen < most:
        with database.atomic():
            page = selected if last is None else selected.filter(pk__gt=last)
            limit = size if most is None else min(size, most - seen)
            ids = list(page.values_list("pk", flat=True)[:limit])
            if not ids:
                break
            done += chosen.chunk(ids, reason)
        seen += len(ids)
        last = ids[-1]
    return done
