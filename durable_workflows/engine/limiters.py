"""Named step limiters: `DURABLE_WORKFLOWS["LIMITERS"] = {"stripe": "25/s"}` and
`wf.step("Charge", charge, order, limiter="stripe")`.

Before each attempt calls the step's function, the step takes a unit of its limiter: a row
with the time it was taken, under a lock on the limiter, counted over the rate's sliding
window (ratelimit.py), with the rows older than the window deleted as it goes. A unit is
committed before the function runs, so that every call it makes counts, in whichever
cluster, also when its worker dies in the call. When the limiter is full the step does not
hold its worker: it waits durably, as a retry delay does (its record Waiting, the instance
Paused with an alarm at the time a unit frees), and on resume tries again. A replayed step,
whose result is on record, takes no unit.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from .. import database
from ..conf import settings
from ..models import AlarmReason, LimiterUnit, StepKind, StepRecord, StepState
from ..rates import Rate, parse_rate
from . import clock
from .faults import engine_io
from .locks import lock_txn
from .ratelimit import recent_txn
from .waits import Wait

if TYPE_CHECKING:
    from .steps import StepCall

#: The longest limiter name (LimiterUnit.limiter).
MAX_NAME = 100


def configured() -> dict[str, Rate]:
    """The LIMITERS setting, parsed: a ValueError naming the limiter whose value is wrong."""
    value = settings.LIMITERS
    if not isinstance(value, dict):
        raise ValueError(f"DURABLE_WORKFLOWS['LIMITERS'] must be a dict of names to rates, got {value!r}")
    rates = {}
    for name, rate in value.items():
        if not isinstance(name, str) or not name or len(name) > MAX_NAME:
            raise ValueError(f"DURABLE_WORKFLOWS['LIMITERS']: a limiter name must be text of 1 to {MAX_NAME} "
                             f"characters, got {name!r}")
        rates[name] = parse_rate(rate, f"DURABLE_WORKFLOWS['LIMITERS'][{name!r}]")
    return rates


def rate_of(name: Any, step: str) -> Rate:
    """The rate of the limiter a step names; a ValueError naming both when there is none."""
    rates = configured()
    if not isinstance(name, str) or name not in rates:
        known = ", ".join(sorted(rates)) or "none are configured"
        raise ValueError(f"step {step!r}: unknown limiter {name!r} (DURABLE_WORKFLOWS['LIMITERS']: {known})")
    return rates[name]


def take(name: str, rate: Rate) -> tuple[datetime, datetime | None]:
    """Take a unit of limiter `name` if it has one free, in a transaction of its own. Returns
    the time read under the lock, and None when the unit was taken, else when one frees."""
    with database.atomic():
        lock_txn("limiter", name)
        now = clock.now()
        units = LimiterUnit.objects.filter(limiter=name)
        units.filter(taken_at__lte=now - rate.period).delete()
        free_at = rate.next_free(recent_txn(units, "taken_at", rate, now), now)
        if free_at is None:
            LimiterUnit.objects.create(limiter=name, taken_at=now)
    return now, free_at


def before_attempt(call: StepCall) -> None:
    """The hook `StepCall.start_attempt` calls first: take a unit of the step's limiter, or
    stop the lane until one frees."""
    if call.limiter is None or call.limiter_rate is None:
        return
    with engine_io():
        now, free_at = take(call.limiter, call.limiter_rate)
    record = call.record
    if record is None:
        # The step's first attempt: its record starts when its unit was taken.
        record = StepRecord.new(instance_id=call.wf.instance_id, branch=call.branch, position=call.position,
                                name=call.name, kind=StepKind.STEP, started_at=now, state=StepState.WAITING)
        call.record = record
        call.cursor.stage(record)
    elif record.attempts == 0:
        record.started_at = now  # it waited for its limiter before its first attempt
    if free_at is None:
        return
    record.state = StepState.WAITING
    record.wake_at = free_at
    call.cursor.keep(record)
    call.cursor.suspend(Wait(record, AlarmReason.LIMITER))
