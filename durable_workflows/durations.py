"""Parsing of the durations users write: "24 hours", "1.5h", "500ms", 30, timedelta(...)."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS: dict[str, float] = {}
for _seconds, _names in (
    (0.001, ("ms", "msec", "msecs", "millisecond", "milliseconds")),
    (1, ("s", "sec", "secs", "second", "seconds")),
    (60, ("m", "min", "mins", "minute", "minutes")),
    (3600, ("h", "hr", "hrs", "hour", "hours")),
    (86400, ("d", "day", "days")),
    (604800, ("w", "wk", "wks", "week", "weeks")),
):
    for _name in _names:
        _UNITS[_name] = _seconds

# Past this a duration is a mistake, not a plan, and a date that far from now would not even
# fit in a datetime: refused, as any other bad duration is.
LONGEST = timedelta(days=366_000)  # about a thousand years

_PART = re.compile(r"\s*(-?\d+(?:\.\d*)?|\.\d+)\s*([a-z]+)?\s*,?", re.IGNORECASE)


def parse_duration(
    value: timedelta | int | float | str, *, what: str = "duration", allow_negative: bool = False
) -> timedelta:
    """Turn a user-written duration into a timedelta, or raise ValueError naming the input.

    Negative values are refused unless `allow_negative` (a sleep into the past returns at
    once): for delays and timeouts a negative value is almost always a bug in the caller.
    """
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, bool):
        raise ValueError(f"invalid {what} {value!r}: expected a number of seconds, text or timedelta")
    elif isinstance(value, (int, float)):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"invalid {what} {value!r}: not a finite number")
        result = _timedelta(value, value, what)
    elif isinstance(value, str):
        result = _parse_text(value, what)
    else:
        raise ValueError(
            f"invalid {what} {value!r}: expected a timedelta, a number of seconds or text "
            f"such as '30s', '5 minutes' or '24 hours'"
        )
    if result < timedelta(0) and not allow_negative:
        raise ValueError(f"invalid {what} {value!r}: must not be negative")
    if abs(result) > LONGEST:
        raise ValueError(f"invalid {what} {value!r}: longer than a thousand years")
    return result


def _timedelta(seconds: float, value: object, what: str) -> timedelta:
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"invalid {what} {value!r}: longer than a thousand years") from None


def _parse_text(text: str, what: str) -> timedelta:
    stripped = text.strip()
    if not stripped:
        raise ValueError(f"invalid {what} {text!r}: empty text")
    total = 0.0
    pos = 0
    parts = 0
    while pos < len(stripped):
        match = _PART.match(stripped, pos)
        if not match or match.end() == pos:
            break
        number, unit = match.group(1), match.group(2)
        if unit is None:
            if parts or match.end() != len(stripped):
                break
            seconds = 1.0
        else:
            unit_seconds = _UNITS.get(unit.lower())
            if unit_seconds is None:
                raise ValueError(
                    f"invalid {what} {text!r}: unknown unit {unit!r} "
                    f"(use ms, s, m, h, d or w, or their long names)"
                )
            seconds = unit_seconds
        total += float(number) * seconds
        parts += 1
        pos = match.end()
    if pos != len(stripped) or not parts:
        raise ValueError(
            f"invalid {what} {text!r}: expected a number and a unit, "
            f"such as '30s', '5 minutes', '1.5h' or '2 days'"
        )
    return _timedelta(total, text, what)


def to_seconds(value: timedelta | int | float | str, *, what: str = "duration") -> float:
    return parse_duration(value, what=what).total_seconds()


def spell_duration(seconds: float) -> str:
    """Seconds as text that `parse_duration` reads back, in the largest unit that keeps the
    number whole: "30 days", "90 minutes", "1.5 seconds"."""
    for name, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        count = seconds / size
        if count >= 1 and count == int(count):
            return f"{int(count)} {name}{'' if count == 1 else 's'}"
    return f"{seconds:.15g} second{'' if seconds == 1 else 's'}"
