"""What a start may ask for besides the arguments: a priority, a delayed start, a debounce.

Checked here, before anything is stored, by every way in (`client.start`, `start_with`,
`start_many`, the API): each bad value is a ValueError naming it. `@workflow(priority=...)`
checks its default here too, at import.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .durations import parse_duration

MIN_PRIORITY = -100
MAX_PRIORITY = 100

#: The names `client.start` keeps for itself; a workflow parameter of one of these names is
#: passed with `client.start_with(workflow, args, kwargs, ...)`.
RESERVED = ("instance_id", "priority", "delay", "start_at", "debounce", "debounce_key", "debounce_max")

# Stored debounce keys longer than this are shortened, with a digest that keeps them apart.
MAX_KEY = 200

Duration = timedelta | int | float | str


def check_priority(value: Any, what: str = "priority") -> int:
    """`value` if it is a valid priority (an int from -100 to 100, as `django.tasks` has it);
    a ValueError naming it otherwise: a bool, a float or text is a mistake, not a number to round."""
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_PRIORITY <= value <= MAX_PRIORITY:
        raise ValueError(f"{what} must be a whole number from {MIN_PRIORITY} to {MAX_PRIORITY}, got {value!r}")
    return value


@dataclass(frozen=True)
class StartOptions:
    #: None: the workflow's own (`@workflow(priority=...)`, 0 by default).
    priority: int | None = None
    delay: timedelta | None = None
    start_at: datetime | None = None
    debounce: timedelta | None = None
    #: The debounce key as stored (its JSON); "" for one key for the whole workflow.
    debounce_key: str | None = None
    debounce_max: timedelta | None = None

    @classmethod
    def parse(cls, *, priority: Any = None, delay: Any = None, start_at: Any = None, debounce: Any = None,
              debounce_key: Any = None, debounce_max: Any = None, instance_id: str | None = None) -> StartOptions:
        if delay is not None and start_at is not None:
            raise ValueError("give delay= or start_at=, not both")
        if start_at is not None:
            if not isinstance(start_at, datetime):
                raise ValueError(f"start_at must be a datetime, got {start_at!r}")
            if start_at.utcoffset() is None:
                raise ValueError(f"start_at must be an aware datetime (with a time zone), got {start_at!r}")
        if debounce is None:
            for name, value in (("debounce_key", debounce_key), ("debounce_max", debounce_max)):
                if value is not None:
                    raise ValueError(f"{name} is given without debounce=")
        else:
            if delay is not None or start_at is not None:
                raise ValueError("a debounced start is delayed by its debounce: give no delay= or start_at=")
            if instance_id is not None:
                raise ValueError("a debounced start gives back the pending instance of its key: "
                                 "it takes no instance_id")
        return cls(
            priority=None if priority is None else check_priority(priority),
            delay=None if delay is None else parse_duration(delay, what="delay"),
            start_at=start_at,
            debounce=None if debounce is None else _positive(debounce, "debounce"),
            debounce_key=None if debounce is None else _key(debounce_key),
            debounce_max=None if debounce_max is None else _positive(debounce_max, "debounce_max"),
        )

    def start_time(self, now: datetime) -> datetime | None:
        """When an instance started `now` with these options starts: None for at once."""
        if self.debounce is not None:
            return now + min(self.debounce, self.debounce_max or self.debounce)
        when = now + self.delay if self.delay is not None else self.start_at
        return when if when is not None and when > now else None


def _positive(value: Any, what: str) -> timedelta:
    duration = parse_duration(value, what=what)
    if duration <= timedelta(0):
        raise ValueError(f"invalid {what} {value!r}: must be more than 0")
    return duration


def _key(value: Any) -> str:
    if value is None:
        return ""
    try:
        text = json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        raise ValueError(f"debounce_key must be a JSON value (text, a number, a list...), got {value!r}") from None
    if len(text) <= MAX_KEY:
        return text
    return f"{text[:MAX_KEY - 65]}~{hashlib.sha256(text.encode()).hexdigest()}"
