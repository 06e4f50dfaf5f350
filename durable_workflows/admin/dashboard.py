"""The admin dashboard: what is stuck, what is slow, what failed today, at a glance.

Each panel is one query that an index serves, so the page stays quick on millions of
instances: the state counts are capped and estimated past that (counting.py); the hourly charts
read the last 24 hours by creation and by finish time; the slowest steps and the worst alarm
lag are taken from the latest RECENT_STEPS step records; the stuck instances from the index
of Running ones by lease.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, DurationField, ExpressionWrapper, F
from django.db.models.functions import TruncHour
from django.utils import timezone
from django.utils.safestring import SafeString

from ..engine import clock
from ..models import Alarm, StepKind, StepRecord, StepState, WorkflowInstance
from ..states import State
from . import charts
from .display import humanize_seconds, relative

RECENT_STEPS = 10_000
TOP = 10


@dataclass(frozen=True)
class SlowStep:
    instance_id: str
    workflow: str
    name: str
    seconds: float
    attempts: int
    finished_at: datetime | None

    @property
    def duration(self) -> str:
        return humanize_seconds(self.seconds)


def hourly(now: datetime) -> SafeString:
    """Starts and failures per hour over the last 24 hours."""
    first = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
    hours = [first + timedelta(hours=h) for h in range(24)]
    starts = _per_hour(WorkflowInstance.objects.filter(created_at__gte=first), "created_at")
    failures = _per_hour(WorkflowInstance.objects.filter(finished_at__gte=first, state=State.FAILED), "finished_at")
    return charts.hourly_bars(hours, [
        charts.Series("starts", [starts.get(h, 0) for h in hours], "dw-bar-starts"),
        charts.Series("failures", [failures.get(h, 0) for h in hours], "dw-bar-failures"),
    ], title="Starts and failures per hour, last 24 hours")


def _per_hour(queryset: Any, field: str) -> dict[datetime, int]:
    rows = (queryset.order_by().annotate(hour=TruncHour(field, tzinfo=timezone.get_current_timezone()))
            .values_list("hour").annotate(n=Count("*")))
    return {hour.astimezone(timezone.get_current_timezone()): n for hour, n in rows}


def _recent_steps(kind: str) -> Any:
    """The finished records of a kind among the latest RECENT_STEPS records of any kind: an
    id range of the key's index. (The latest RECENT_STEPS of one kind would walk the whole
    table back for a kind that is rare, as sleeps are among millions of steps.)"""
    oldest = StepRecord.objects.order_by("-id").values_list("id", flat=True)[RECENT_STEPS - 1:RECENT_STEPS]
    recent = StepRecord.objects.filter(kind=kind, state=StepState.COMPLETED, finished_at__isnull=False)
    floor = list(oldest)
    return recent.filter(id__gte=floor[0]) if floor else recent


def slowest_steps() -> list[SlowStep]:
    took = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    rows = (_recent_steps(StepKind.STEP).filter(started_at__isnull=False).annotate(took=took)
            .order_by("-took").values_list("instance_id", "name", "took", "attempts", "finished_at")[:TOP])
    return _with_workflows([SlowStep(i, "", name, t.total_seconds(), a, f) for i, name, t, a, f in rows])


def worst_alarm_lag() -> list[SlowStep]:
    """Sleeps that ended latest after they were due, and alarms overdue now."""
    now = clock.now()
    lag = ExpressionWrapper(F("finished_at") - F("wake_at"), output_field=DurationField())
    rows = (_recent_steps(StepKind.SLEEP).filter(wake_at__isnull=False).annotate(lag=lag)
            .order_by("-lag").values_list("instance_id", "name", "lag", "finished_at")[:TOP])
    found = [SlowStep(i, "", name, max(0.0, t.total_seconds()), 1, f) for i, name, t, f in rows]
    overdue = Alarm.objects.filter(fired_at__isnull=True, fire_at__lt=now).order_by("fire_at")
    found += [SlowStep(i, "", f"{reason} alarm, not fired yet", (now - at).total_seconds(), 1, None)
              for i, reason, at in overdue.values_list("instance_id", "reason", "fire_at")[:TOP]]
    found.sort(key=lambda s: -s.seconds)
    return _with_workflows(found[:TOP])


def _with_workflows(rows: list[SlowStep]) -> list[SlowStep]:
    names = dict(WorkflowInstance.objects.filter(pk__in={r.instance_id for r in rows}).values_list("pk", "workflow"))
    return [SlowStep(r.instance_id, names.get(r.instance_id, "?"), r.name, r.seconds, r.attempts, r.finished_at)
            for r in rows]


def stuck(now: datetime) -> list[dict[str, Any]]:
    """Running instances whose lease has expired: their worker is gone, recovery is due."""
    rows = (WorkflowInstance.objects.filter(state=State.RUNNING, lease_expires_at__lt=now)
            .order_by("lease_expires_at").values_list("pk", "workflow", "lease_expires_at", "lease_owner")[:TOP])
    return [{"instance_id": pk, "workflow": workflow, "expired": relative(at, now) if at else "", "owner": owner}
            for pk, workflow, at, owner in rows]


def context() -> dict[str, Any]:
    from .instance import state_counts

    now = clock.now()
    by_state = state_counts()
    return {
        "dw_state_counts": [(state, by_state[state]) for state in State],
        "dw_estimated": any(c.estimated for c in by_state.values()),
        "dw_hourly": hourly(now),
        "dw_slowest": slowest_steps(),
        "dw_lag": worst_alarm_lag(),
        "dw_stuck": stuck(now),
        "dw_recent_steps": RECENT_STEPS,
    }
