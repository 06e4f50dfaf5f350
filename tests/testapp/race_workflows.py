"""Workflows for the tests of `wf.race`."""

from __future__ import annotations

import threading

from durable_workflows import workflow

from .branch_workflows import count

#: Released by a test: the slow branch of `races.slow_loser` waits on it in its step.
GATES: dict[str, threading.Event] = {}


def gate(name: str) -> str:
    GATES.setdefault(name, threading.Event()).wait(10)
    return name


@workflow("races.approval")
def approval(wf, tag: str):
    """An approval, or a reminder after a day: whichever comes first."""
    index, value = wf.race(lambda: wf.wait_for_event("approved"), lambda: wf.sleep("1 day"))
    after = wf.step("after", count, f"{tag}-after")
    return {"index": index, "value": value, "after": after}


@workflow("races.approval_async")
async def approval_async(wf, tag: str):
    async def approved():
        return await wf.wait_for_event("approved")

    index, value = await wf.race(approved, lambda: wf.sleep("1 day"))
    after = await wf.step("after", count, f"{tag}-after")
    return {"index": index, "value": value, "after": after}


@workflow("races.slow_loser")
def slow_loser(wf, tag: str):
    """The fast branch wins while the slow one is in a step: that step's result is kept,
    and the slow branch's next step never runs."""
    def slow():
        wf.step("slow", gate, f"{tag}-slow")
        return wf.step("slow-next", count, f"{tag}-slow-next")

    def fast():
        value = wf.step("fast", count, f"{tag}-fast")
        GATES.setdefault(f"{tag}-slow", threading.Event()).set()
        return value

    return wf.race(slow, fast)


@workflow("races.failing")
def failing(wf, tag: str):
    def broken():
        wf.step("broken", _raise, tag)

    return wf.race(broken, lambda: wf.sleep("1 hour"))


def _raise(tag: str) -> None:
    raise KeyError(tag)


@workflow("races.steps_then_wait")
def steps_then_wait(wf, tag: str):
    """Both branches do work before they wait: a replay after the winner was recorded runs
    only the winner's records, and the loser's wait is abandoned."""
    def left():
        wf.step("left", count, f"{tag}-left")
        return wf.wait_for_event("left")

    def right():
        wf.step("right", count, f"{tag}-right")
        return wf.wait_for_event("right")

    index, value = wf.race(left, right)
    wf.sleep("1 hour")
    return [index, value]


@workflow("races.empty")
def empty(wf):
    return wf.race()


@workflow("races.not_callable")
def not_callable(wf):
    return wf.race(lambda: 1, "two")
