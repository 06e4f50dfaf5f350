"""How the admin words times, durations and stored values, kept apart from the pages.

Operators read these at a glance ("resumes in 3 h 12 min"), so the wording is fixed here and
tested here rather than in templates.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from .. import serialization
from ..conf import settings
from ..engine import clock
from ..exceptions import CodecError

_UNITS = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))

#: Stored values longer than this are cut in lists and in the step timeline.
SHORT_VALUE_CHARS = 160
#: Where a value is shown whole (input, result, a step's result, an event's payload), it is
#: cut past this: a megabyte of JSON would make the page a megabyte too.
LONG_VALUE_CHARS = 10_000


def humanize_seconds(seconds: float) -> str:
    """Two units at most, largest first: '3 h 12 min', '2 d 4 h', '45 s', '850 ms'.

    A pause of days is read for its days and hours; a retry delay of seconds for its
    seconds. More precision than two units is noise on a monitoring page.
    """
    seconds = abs(seconds)
    if seconds < 1:
        return f"{round(seconds * 1000)} ms"
    if seconds < 10 and seconds != int(seconds):
        return f"{seconds:.1f} s"
    remaining = int(round(seconds))
    parts: list[str] = []
    for unit, size in _UNITS:
        if remaining >= size or (unit == "s" and not parts):
            count, remaining = divmod(remaining, size)
            parts.append(f"{count} {unit}")
            if len(parts) == 2:
                break
        elif parts:
            break
    return " ".join(parts)


def humanize_delta(delta: timedelta) -> str:
    return humanize_seconds(delta.total_seconds())


def relative(moment: datetime, now: datetime | None = None) -> str:
    """'in 3 h 12 min' for the future, '5 s ago' for the past."""
    now = now or clock.now()
    delta = (moment - now).total_seconds()
    if delta >= 0:
        return f"in {humanize_seconds(delta)}"
    return f"{humanize_seconds(delta)} ago"


def alarm_text(fire_at: datetime, fired_at: datetime | None, reason_label: str,
               now: datetime | None = None) -> str:
    """What a pending alarm means for the operator, in one line."""
    now = now or clock.now()
    if fired_at is not None:
        return f"{reason_label} over; handed to a worker {relative(fired_at, now)}"
    if fire_at > now:
        return f"resumes {relative(fire_at, now)} ({reason_label.lower()} ends)"
    return f"due {relative(fire_at, now)}: waiting for the alarm dispatcher"


def step_duration(started_at: datetime | None, finished_at: datetime | None,
                  now: datetime | None = None, planned_end: datetime | None = None) -> str:
    """How long a step took, or has taken so far; a sleep reads as the pause it asked for."""
    if started_at is None:
        return ""
    if finished_at is None:
        if planned_end is not None:
            return humanize_delta(planned_end - started_at)
        return f"{humanize_delta((now or clock.now()) - started_at)} so far"
    return humanize_delta(finished_at - started_at)


#: Set on an instance the admin shows: whether the user sees its stored values in plain.
SHOWN = "dw_values_shown"


def shown(instance: Any) -> bool:
    """Whether the page shows `instance`'s stored values; not, with a codec set, to whoever
    the page did not say may see them (codecs.shown_to)."""
    return bool(getattr(instance, SHOWN, settings.CODEC is None))


def decode(text: str | None) -> Any:
    """Load a stored value; a value the serializer cannot read is shown as it is stored."""
    if text is None or text == "":
        return None
    try:
        return serialization.loads(text)
    except CodecError as exc:  # a key no longer held: say so, rather than show the token
        return f"({exc})"
    except Exception:  # a page must render even if the serializer setting changed
        return text


def compact(value: Any) -> str:
    """One-line JSON; types JSON lacks are shown as text."""
    return json.dumps(value, ensure_ascii=False, default=str)


def pretty(value: Any) -> str:
    """One line when it fits, indented JSON when it does not."""
    line = compact(value)
    if len(line) <= 80:
        return line
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def pretty_input(text: str | None) -> str:
    """The arguments as the function received them: the keyword object, the positional list,
    or both when both were given."""
    data = decode(text)
    if not isinstance(data, dict) or set(data) - {"args", "kwargs"}:
        return pretty(data)
    args, kwargs = data.get("args") or [], data.get("kwargs") or {}
    if args and kwargs:
        return pretty({"args": args, "kwargs": kwargs})
    return pretty(kwargs if kwargs or not args else args)


def capped(text: str, limit: int = LONG_VALUE_CHARS) -> str:
    """`text` whole, or its start and how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n… ({len(text) - limit:,} more characters)"


def shorten(text: str, limit: int = SHORT_VALUE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
