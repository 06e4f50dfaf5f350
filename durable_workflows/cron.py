"""A workflow's cron schedule: the expressions of `@workflow(schedule=...)` and the time zone
they are read in, checked when the workflow is declared.

croniter reads the expressions. Times are computed in the schedule's zone (so "0 2 * * *" is
2 a.m. there, across daylight-saving changes) and handed back in UTC.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

# Added to `now` before looking back, so that a fire time equal to `now` counts as passed:
# croniter's get_prev() is strictly before its start.
_AT_OR_BEFORE = dt.timedelta(microseconds=1)


@dataclass(frozen=True)
class CronSchedule:
    """Hashable: the fire-time windows below are kept per schedule and zone."""

    expressions: tuple[str, ...]
    #: The IANA zone name given as schedule_tz, or None for Django's TIME_ZONE.
    zone: str | None = None

    @classmethod
    def parse(cls, workflow: str, schedule: str | Sequence[str], zone: str | None) -> CronSchedule:
        """Check every expression and the zone, naming the workflow in the error."""
        if not isinstance(schedule, (str, list, tuple)):
            raise ValueError(f"workflow {workflow!r}: schedule must be a cron expression or a list of them, "
                             f"got {schedule!r}")
        expressions = (schedule,) if isinstance(schedule, str) else tuple(schedule)
        if not expressions:
            raise ValueError(f"workflow {workflow!r}: schedule is empty; give a cron expression or a list of them")
        for expression in expressions:
            if not isinstance(expression, str) or not croniter.is_valid(expression):
                raise ValueError(f"workflow {workflow!r}: {expression!r} is not a valid cron expression")
        if zone is not None:
            if not isinstance(zone, str):
                raise ValueError(f"workflow {workflow!r}: schedule_tz must be a time zone name, got {zone!r}")
            _zone(workflow, zone)
        return cls(tuple(" ".join(e.split()) for e in expressions), zone)

    def tzinfo(self) -> dt.tzinfo:
        if self.zone is not None:
            return _zone("", self.zone)
        from django.utils import timezone

        return timezone.get_default_timezone()

    def latest(self, now: dt.datetime) -> dt.datetime:
        """The latest fire time at or before `now`, in UTC.

        Every worker asks this of every schedule each second, and the answer only changes at
        the next fire time: it is kept with that time, per process."""
        zone = self.tzinfo()
        window = _windows.get((self, zone))
        if window is not None and window[0] <= now < window[1]:
            return window[0]
        local = now.astimezone(zone) + _AT_OR_BEFORE
        latest = max(croniter(e, local).get_prev(dt.datetime) for e in self.expressions)
        window = (latest.astimezone(dt.timezone.utc), self.following(latest))
        _windows[(self, zone)] = window
        return window[0]

    def following(self, now: dt.datetime) -> dt.datetime:
        """The first fire time after `now`, in UTC."""
        local = now.astimezone(self.tzinfo())
        return min(croniter(e, local).get_next(dt.datetime) for e in self.expressions).astimezone(dt.timezone.utc)

    def describe(self) -> str:
        zone = f" ({self.zone})" if self.zone else ""
        return " | ".join(self.expressions) + zone


# (schedule, zone) -> (its latest fire time, the next one): the latest stays the answer until then.
_windows: dict[tuple[CronSchedule, dt.tzinfo], tuple[dt.datetime, dt.datetime]] = {}


def _zone(workflow: str, name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory of zones ("America")
        raise ValueError(f"workflow {workflow!r}: unknown schedule_tz {name!r}") from None
