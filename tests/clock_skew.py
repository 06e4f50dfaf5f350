"""A process whose wall clock is off: `time.time` and `django.utils.timezone.now` moved by a
fixed amount, as on a machine whose clock has drifted. The engine runs unchanged; only the
clock it reads is wrong. Monotonic clocks stay as they are (they measure intervals, and a
drifted machine's still do).

The worker tests' settings apply it to a whole `qcluster` process (DW_CLOCK_SKEW_SECONDS);
other tests use `skewed()` around the calls that should run on the wrong clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone


def apply(seconds: float) -> Callable[[], None]:
    """Move this process's wall clock by `seconds`; returns what puts it back."""
    real_time, real_time_ns, real_now = time.time, time.time_ns, timezone.now
    shift = timedelta(seconds=seconds)

    def skewed_time() -> float:
        return real_time() + seconds

    def skewed_time_ns() -> int:
        return real_time_ns() + int(seconds * 1e9)

    def skewed_now() -> datetime:
        return real_now() + shift

    time.time, time.time_ns, timezone.now = skewed_time, skewed_time_ns, skewed_now  # type: ignore[assignment]

    def restore() -> None:
        time.time, time.time_ns, timezone.now = real_time, real_time_ns, real_now

    return restore


@contextmanager
def skewed(seconds: float) -> Iterator[Any]:
    restore = apply(seconds)
    try:
        yield
    finally:
        restore()
