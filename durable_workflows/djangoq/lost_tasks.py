"""Tasks a dead cluster took with it, found as soon as the broker shows it.

`recover()` sends a Queued instance's task again only REDISPATCH_AFTER_SECONDS after it went
out, because a task that has not run yet may just be waiting behind a long queue. Two things
the broker shows let the workers tell sooner, within LEASE_SECONDS, that a task is gone:

- django-q2's ORM broker keeps a task's row, locked, from the moment a cluster takes it until
  the task is done. A row taken LEASE_SECONDS ago whose instance is still waiting for that
  very run (Queued, or Paused for a resume, at the task's epoch) was taken by a cluster that
  died with it in hand, or whose guard died and left its workers gone. Its lock is cleared
  and the next free worker takes the same task, instead of after django-q2's `retry`.
- A broker with no task waiting at all (the Redis broker keeps no receipts of taken tasks):
  a Queued instance whose task went out LEASE_SECONDS ago is behind no backlog, so its task
  was taken and lost. It is sent again (`engine.scans.redispatch_stalled`).

Being wrong costs a duplicate task, which does nothing (a task is for one epoch), and both
back off per instance like `recover()`'s redispatch.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.db.models import F
from django.utils import timezone
from django_q.conf import Conf

from ..conf import settings
from ..engine.scans import MAX_BACKOFF_POWER, redispatch_stalled
from ..models import WorkflowInstance
from ..states import State
from .dispatcher import RUN_INSTANCE_NAMES, queue_broker

logger = logging.getLogger("durable_workflows")

_WAITING_FOR = {"fresh": State.QUEUED, "resume": State.PAUSED}


def find_lost_tasks(limit: int = 100) -> int:
    """Release the ORM broker's tasks held by dead clusters, and send again the tasks of
    Queued instances when the broker holds none waiting. Returns how many it did."""
    grace = float(settings.LEASE_SECONDS)
    broker = queue_broker()
    found = _release_taken_rows(broker, grace, limit) if Conf.ORM else 0
    try:
        idle = broker.queue_size() == 0
    except Exception as error:  # a broker that is down: recover() sends its tasks once it is back
        logger.debug("durable_workflows: broker queue size unknown: %s", error)
        return found
    if idle:
        found += len(redispatch_stalled(grace, limit))
    return found


def _release_taken_rows(broker: Any, grace: float, limit: int) -> int:
    from django_q.models import OrmQ
    from django_q.signing import SignedPackage

    # django-q2's clock, not the engine's: its workers set and compare a row's lock by their
    # own timezone.now().
    now = timezone.now()
    retry = timedelta(seconds=Conf.RETRY)
    # django-q2 sets a taken row's lock to when it may be taken again: taken + RETRY.
    rows = OrmQ.objects.using(Conf.ORM).filter(
        key=broker.list_key, lock__gt=now, lock__lt=now + retry - timedelta(seconds=grace)
    ).values_list("id", "lock", "payload")[:limit]
    tasks: dict[int, tuple[str, str, int, Any]] = {}
    for pk, lock, payload in rows:
        try:
            task = SignedPackage.loads(payload)
        except Exception:
            continue  # not ours to read (another project's key, or a changed SECRET_KEY)
        if task.get("func") not in RUN_INSTANCE_NAMES or len(task.get("args", ())) != 3:
            continue
        instance_id, mode, epoch = task["args"]
        if mode in _WAITING_FOR:
            tasks[pk] = (instance_id, mode, epoch, lock)
    if not tasks:
        return 0
    instances = {
        pk: (state, epoch, redispatches)
        for pk, state, epoch, redispatches in WorkflowInstance.objects.filter(
            pk__in={task[0] for task in tasks.values()}
        ).values_list("pk", "state", "epoch", "redispatches")
    }
    released = 0
    for pk, (instance_id, mode, epoch, lock) in tasks.items():
        state, current_epoch, redispatches = instances.get(instance_id, (None, None, 0))
        if state != _WAITING_FOR[mode] or current_epoch != epoch:
            continue  # it ran, or moved on: the task is a stale duplicate, left to finish
        wait = timedelta(seconds=grace * 2 ** min(redispatches, MAX_BACKOFF_POWER))
        if lock - retry > now - wait:
            continue
        if OrmQ.objects.using(Conf.ORM).filter(id=pk, lock=lock).update(lock=now):
            WorkflowInstance.objects.filter(pk=instance_id).update(redispatches=F("redispatches") + 1)
            released += 1
    if released:
        logger.warning("durable_workflows: %d task(s) taken by a cluster that is gone are queued again", released)
    return released
