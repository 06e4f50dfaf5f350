"""A workflow's cron schedule: the expressions of `@workflow(schedule=...)` and the time zone
they are read in, checked when the workflow is declared.

croniter reads the expressions and walks them on the local wall clock, as naive datetimes: there
it is plain calendar arithmetic (given aware datetimes, it steps through daylight-saving changes
by the wrong amount, skipping an hour or stepping back). Each matching wall-clock time is then
placed on the real timeline of the schedule's zone, and handed back in UTC, by these rules:

- An expression whose hour field is `*` (`0 * * * *`, `*/30 * * * *`, `@hourly`) runs by elapsed
  time: it fires at every instant whose local time matches. `0 * * * *` fires once in every UTC
  hour and `*/30 * * * *` every 30 minutes, through the repeated hour of a fall back (both
  occurrences are real time) and across a spring forward (the skipped hour has no local times,
  and no real time to fill either).
- Any other expression names local times of day (`30 2 * * *`, `0 9-17 * * 1-5`). One that
  occurs twice (fall back) fires once, at its first occurrence; one that does not occur (spring
  forward) fires once, when the clocks jump past it (03:00 for 02:30 in Europe/Paris).

Either way fire times are strictly increasing in UTC, and a list of expressions fires at the
union of their times, a time shared by two of them once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

UTC = dt.timezone.utc

# No zone moves its clocks by more than two hours at once (Antarctica/Troll goes from +00 to
# +02). Wall-clock times further apart than this are in the same order as their instants, so a
# search that looks this far past its first answer has seen every earlier one.
_SHIFT = dt.timedelta(hours=3)


@dataclass(frozen=True)
class _Expression:
    text: str
    #: The hour field is `*`: fire by elapsed time rather than at local times of day.
    every_hour: bool

    @classmethod
    def read(cls, text: str) -> _Expression:
        return cls(text, croniter(text).expanded[1] == ["*"])

    def instants(self, wall: dt.datetime, zone: dt.tzinfo) -> list[dt.datetime]:
        """The UTC instants a matching wall-clock time fires at: none, one or (every_hour, at
        a fall back) two."""
        # fold=0 reads an ambiguous time as its first occurrence, a skipped one with the offset
        # from before the jump; fold=1 the other way round.
        first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
        second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
        occurs = [at for at in sorted({first, second}) if _wall(at, zone) == wall]
        if self.every_hour:
            return occurs
        if occurs:
            return occurs[:1]
        return [_jump(min(first, second), max(first, second), zone)]

    def first_after(self, now: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
        """The walk starts _SHIFT of wall-clock time early, and goes on _SHIFT past the first
        fire time found: around a fall back a later wall time can be an earlier instant."""
        walls = _walk(self.text, _wall(now, zone) - _SHIFT, forward=True)
        best: dt.datetime | None = None
        stop: dt.datetime | None = None
        for wall in walls:
            if best is not None and stop is not None and wall > stop:
                return best
            for at in self.instants(wall, zone):
                if at > now and (best is None or at < best):
                    best = at
                    stop = stop or wall + _SHIFT
        raise AssertionError("unreachable: croniter's walk ends in an error")  # pragma: no cover

    def last_at_or_before(self, now: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
        """first_after's walk, backwards."""
        walls = _walk(self.text, _wall(now, zone) + _SHIFT, forward=False)
        best: dt.datetime | None = None
        stop: dt.datetime | None = None
        for wall in walls:
            if best is not None and stop is not None and wall < stop:
                return best
            for at in self.instants(wall, zone):
                if at <= now and (best is None or at > best):
                    best = at
                    stop = stop or wall - _SHIFT
        raise AssertionError("unreachable: croniter's walk ends in an error")  # pragma: no cover


@dataclass(frozen=True)
class CronSchedule:
    """Hashable: the fire-time windows below are kept per schedule and zone."""

    expressions: tuple[str, ...]
    #: The IANA zone name given as schedule_tz, or None for Django's TIME_ZONE.
    zone: str | None = None
    _read: tuple[_Expression, ...] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_read", tuple(_Expression.read(e) for e in self.expressions))

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
            try:
                croniter(expression, dt.datetime(2000, 1, 1)).get_next(dt.datetime)
            except CroniterBadDateError:
                raise ValueError(f"workflow {workflow!r}: {expression!r} matches no date, so it would never "
                                 f"fire") from None
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
        latest = max(e.last_at_or_before(now, zone) for e in self._read)
        window = (latest, self.following(latest))
        _windows[(self, zone)] = window
        return latest

    def following(self, now: dt.datetime) -> dt.datetime:
        """The first fire time after `now`, in UTC."""
        zone = self.tzinfo()
        return min(e.first_after(now, zone) for e in self._read)

    def describe(self) -> str:
        zone = f" ({self.zone})" if self.zone else ""
        return " | ".join(self.expressions) + zone


# (schedule, zone) -> (its latest fire time, the next one): the latest stays the answer until then.
_windows: dict[tuple[CronSchedule, dt.tzinfo], tuple[dt.datetime, dt.datetime]] = {}


def _wall(at: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
    """The naive local time `at` shows on the zone's clocks."""
    return at.astimezone(zone).replace(tzinfo=None, fold=0)


def _walk(expression: str, start: dt.datetime, forward: bool) -> Iterator[dt.datetime]:
    """The naive wall-clock times matching `expression`, from `start` (excluded) on."""
    times = croniter(expression, start)
    step = times.get_next if forward else times.get_prev
    while True:
        yield step(dt.datetime)


def _jump(before: dt.datetime, after: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
    """The instant the clocks jump, between `before` (on the old offset) and `after` (on the
    new): the next valid time after the local times the jump skips. Zones change offset on a
    whole second, so a search by seconds finds it."""
    offset = after.astimezone(zone).utcoffset()
    low, high = int(before.timestamp()), int(after.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if dt.datetime.fromtimestamp(middle, UTC).astimezone(zone).utcoffset() == offset:
            high = middle
        else:
            low = middle
    return dt.datetime.fromtimestamp(high, UTC)


def _zone(workflow: str, name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory of zones ("America")
        raise ValueError(f"workflow {workflow!r}: unknown schedule_tz {name!r}") from None
