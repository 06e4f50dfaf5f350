"""Rates as the decorator and the LIMITERS setting write them: "N/s", "N/m", "N/h", "N/d".

engine/ratelimit.py counts them over a sliding window: at most N uses in any window of the
period.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RATE = re.compile(r"\s*(\d+)\s*/\s*([smhd])\s*")


@dataclass(frozen=True)
class Rate:
    count: int
    period: timedelta
    text: str

    def __str__(self) -> str:
        return self.text

    def next_free(self, recent: Sequence[datetime], now: datetime) -> datetime | None:
        """When a use is allowed, given the stamps after now - period, latest first (at most
        `count` of them): None for now; else when the count-th latest leaves the window."""
        if len(recent) < self.count:
            return None
        return recent[self.count - 1] + self.period


def parse_rate(value: Any, what: str) -> Rate:
    """A rate from "N/s", "N/m", "N/h" or "N/d" with N of at least 1; anything else is a
    ValueError naming `what` and the value."""
    match = _RATE.fullmatch(value) if isinstance(value, str) else None
    if match is None or int(match.group(1)) < 1:
        raise ValueError(f"{what}: {value!r} is not a rate; write N/s, N/m, N/h or N/d with N at least 1, "
                         f"for example '10/m'")
    count, unit = int(match.group(1)), match.group(2)
    return Rate(count, timedelta(seconds=PERIODS[unit]), f"{count}/{unit}")
