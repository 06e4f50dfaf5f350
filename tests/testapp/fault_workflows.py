"""Workflows for the fault tests: what a run must survive inside itself."""

from __future__ import annotations

import threading
from collections import Counter

from durable_workflows import RetryPolicy, client, workflow

RAN: Counter[str] = Counter()
OBSERVED: list = []
GATES: dict[str, threading.Event] = {}
# Actions a test hands to a step to run while the step runs (hold a lock, drop a connection).
DURING: dict[str, object] = {}


def note(name: str, value=None):
    RAN[name] += 1
    return value


def gate(name: str) -> threading.Event:
    return GATES.setdefault(name, threading.Event())


def run_hook(name: str, value=None):
    """Count the call, then run what the test set up for this step's first call."""
    RAN[name] += 1
    hook = DURING.pop(name, None)
    if callable(hook):
        hook()
    return value


@workflow("faults.fallback")
def fallback(wf):
    """A workflow that turns any step error into a fallback: an engine fault must not."""
    try:
        charged = wf.step("Charge", run_hook, "charge", "charged")
    except Exception:
        return "fallback"
    return wf.step("Ship", note, "ship", f"{charged} and shipped")


@workflow("faults.finally")
def with_finally(wf):
    try:
        wf.step("Work", note, "work", 1)
        wf.sleep("1h")
        wf.step("More work", note, "more", 2)
    finally:
        wf.step("Clean up", note, "cleanup", 3)
    return "done"


@workflow("faults.between")
def between(wf, gate_name: str):
    wf.step("First", note, "first", 1)
    wf.set_meta("stage", "between")  # goes out with the next write, if there is one
    if RAN["between"] == 0:
        RAN["between"] += 1
        gate(gate_name).wait(30)  # code between steps that takes long the first time
    wf.step("Second", note, "second", 2)
    return "both"


@workflow("faults.caught_db_error")
def caught_db_error(wf):
    from django.db import IntegrityError

    try:
        wf.step("Insert twice", raise_integrity_error)
    except IntegrityError as error:
        outcome = f"caught {type(error).__name__}"
    wf.sleep("1h")
    return outcome


def raise_integrity_error():
    from django.db import IntegrityError

    RAN["insert"] += 1
    raise IntegrityError("duplicate key value violates unique constraint")


@workflow("faults.parent")
def parent(wf):
    child = wf.step("Start child", lambda: client.start("faults.child", instance_id=f"{wf.instance_id}-child").instance_id)
    return {"child": child, "state": wf.step("Child state", lambda: client.get(child).state.value)}


@workflow("faults.child")
def child(wf):
    return wf.step("Child work", note, "child", "child done")


@workflow("faults.meta")
def meta(wf):
    wf.set_meta("progress", 1)
    wf.step("One", note, "one", 1)
    # Not a step on purpose: on every replay, read what a client would read right here.
    OBSERVED.append(client.meta(wf.instance_id, "progress"))
    wf.set_meta("progress", 2)
    wf.step("Two", note, "two", 2)
    wf.sleep("1h")
    wf.set_meta("progress", 3)
    return wf.step("Three", note, "three", 3)


def read_progress(instance_id: str) -> object:
    return client.meta(instance_id, "progress")


@workflow("faults.progress")
def progress(wf):
    wf.set_meta("progress", "fetching")
    return wf.step("Fetch", read_progress, wf.instance_id)  # what a client reads meanwhile


@workflow("faults.lost_class")
def lost_class(wf):
    try:
        wf.step("Raise", raise_unimportable)
    except Exception as error:
        caught = type(error).__name__
    wf.sleep("1h")
    return caught


def raise_unimportable():
    # A class made at run time: no module holds it, so no other process (nor this one,
    # once it is gone) can rebuild it from its path.
    cls = type("Vanishing", (Exception,), {"__module__": "tests.testapp.nowhere"})
    raise cls("it was here")


@workflow("faults.gather")
async def gather(wf):
    import asyncio

    async def one(x):
        await asyncio.sleep(0.01)
        return x

    return await asyncio.gather(wf.step("A", one, 1), wf.step("B", one, 2))


@workflow("faults.sweep")
def sweep(wf, tag: str):
    """Every kind of write a run makes: claim, checkpoints of new and existing records, a
    retry delay, a sleep, meta, and the final transition."""
    wf.set_meta("stage", "started")
    first = wf.step("A", note, f"{tag}:A", "a")
    second = wf.step("B", fail_first_call, tag,
                     retry=RetryPolicy(max_attempts=3, initial_delay="1h", jitter=False))
    wf.sleep("1h")
    wf.set_meta("stage", "woke")
    third = wf.step("C", note, f"{tag}:C", "c", timeout="30s")
    return [first, second, third]


def fail_first_call(tag: str):
    RAN[f"{tag}:B"] += 1
    if RAN[f"{tag}:B"] == 1:
        raise ConnectionError("the first call fails")
    return "b"


@workflow("faults.two_sleeps")
def two_sleeps(wf):
    wf.sleep("1h", name="first")
    wf.sleep("1h", name="second")
    return "rested twice"
