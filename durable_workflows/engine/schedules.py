"""Scheduled workflows: `@workflow(schedule="0 2 * * *")` started by the workers on time.

Each pass (`fire_schedules`, called by every worker's ticker) works out, for every scheduled
workflow, the latest fire time at or before now. One that no instance was started for yet is
started, with an id derived from the fire time. After downtime only the latest missed time
runs: a nightly report that missed three nights runs once, for last night.

Any number of passes may run at once, in any number of clusters. A `ScheduleFire` row per
workflow holds the fire time last started, moved forward by a compare-and-set in the same
transaction as the start; the derived id makes the start itself idempotent. The row outlives
retention, so a purged instance is never started again.

Fire times, and what a daylight-saving change does to them, come from `cron.CronSchedule`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import dataclass

from django.db import IntegrityError
from django.utils import timezone

from .. import database
from ..models import ScheduleFire, WorkflowInstance
from ..registry import WorkflowDefinition, all_definitions
from . import clock
from .observe import about
from .starts import start_one

logger = logging.getLogger("durable_workflows")


def scheduled() -> list[WorkflowDefinition]:
    return [d for d in all_definitions() if d.schedule is not None]


def fire_schedules(now: dt.datetime | None = None) -> list[str]:
    """Start the scheduled workflows that are due; returns the ids of the instances started.

    `now` stands for the current time, for tests and for replaying a missed window; a naive
    one is read in the project's TIME_ZONE, as Django reads naive datetimes.
    """
    if now is None:
        now = clock.now()
    elif not isinstance(now, dt.datetime):
        raise TypeError(f"fire_schedules(now=) takes a datetime, got {now!r}")
    elif timezone.is_naive(now):
        now = timezone.make_aware(now)
    definitions = scheduled()
    if not definitions:
        return []
    due = {d.name: (d, d.schedule.latest(now)) for d in definitions if d.schedule is not None}
    last = dict(ScheduleFire.objects.filter(workflow__in=due).values_list("workflow", "last_fire_at"))
    started = []
    for name, (definition, at) in due.items():
        previous = last.get(name)
        if previous is not None and previous >= at:
            continue
        instance_id = fire_id(name, at)
        if _claim_and_start(definition, at, previous, instance_id, now):
            started.append(instance_id)
    return started


def _claim_and_start(definition: WorkflowDefinition, at: dt.datetime, previous: dt.datetime | None,
                     instance_id: str, now: dt.datetime) -> bool:
    """Move the workflow's last fire time from `previous` to `at` and start its instance, in
    one transaction; False when another pass moved it first."""
    fields = {"last_fire_at": at, "last_instance_id": instance_id, "fired_at": now}
    with database.atomic():
        if previous is None:
            try:
                with database.atomic():
                    ScheduleFire.objects.create(workflow=definition.name, **fields)
            except IntegrityError:
                return False
        elif not ScheduleFire.objects.filter(workflow=definition.name, last_fire_at=previous).update(**fields):
            return False
        # False when the instance exists already (its row was lost, not the instance).
        created = start_one(definition, (), {}, instance_id)[1]
    if created:
        logger.info("durable_workflows: started %s for its fire time %s", instance_id, at.isoformat(),
                    extra=about(instance_id, definition.name))
    return created


def fire_id(workflow: str, at: dt.datetime) -> str:
    """The instance id of a fire time: "<workflow>@<UTC time>", readable in lists."""
    stamp = at.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    instance_id = f"{workflow}@{stamp}"
    if len(instance_id) <= 255:
        return instance_id
    digest = hashlib.sha256(workflow.encode()).hexdigest()[:16]
    return f"{workflow[:200]}~{digest}@{stamp}"


def next_fire(definition: WorkflowDefinition, now: dt.datetime | None = None) -> dt.datetime | None:
    """The next time the workers start `definition`, or None when it has no schedule."""
    if definition.schedule is None:
        return None
    return definition.schedule.following(now or clock.now())


@dataclass(frozen=True)
class ScheduleStatus:
    """What the admin, the command and operators want to know about one schedule."""

    workflow: str
    schedule: str
    next_fire_at: dt.datetime | None
    last_fire_at: dt.datetime | None
    #: The instance started for the last fire time ("" when it never fired), and its state
    #: ("purged" once retention deleted it).
    last_instance_id: str
    last_state: str


def statuses(now: dt.datetime | None = None) -> list[ScheduleStatus]:
    """One row per scheduled workflow, fired or not yet, in two queries."""
    now = now or clock.now()
    definitions = scheduled()
    fires = {f.workflow: f for f in ScheduleFire.objects.filter(workflow__in=[d.name for d in definitions])}
    states = dict(WorkflowInstance.objects.filter(pk__in=[f.last_instance_id for f in fires.values()])
                  .values_list("pk", "state"))
    rows = []
    for definition in definitions:
        fire = fires.get(definition.name)
        last_id = fire.last_instance_id if fire else ""
        rows.append(ScheduleStatus(
            workflow=definition.name,
            schedule=definition.schedule.describe() if definition.schedule else "",
            next_fire_at=next_fire(definition, now),
            last_fire_at=fire.last_fire_at if fire else None,
            last_instance_id=last_id,
            last_state=str(states.get(last_id, "purged" if last_id else "")),
        ))
    return rows
