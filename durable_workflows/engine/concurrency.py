"""Concurrency limits: `@workflow(concurrency=N, concurrency_key=None)`.

At most N instances of a workflow (per value of its `concurrency_key` argument) hold a slot,
from their first claim until they finish. The others stay Queued and start oldest first as
slots free, across all clusters: the highest priority first, then the oldest
(priority.py), none of them before its start time (a delayed start), and a held one
(client.pause) neither takes a slot nor keeps a younger one from it.

There is no counter to drift. An instance holds a slot when its `slot_held` is set and it
is Running or Paused, so a finished one, whatever way it finished, holds none, and a crashed
holder keeps its slot until recovery runs it again or fails it. Two things are done under a
lock on the group (an advisory lock on PostgreSQL; SQLite's write lock, taken first):

- a fresh claim counts the holders. With a slot free and no instance waiting ahead of it
  (priority.ORDER), it takes the slot; otherwise the instance stays Queued, marked waiting (`dispatched_at` NULL,
  so the lost-task scans leave it alone), and those ahead of it that may go are sent;
- `admit()` sends the first waiting instances for the slots that are free. The run that
  frees a slot calls it once its final move has committed, when any instance of its group
  waits, and `recover()` calls it for every group with instances waiting, so a process that
  dies in between loses no wake-up.

A claim that waits because it counted a holder whose end was committing at that moment may
be missed by that holder's look for waiting instances; `recover()` admits it within a
recovery poll (a second by default). Anything else is ordered by the lock: the admit sees
the wait, or the claim sees the slot free.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import partial
from typing import Any

from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce

from .. import database
from ..dispatch import get_dispatcher, on_commit
from ..exceptions import UnknownWorkflow
from ..models import WorkflowInstance
from ..registry import WorkflowDefinition, get_definition
from ..states import State
from . import clock
from .locks import lock_txn
from .observe import about
from .priority import ORDER, ahead_of, ahead_of_outer, due, queued_due

logger = logging.getLogger("durable_workflows")

HOLDING = (State.RUNNING, State.PAUSED)
UNLIMITED = 10_000
# Stored key values longer than this are shortened, with a digest that keeps them apart.
MAX_KEY = 200


def key_of(definition: WorkflowDefinition, args: Sequence[Any], kwargs: dict[str, Any]) -> str | None:
    """The `concurrency_key` column of a new instance: None without a limit, "" for a limit
    on the whole workflow, else the JSON of the named argument's value."""
    if definition.concurrency is None:
        return None
    return argument_key(definition, definition.concurrency_key, args, kwargs)


def argument_key(definition: WorkflowDefinition, parameter: str | None, args: Sequence[Any],
                 kwargs: dict[str, Any]) -> str:
    """What a limit counted per `parameter` stores: "" when it is for the whole workflow,
    else the JSON of that argument's value, shortened with a digest when long."""
    if parameter is None:
        return ""
    bound = definition.signature.bind(None, *args, **kwargs)
    bound.apply_defaults()
    text = json.dumps(bound.arguments[parameter], sort_keys=True, default=str)
    if len(text) <= MAX_KEY:
        return text
    return f"{text[:MAX_KEY - 65]}~{hashlib.sha256(text.encode()).hexdigest()}"


def _group(workflow: str, key: str) -> Q:
    return Q(workflow=workflow, concurrency_key=key)


def _lock(workflow: str, key: str) -> None:
    """Serialize the claims and admissions of one group until the transaction ends."""
    lock_txn(workflow, key)


def holders(workflow: str, key: str) -> int:
    return WorkflowInstance.objects.filter(_group(workflow, key), slot_held=True, state__in=HOLDING).count()


def _waiting(now: datetime) -> Q:
    """Queued without a slot, and due to start."""
    return queued_due(now) & Q(slot_held=False, held=False)


def _first_waiting(workflow: str, key: str, count: int, now: datetime) -> list[tuple[str, int, datetime | None]]:
    """The first `count` instances of the group waiting for a slot, in ORDER: the next to go."""
    if count <= 0:
        return []
    queue = WorkflowInstance.objects.filter(_group(workflow, key), _waiting(now))
    return list(queue.order_by(*ORDER).values_list("pk", "epoch", "dispatched_at")[:count])


def _limit(workflow: str) -> int | None:
    try:
        return get_definition(workflow).concurrency
    except UnknownWorkflow:
        return None


def may_start_txn(instance: WorkflowInstance, now: datetime) -> bool | None:
    """For a fresh claim, inside its transaction: True when the instance takes a slot now,
    False when it runs without one (its workflow has no limit any more, or its run is only
    going to end it: cancelled, or past its deadline), None when it must wait.

    When it waits, it is left Queued and waiting, in this transaction, and those ahead of
    it that may go are sent once it commits."""
    limit = _limit(instance.workflow)
    key = instance.concurrency_key
    if key is None or limit is None:
        return False
    if instance.cancel_requested or (instance.deadline_at is not None and instance.deadline_at <= now):
        return False
    _lock(instance.workflow, key)
    # The holders and the ones waiting ahead go first: counted together, and no further
    # than the limit, in one query.
    holding = Q(slot_held=True, state__in=HOLDING)
    waiting_ahead = _waiting(now) & ahead_of(instance)
    ahead = WorkflowInstance.objects.filter(_group(instance.workflow, key)).filter(holding | waiting_ahead)
    if ahead.order_by()[:limit].count() < limit:
        return True
    free = limit - holders(instance.workflow, key)
    WorkflowInstance.objects.filter(
        pk=instance.pk, epoch=instance.epoch, state__in=(State.QUEUED, State.PENDING)
    ).update(state=State.QUEUED, dispatched_at=None, updated_at=now)
    _send(_first_waiting(instance.workflow, key, free, now), now)
    return None


def _send(ahead: list[tuple[str, int, datetime | None]], now: datetime) -> list[str]:
    """Dispatch, once the transaction commits, those of `ahead` that wait with no task out
    (the others have theirs on the way)."""
    sent = []
    dispatcher = get_dispatcher()
    for pk, epoch, dispatched_at in ahead:
        if dispatched_at is not None:
            continue
        # Due still: a debounce may have pushed its start back since it was read.
        if WorkflowInstance.objects.filter(due(now), pk=pk, epoch=epoch, state=State.QUEUED,
                                           dispatched_at__isnull=True).update(dispatched_at=now):
            on_commit(partial(dispatcher.dispatch, pk, "fresh", epoch))
            sent.append(pk)
    return sent


def admit(workflow: str, key: str) -> list[str]:
    """Send the first waiting instances of a group for the slots free now; returns their ids."""
    limit = _limit(workflow)
    now = clock.now()
    with database.atomic():
        _lock(workflow, key)
        # A workflow whose limit a deploy removed lets every one of them go.
        free = UNLIMITED if limit is None else limit - holders(workflow, key)
        return _send(_first_waiting(workflow, key, free, now), now)


def slot_freed(instance: WorkflowInstance) -> None:
    """After a final move of an instance that held a slot has committed: let the next one go."""
    if instance.concurrency_key is None or not instance.slot_held:
        return
    waiting = WorkflowInstance.objects.filter(_group(instance.workflow, instance.concurrency_key),
                                              _waiting(clock.now()), dispatched_at__isnull=True)
    if not waiting.exists():
        # Nobody waits, so nobody needs the lock's ordering. A claim that is about to wait
        # (it counted this instance before its end committed) is admitted by recover().
        return
    admitted = admit(instance.workflow, instance.concurrency_key)
    if admitted:
        logger.debug("durable_workflows: %s freed a slot of %s for %s", instance.pk, instance.workflow, admitted,
                     extra=about(instance.pk, instance.workflow))


def admit_waiting(limit: int = 100) -> list[str]:
    """For `recover()`: admit in every group that has instances waiting with no task out. A
    slot freed by a process that died before it called `slot_freed` is found here."""
    groups = (WorkflowInstance.objects.filter(_waiting(clock.now()), concurrency_key__isnull=False,
                                              dispatched_at__isnull=True)
              .order_by().values_list("workflow", "concurrency_key").distinct()[:limit])
    admitted: list[str] = []
    for workflow, key in list(groups):
        admitted += admit(workflow, key or "")
    return admitted


def queued_behind_each(instances: Iterable[WorkflowInstance]) -> dict[str, int]:
    """`queued_behind` for a page of instances, in one query: id -> how many go before it,
    for those that wait for a slot."""
    now = clock.now()
    waiting = [i.pk for i in instances if i.concurrency_key is not None and not i.slot_held
               and i.state == State.QUEUED and (i.start_at is None or i.start_at <= now)]
    if not waiting:
        return {}
    group = {"workflow": OuterRef("workflow"), "concurrency_key": OuterRef("concurrency_key")}
    holding = WorkflowInstance.objects.filter(slot_held=True, state__in=HOLDING, **group)
    older = WorkflowInstance.objects.filter(_waiting(now), ahead_of_outer(), **group)
    rows = WorkflowInstance.objects.filter(pk__in=waiting).annotate(
        holding=Coalesce(_count(holding), 0), older=Coalesce(_count(older), 0))
    return {pk: holding + older for pk, holding, older in rows.values_list("pk", "holding", "older")}


def _count(rows: QuerySet[WorkflowInstance]) -> Subquery:
    return Subquery(rows.order_by().values("workflow").annotate(n=Count("pk")).values("n"))


def queued_behind(instance: WorkflowInstance) -> int | None:
    """How many instances go before a Queued one of a limited workflow: the holders, and the
    ones waiting ahead of it. None when it is not waiting for a slot."""
    return queued_behind_each([instance]).get(instance.pk)
