"""Workflows for the parallel-branch tests."""

from __future__ import annotations

import asyncio
import threading
import time

from durable_workflows import RetryPolicy, StepScopeError, workflow

from .fault_workflows import RAN

_lock = threading.Lock()

#: Set by the tests: which step name branch 1 of `branches.changes` calls.
CHANGING = {"name": "B"}


def resumed_under(name: str, instance_id: str) -> None:
    """Resume the instance with CHANGING set to `name`, as a deploy would change the code."""
    from durable_workflows.engine import fire_alarm_now

    CHANGING["name"] = name
    try:
        fire_alarm_now(instance_id)
    finally:
        CHANGING["name"] = "B"


def count(name: str, value=None):
    with _lock:
        RAN[name] += 1
    return value if value is not None else name


def together(tag: str, parties: int, value):
    """Returns only once `parties` calls with this tag are running at the same time: a
    step that proves it ran beside the others (one at a time, it would time out)."""
    with _lock:
        RAN[tag] += 1
    deadline = time.monotonic() + 20
    while RAN[tag] < parties:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {RAN[tag]} of {parties} {tag!r} steps ran at once")
        time.sleep(0.005)
    return value


async def together_async(tag: str, parties: int, value):
    RAN[tag] += 1
    deadline = time.monotonic() + 20
    while RAN[tag] < parties:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {RAN[tag]} of {parties} {tag!r} steps ran at once")
        await asyncio.sleep(0.005)
    return value


def fails(kind: str, tag: str):
    count(tag)
    raise {"value": ValueError, "key": KeyError}[kind](f"{tag} failed")


def fails_after(kind: str, tag: str, after: str):
    """Fails once the `after` step has failed, so that a later branch fails first."""
    deadline = time.monotonic() + 20
    while not RAN[after] and time.monotonic() < deadline:
        time.sleep(0.005)
    fails(kind, tag)


def square(n: int) -> int:
    count(f"square-{n}")
    return n * n


@workflow("branches.three")
def three(wf, tag: str) -> list:
    return wf.parallel(*(lambda i=i: wf.step(f"S{i}", together, tag, 3, i) for i in range(3)))


@workflow("branches.three_async")
async def three_async(wf, tag: str) -> list:
    async def branch(i):
        return await wf.step(f"S{i}", together_async, tag, 3, i)

    return await wf.parallel(*(lambda i=i: branch(i) for i in range(3)))


@workflow("branches.gather_sync_steps")
async def gather_sync_steps(wf, tag: str) -> list:
    return list(await asyncio.gather(*(wf.step(f"S{i}", together, tag, 3, i) for i in range(3))))


@workflow("branches.sleeper")
def sleeper(wf, tag: str) -> dict:
    def slow():
        wf.step("before", count, f"{tag}-before")
        wf.sleep("1h")
        return wf.step("after", count, f"{tag}-after")

    fast, slow_result = wf.parallel(lambda: wf.step("fast", count, f"{tag}-fast"), slow)
    return {"fast": fast, "slow": slow_result, "then": wf.step("then", count, f"{tag}-then")}


@workflow("branches.two_sleepers")
def two_sleepers(wf) -> list:
    def nap(n, hours):
        wf.sleep(f"{hours}h")
        return wf.step(f"woke{n}", count, f"woke-{n}", n)

    return wf.parallel(lambda: nap(0, 2), lambda: nap(1, 1))


@workflow("branches.first_error")
def first_error(wf) -> str:
    try:
        wf.parallel(
            lambda: wf.step("A", fails_after, "value", "first-A", "first-C"),
            lambda: wf.step("B", count, "first-B"),
            lambda: wf.step("C", fails, "key", "first-C"),
        )
    except (ValueError, KeyError) as error:
        return f"{type(error).__name__}: {error}"
    return "no error"


@workflow("branches.stop_others")
def stop_others(wf) -> str:
    try:
        wf.parallel(lambda: wf.step("A", fails, "value", "stop-A"),
                    lambda: wf.step("B", count, "stop-B"), max_concurrency=1)
    except ValueError as error:
        return str(error)
    return "no error"


@workflow("branches.map")
def mapped(wf, numbers: list, limit=None) -> list:
    return wf.map("Square", square, numbers, max_concurrency=limit)


@workflow("branches.map_async")
async def mapped_async(wf, numbers: list) -> list:
    return await wf.map("Square", square, numbers, max_concurrency=2)


@workflow("branches.nested")
def nested(wf) -> list:
    def inner(tag):
        return wf.parallel(lambda: wf.step("x", count, f"{tag}-x"), lambda: wf.step("y", count, f"{tag}-y"))

    return wf.parallel(lambda: inner("n0"), lambda: inner("n1"))


@workflow("branches.changes")
def changes(wf) -> list:
    def second():
        wf.step("first", count, "changes-before")
        named = wf.step(CHANGING["name"], count, "changes-second")
        wf.sleep("1h")
        return named

    return wf.parallel(lambda: wf.step("A", count, "changes-first"), second)


@workflow("branches.waits")
def waits(wf) -> list:
    return wf.parallel(
        lambda: wf.wait_for_event("go"),
        lambda: wf.run_child("children.square", 4),
        lambda: wf.step("plain", count, "waits-plain"),
    )


@workflow("branches.retry")
def retrying(wf, tag: str) -> list:
    policy = RetryPolicy(max_attempts=3, initial_delay="1h", jitter=False)
    return wf.parallel(lambda: wf.step("flaky", flaky, tag, retry=policy),
                       lambda: wf.step("steady", count, f"{tag}-steady"))


def flaky(tag: str) -> str:
    count(tag)
    if RAN[tag] == 1:
        raise ConnectionError("first call fails")
    return "ok"


@workflow("branches.bad")
def bad(wf, how: str) -> str:
    try:
        if how == "not_callable":
            wf.parallel(lambda: wf.step("ok", count, "bad-ok"), 42)
        elif how == "zero":
            wf.parallel(lambda: wf.step("ok", count, "bad-ok"), max_concurrency=0)
        elif how == "thread":
            errors = []

            def outside():
                try:
                    wf.step("outside", count, "bad-outside")
                except StepScopeError as error:
                    errors.append(error)

            thread = threading.Thread(target=outside)
            thread.start()
            thread.join()
            raise errors[0]
    except (TypeError, ValueError, StepScopeError) as error:
        return wf.step("after", count, f"{type(error).__name__}: {error}")
    return "no error"


@workflow("branches.empty")
def empty(wf) -> list:
    return [wf.parallel(), wf.map("None", square, []), wf.step("after", count, "empty-after")]


@workflow("branches.queries")
def queries(wf, n: int) -> list:
    return wf.map("Count", count_instances, range(n))


def count_instances(i: int) -> int:
    from durable_workflows.models import WorkflowInstance

    return WorkflowInstance.objects.count() + i * 0


async def slow_value(seconds: float, value):
    await asyncio.sleep(seconds)
    return value


@workflow("branches.gather_helpers")
async def gather_helpers(wf) -> list:
    async def fetch_and_save(name):
        value = await wf.step(f"fetch-{name}", slow_value, 0, name)
        return await wf.step(f"save-{name}", slow_value, 0, value)

    return list(await asyncio.gather(fetch_and_save("a"), fetch_and_save("b")))


@workflow("branches.gather_children")
async def gather_children(wf) -> list:
    return list(await asyncio.gather(wf.run_child("children.square", 2), wf.run_child("children.square", 3)))


@workflow("branches.gather_clock")
async def gather_clock(wf) -> list:
    await asyncio.gather(wf.step("slow", slow_value, 0.2, 1), wf.step("fast", slow_value, 0, 2))
    after = wf.now().isoformat()
    first = await wf.step("T", slow_value, 0, after)  # the first run's time, recorded
    await wf.sleep("1h")
    return [first, after]


@workflow("branches.same_event")
def same_event(wf) -> list:
    return wf.parallel(lambda: wf.wait_for_event("x", timeout="1h"), lambda: wf.wait_for_event("x", timeout="1h"))


#: `branches.aborted`'s concurrency: 1 on its first run, unbounded on replay. The answer of a
#: replay must not depend on it.
LIMIT = {"n": 1}


@workflow("branches.aborted")
def aborted(wf) -> str:
    try:
        wf.parallel(lambda: wf.step("validate", fails, "value", "ab-validate"),
                    lambda: (wf.step("setup", count, "ab-setup"), wf.step("pay", count, "ab-pay")),
                    max_concurrency=LIMIT["n"])
    except ValueError as error:
        wf.sleep("1h")
        return str(error)
    return "no error"


@workflow("branches.replaced")
def replaced(wf) -> list:
    if CHANGING["name"] == "B":
        result = wf.parallel(lambda: wf.step("x", count, "rp-x"), lambda: wf.step("y", count, "rp-y"))
    else:
        result = [wf.step("instead", count, "rp-instead")]
    wf.sleep("1h")
    return result


def wait_for_row(instance_id: str) -> str:
    from durable_workflows.models import WorkflowInstance

    deadline = time.monotonic() + 20
    while not WorkflowInstance.objects.filter(pk=instance_id).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{instance_id} was not inserted while this branch ran")
        time.sleep(0.01)
    return "saw it"


@workflow("branches.child_beside_step")
def child_beside_step(wf) -> list:
    return wf.parallel(lambda: wf.run_child("children.square", 7),
                       lambda: wf.step("watch", wait_for_row, f"{wf.instance_id}.0:0.0"))
