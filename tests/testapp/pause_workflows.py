"""Workflows for the pause and resume tests (tests/test_pause.py)."""

from __future__ import annotations

from durable_workflows import RetryPolicy, workflow

from .fault_workflows import gate, note


def gated(name: str, value):
    """Say the step runs, then wait (bounded) until the test opens the gate."""
    gate(f"{name}-started").set()
    assert gate(name).wait(30), f"the test never opened the gate {name!r}"
    return note(name, value)


@workflow("pause.two_steps")
def two_steps(wf, retried: bool = False):
    first = wf.step("First", gated, "first", 1)
    policy = RetryPolicy(max_attempts=2) if retried else None
    second = wf.step("Second", note, "second", 2, retry=policy)
    return first + second


@workflow("pause.nap")
def nap(wf):
    wf.step("Before", note, "before", 1)
    wf.sleep("1h")
    return wf.step("After", note, "after", 2)


@workflow("pause.queued")
def queued(wf):
    return wf.step("Only", note, "only", "ran")


@workflow("pause.await")
def awaiting(wf):
    got = wf.wait_for_event("go")
    return wf.step("Use", note, "use", got)


@workflow("pause.parent")
def parent(wf):
    return {"child": wf.run_child("pause.await", instance_id=f"{wf.instance_id}-child")}


@workflow("pause.limited", concurrency=1)
def limited(wf, label: str):
    return wf.step("Work", note, label, label)


@workflow("pause.two_steps_async")
async def two_steps_async(wf, retried: bool = False):
    first = await wf.step("First", gated, "first", 1)
    policy = RetryPolicy(max_attempts=2) if retried else None
    second = await wf.step("Second", note, "second", 2, retry=policy)
    return first + second


@workflow("pause.branches")
def branches(wf):
    def slow():
        return [wf.step("First", gated, "first", 1), wf.step("After first", note, "after-first", 2)]

    def quick():
        return [wf.step("Quick", note, "quick", 3), wf.step("After quick", note, "after-quick", 4)]

    return wf.parallel(slow, quick)


@workflow("pause.two_steps_atomic")
def two_steps_atomic(wf, retried: bool = False):
    first = wf.step("First", gated, "first", 1, atomic=True)
    policy = RetryPolicy(max_attempts=2) if retried else None
    second = wf.step("Second", note, "second", 2, retry=policy)
    return first + second
