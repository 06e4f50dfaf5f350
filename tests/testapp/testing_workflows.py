"""Workflows for the tests of durable_workflows.testing: long sleeps, retries an hour apart,
event waits, children, sleeps in parallel branches."""

from __future__ import annotations

import threading

from django.utils import timezone

from durable_workflows import EventTimeout, RetryPolicy, workflow
from durable_workflows.engine import clock

from .fault_workflows import RAN


def flaky_twice(tag: str) -> str:
    RAN[tag] += 1
    if RAN[tag] <= 2:
        raise ConnectionError(f"{tag}: try again later")
    return f"{tag} ok"


@workflow("testing.month")
def month(wf, tag: str) -> dict:
    began = wf.now()
    wf.sleep("30 days")
    value = wf.step("flaky", flaky_twice, tag, retry=RetryPolicy(max_attempts=3, initial_delay="1h", jitter=False))
    try:
        payload = wf.wait_for_event("approve", timeout="7 days")
    except EventTimeout:
        payload = "no answer"
    return {"value": value, "payload": payload, "days": (wf.now() - began).days}


@workflow("testing.forever")
def forever(wf) -> object:
    return wf.wait_for_event("never")


@workflow("testing.family")
def family(wf) -> list:
    return [wf.run_child("testing.napper", n) for n in range(2)]


@workflow("testing.napper")
def napper(wf, n: int) -> int:
    wf.sleep(f"{n + 1} days")
    return wf.wait_for_event("wake") + n


@workflow("testing.deadline", timeout="2 days")
def with_deadline(wf) -> object:
    return wf.wait_for_event("never")


def ahead_here() -> dict:
    """How far the engine's clock is ahead of Django's, as the thread that runs the step sees
    it, and which thread that is."""
    return {"days": round((clock.now() - timezone.now()).total_seconds() / 86400, 3),
            "thread": threading.current_thread().name}


@workflow("testing.parallel_sleepers")
def parallel_sleepers(wf) -> dict:
    began = wf.now()

    def nap(days: int) -> dict:
        wf.sleep(f"{days} days")
        return wf.step(f"woke after {days} days", ahead_here)

    naps = wf.parallel(lambda: nap(2), lambda: nap(5))
    return {"naps": naps, "days": (wf.now() - began).days}


@workflow("testing.async_parallel_sleepers")
async def async_parallel_sleepers(wf) -> dict:
    began = wf.now()

    async def nap(days: int) -> dict:
        await wf.sleep(f"{days} days")
        return await wf.step(f"woke after {days} days", ahead_here)

    naps = await wf.parallel(lambda: nap(2), lambda: nap(5))
    return {"naps": naps, "days": (wf.now() - began).days}
