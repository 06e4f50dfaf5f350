"""Workflows for the engine tests. Importable by subprocesses (crash tests), so kept here."""

from __future__ import annotations

import os
import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path

from durable_workflows import NonRetryableError, RetryPolicy, client, workflow

SEEN: Counter[str] = Counter()
GATES: dict[str, threading.Event] = {}


def count(name: str, value=None):
    SEEN[name] += 1
    return value


@workflow("engine.between")
def between(wf, duration="1h"):
    SEEN["top"] += 1
    first = wf.step("First", count, "first", 1)
    SEEN["between"] += 1
    wf.sleep(duration)
    SEEN["after-sleep"] += 1
    return wf.step("Second", count, "second", first + 1)


@workflow("engine.loop")
def loop(wf, n: int):
    total = 0
    for i in range(n):
        total += wf.step("Add", count, "add", i)
    return total


@workflow("engine.none")
def returns_none(wf):
    first = wf.step("Nothing", count, "nothing", None)
    wf.sleep("1h")
    return {"first": first}


@workflow("engine.types")
def types(wf, value):
    return wf.step("Echo", count, "echo", value)


@workflow("engine.unstorable_result")
def unstorable_result(wf):
    return wf.step("Make object", count, "object", object())


@workflow("engine.bad_duration")
def bad_duration(wf, text):
    wf.step("Before", count, "before", 1)
    wf.sleep(text)


@workflow("engine.versioned")
def versioned(wf, first_name):
    wf.step(first_name, count, first_name, 1)
    wf.sleep("1h")
    return wf.step("Last", count, "last", 2)


def always_fails(kind: str = "ConnectionError"):
    SEEN["fails"] += 1
    if kind == "NonRetryable":
        raise NonRetryableError(f"permanent {SEEN['fails']}")
    if kind == "ValueError":
        raise ValueError(f"bad value {SEEN['fails']}")
    raise ConnectionError(f"refused {SEEN['fails']}")


@workflow("engine.retrying")
def retrying(wf, backoff="exponential", attempts=4, delay="10s", kind="ConnectionError", **extra):
    policy = RetryPolicy(max_attempts=attempts, backoff=backoff, initial_delay=delay,
                         jitter=False, **extra)
    return wf.step("Call", always_fails, kind, retry=policy)


@workflow("engine.no_retry")
def no_retry(wf):
    return wf.step("Call", always_fails, "ValueError")


def slow(seconds_gate: str):
    GATES.setdefault(seconds_gate, threading.Event()).wait(30)
    return "late"


@workflow("engine.timeout")
def timeout_wf(wf, attempts=1):
    policy = None if attempts == 1 else RetryPolicy(max_attempts=attempts, initial_delay=0)
    return wf.step("Slow", slow, "never", timeout="200ms", retry=policy)


@workflow("engine.nested")
def nested(wf):
    def inner():
        return wf.step("Inner", count, "inner", 1)

    return wf.step("Outer", inner)


@workflow("engine.cancel_self")
def cancel_self(wf):
    wf.step("Ask to cancel", client.cancel, wf.instance_id, "from inside")
    wf.step("Never", count, "never", 1)
    return "not cancelled"


@workflow("engine.meta")
def meta_wf(wf, total=3):
    for i in range(total):
        wf.step("Work", count, "work", i)
        wf.set_meta("progress", {"done": i + 1, "total": total})
    wf.sleep("1h")
    return "done"


@workflow("engine.clock")
def clock(wf):
    first = wf.now()
    wf.step("Tick", count, "tick", 1)
    second = wf.now()
    wf.sleep("1h")
    return [first, second, wf.now(), wf.mode]


def wait_for_gate(name: str):
    SEEN[f"gate:{name}"] += 1
    GATES.setdefault(name, threading.Event()).wait(30)
    return name


@workflow("engine.gated")
def gated(wf, gate: str):
    wf.step("Gate", wait_for_gate, gate)
    return wf.step("After gate", count, "after-gate", 1)


def crash_once(marker: str):
    """Kills the process the first time (no cleanup, like a power cut); succeeds after."""
    path = Path(marker)
    with path.open("a") as log:
        log.write("in-flight\n")
    if path.read_text().count("in-flight") == 1:
        os._exit(17)
    return "survived"


def log_line(marker: str, text: str):
    with Path(marker).open("a") as log:
        log.write(text + "\n")
    return text


@workflow("engine.crashy")
def crashy(wf, marker: str):
    wf.step("One", log_line, marker, "one")
    wf.step("Two", log_line, marker, "two")
    middle = wf.step("Crash", crash_once, marker)
    wf.step("Four", log_line, marker, "four")
    return middle


def always_crash(marker: str):
    with Path(marker).open("a") as log:
        log.write("in-flight\n")
    os._exit(17)


@workflow("engine.killer")
def killer(wf, marker: str):
    wf.step("Kills its worker", always_crash, marker)


@workflow("engine.async")
async def async_wf(wf, n: int):
    async def double(x):
        return x * 2

    a = await wf.step("Double", double, n)
    b = await wf.step("Sync add", count, "sync-add", a + 1)
    await wf.sleep("1h")
    return await wf.step("Double again", double, b)


@workflow("engine.async_timeout")
async def async_timeout(wf):
    import asyncio

    async def forever():
        await asyncio.sleep(30)

    return await wf.step("Forever", forever, timeout="100ms")


@workflow("engine.retry_filtered")
def retry_filtered(wf, kind: str, how: str):
    if how == "retry_on":
        policy = RetryPolicy(max_attempts=5, initial_delay="1s", retry_on=(ConnectionError,))
    else:
        policy = RetryPolicy(max_attempts=5, initial_delay="1s", is_retryable=lambda e: False)
    return wf.step("Call", always_fails, kind, retry=policy)


def block_first(name: str):
    """The first call waits at the gate; any later call (another executor) passes at once."""
    SEEN[f"gate:{name}"] += 1
    calls = SEEN[f"gate:{name}"]
    if calls == 1:
        GATES.setdefault(name, threading.Event()).wait(30)
    return f"{name}:{calls}"


@workflow("engine.contested")
def contested(wf, gate: str):
    value = wf.step("Gate", block_first, gate)
    wf.step("After gate", count, "after-gate", 1)
    return value


@workflow("engine.until")
def until(wf, when):
    wf.sleep_until(when)
    return wf.step("Woke", count, "woke", "up")


@workflow("engine.meta_in_step")
def meta_in_step(wf):
    return wf.step("Publish", wf.set_meta, "k", 1)


@workflow("engine.bad_meta")
def bad_meta(wf):
    wf.set_meta("when", object())


def stored_state_of(instance_id: str, position: int) -> str | None:
    from durable_workflows.models import StepRecord

    record = StepRecord.objects.filter(instance_id=instance_id, position=position).first()
    return None if record is None else record.state


@workflow("engine.sees_its_last_step")
def sees_its_last_step(wf):
    wf.step("First", count, "first", 1)
    return wf.step("Look", stored_state_of, wf.instance_id, 0)


def _raising_backoff(retry: int) -> float:
    raise KeyError(f"no delay for retry {retry}")


CUSTOM_BACKOFFS = {
    "squares": lambda k: 10 * k * k,
    "text": lambda k: f"{k}m",
    "timedelta": lambda k: timedelta(hours=k),
    "raises": _raising_backoff,
    "negative": lambda k: -5,
    "nonsense": lambda k: ["soon"],
}


@workflow("engine.custom_backoff")
def custom_backoff(wf, how: str, attempts: int = 4):
    policy = RetryPolicy(max_attempts=attempts, backoff=CUSTOM_BACKOFFS[how], max_delay="1d", jitter=False)
    try:
        return wf.step("Call", always_fails, "ConnectionError", retry=policy)
    except ValueError as error:
        return f"caught: {error}"


@workflow("engine.kept_a_day", purge_after="1d")
def kept_a_day(wf, n: int = 0):
    wf.set_meta("n", n)
    return wf.step("Only", count, "kept", n)


@workflow("engine.crashy_timed")
def crashy_timed(wf, marker: str):
    """As engine.crashy, with a step whose attempts are stored as they start (a timeout)."""
    wf.step("One", log_line, marker, "one")
    return wf.step("Crash", crash_once, marker, timeout="1h")


def fails_until(name: str, attempts: int):
    SEEN[name] += 1
    if SEEN[name] < attempts:
        raise ConnectionError(f"attempt {SEEN[name]} refused")
    return SEEN[name]


@workflow("engine.flaky")
def flaky(wf, name: str, succeeds_at: int = 3, timeout=None):
    policy = RetryPolicy(max_attempts=5, initial_delay=0, jitter=False)
    return wf.step("Call", fails_until, name, succeeds_at, retry=policy, timeout=timeout)
