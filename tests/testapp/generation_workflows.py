"""Workflows for the tests of `wf.continue_as_new`."""

from __future__ import annotations

from collections import Counter

from durable_workflows import SerializationError, StepScopeError, workflow

#: The most step records an instance had while one of its steps ran, by instance id.
PEAK: Counter[str] = Counter()
RAN: Counter[str] = Counter()


def add(n: int) -> int:
    RAN[f"add-{n}"] += 1
    return n


def probe(instance_id: str) -> int:
    from durable_workflows.models import StepRecord

    records = StepRecord.objects.filter(instance_id=instance_id).count()
    PEAK[instance_id] = max(PEAK[instance_id], records)
    return records


@workflow("generations.loop")
def loop(wf, n: int, upto: int, total: int = 0):
    """Adds 0..upto-1, a generation per number, two steps each."""
    total += wf.step("add", add, n)
    wf.step("probe", probe, wf.instance_id)
    wf.set_meta("n", n)
    if n + 1 < upto:
        wf.continue_as_new(n + 1, upto, total=total)
    return total


@workflow("generations.loop_async")
async def loop_async(wf, n: int, upto: int, total: int = 0):
    total += await wf.step("add", add, n)
    if n + 1 < upto:
        if n % 2:
            await wf.continue_as_new(n + 1, upto, total=total)
        wf.continue_as_new(n + 1, upto, total=total)  # without await, just as well
    return total


@workflow("generations.inbox")
def inbox(wf, seen: list, rounds: int = 3):
    """Takes one "item" event a generation; the first waits for "go" before it takes any."""
    if not seen:
        wf.wait_for_event("go")
    seen = [*seen, wf.wait_for_event("item")]
    if len(seen) < rounds:
        wf.continue_as_new(seen, rounds)
    return seen


@workflow("generations.refused")
def refused(wf, n: int):
    """Each refusal raises into the workflow, which goes on."""
    caught = []
    for args, kwargs in (((1, 2, 3), {}), ((), {"m": 1}), ((object(),), {})):
        try:
            wf.continue_as_new(*args, **kwargs)
        except (TypeError, SerializationError) as error:
            caught.append(type(error).__name__)
    for concurrent, other in ((wf.parallel, lambda: wf.step("other", add, n)), (wf.race, lambda: wf.sleep("1h"))):
        try:
            concurrent(lambda: wf.continue_as_new(n + 1), other)
        except StepScopeError as error:
            caught.append(str(error))
    if n == 0:
        wf.continue_as_new(n + 1)
    return caught


@workflow("generations.in_step")
def in_step(wf, n: int):
    """Inside a step, as every primitive there, it fails the run."""
    return wf.step("inside", lambda: wf.continue_as_new(n + 1))


@workflow("generations.unwinding")
def unwinding(wf, n: int):
    """An `except BaseException:` that returns does not keep the run from continuing, and
    a primitive called after the continue does nothing."""
    if n:
        return n
    try:
        wf.continue_as_new(n + 1)
    except BaseException:
        try:
            wf.step("after", add, 100)
        except BaseException:
            pass
        return "swallowed"


@workflow("generations.clock", timeout="1h")
def clock(wf, n: int):
    """Each generation's `wf.now()` starts at its own start."""
    if n == 0:
        wf.continue_as_new(n + 1)
    return wf.now().isoformat()
