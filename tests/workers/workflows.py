"""Workflows for the worker tests. Every step execution appends a start and an end line to
the step log (DW_STEP_LOG), so a test can prove which process ran what, when, under which
epoch, and that no step ran inside an open transaction."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from django.db import connection

from durable_workflows import RetryPolicy, workflow
from tests.workers import steplog


def _write(entry: dict) -> None:
    line = (json.dumps(entry) + "\n").encode()
    fd = os.open(os.environ["DW_STEP_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)  # one small O_APPEND write: lines from many processes never mix
    finally:
        os.close(fd)


def logged(instance_id: str, epoch: int, step: str, seconds: float = 0.0) -> str:
    entry = {"instance": instance_id, "epoch": epoch, "step": step, "pid": os.getpid()}
    _write({**entry, "event": "start", "at": time.time(),
            "in_transaction": connection.in_atomic_block or not connection.get_autocommit()})
    if seconds:
        time.sleep(seconds)
    _write({**entry, "event": "end", "at": time.time()})
    return step


def _epoch(wf) -> int:
    # The fencing token of this run. Not public API: the log needs it to show which claim
    # ran each step.
    return wf._run.lease.epoch


@workflow("workers.nap")
def nap(wf, pause: float = 1.0, work: float = 0.0) -> str:
    wf.step("before", logged, wf.instance_id, _epoch(wf), "before", work)
    wf.sleep(pause)
    wf.step("after", logged, wf.instance_id, _epoch(wf), "after", work)
    return "rested"


@workflow("workers.steps")
def steps(wf, count: int = 3, seconds: float = 0.0) -> int:
    for n in range(count):
        wf.step(f"step-{n}", logged, wf.instance_id, _epoch(wf), f"step-{n}", seconds)
    return count


@workflow("workers.noop_steps")
def noop_steps(wf, count: int = 3) -> int:
    total = 0
    for n in range(count):
        total += wf.step(f"step-{n}", _identity, n)
    return total


def _identity(value: int) -> int:
    return value


def slow_the_first_time(instance_id: str, epoch: int, seconds: float) -> str:
    """Slow on its first execution only (a marker file next to the step log remembers it)."""
    marker = f"{os.environ['DW_STEP_LOG']}.{instance_id}.slow"
    first = not os.path.exists(marker)
    if first:
        open(marker, "w").close()
    return logged(instance_id, epoch, "slow-once", seconds if first else 0.0)


@workflow("workers.slow_once")
def slow_once(wf, seconds: float) -> str:
    wf.step("first", logged, wf.instance_id, _epoch(wf), "first")
    return wf.step("slow-once", slow_the_first_time, wf.instance_id, _epoch(wf), seconds)


def _connection_identity() -> list:
    """This worker's pid and when its database connection was opened (PostgreSQL)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()")
        (started,) = cursor.fetchone()
    return [os.getpid(), started.isoformat()]


@workflow("workers.connection")
def connection_probe(wf) -> list:
    return wf.step("probe", _connection_identity)


@workflow("workers.await_event")
def await_event(wf, seconds: float = 0.0) -> object:
    payload = wf.wait_for_event("go")
    wf.step("after", logged, wf.instance_id, _epoch(wf), "after", seconds)
    return payload


def fail_first(instance_id: str, epoch: int, failures: int) -> int:
    """Raises ConnectionError on its first `failures` executions, counted in the step log."""
    logged(instance_id, epoch, "flaky")
    attempt = sum(1 for e in steplog.read(Path(os.environ["DW_STEP_LOG"]))
                  if (e.instance, e.step) == (instance_id, "flaky"))
    if attempt <= failures:
        raise ConnectionError(f"attempt {attempt} fails")
    return attempt


@workflow("workers.flaky")
def flaky(wf, failures: int, delay: float = 0.5) -> int:
    """A step retried after a delay: each retry waits on an alarm, in another run."""
    policy = RetryPolicy(max_attempts=failures + 1, backoff="constant", initial_delay=delay, jitter=False)
    return wf.step("flaky", fail_first, wf.instance_id, _epoch(wf), failures, retry=policy)


@workflow("workers.child")
def child(wf, seconds: float = 0.0) -> str:
    return wf.step("child-step", logged, wf.instance_id, _epoch(wf), "child-step", seconds)


@workflow("workers.fan")
def fan(wf, count: int, seconds: float = 0.0) -> int:
    kids = [wf.start_child("workers.child", seconds) for _ in range(count)]
    return len([wf.wait_child(kid) for kid in kids])


@workflow("workers.branches")
def branches(wf, count: int = 3, seconds: float = 0.2) -> list:
    """Parallel branches that each run a step, sleep (durably) and run another."""

    def branch(i: int) -> str:
        wf.step(f"b{i}-before", logged, wf.instance_id, _epoch(wf), f"b{i}-before", seconds)
        wf.sleep(0.5 + 0.25 * i)
        return wf.step(f"b{i}-after", logged, wf.instance_id, _epoch(wf), f"b{i}-after", seconds)

    return wf.parallel(*(lambda i=i: branch(i) for i in range(count)))


class StepInterrupt(BaseException):
    """A BaseException of the step's own, neither an Exception nor the engine's."""


INTERRUPTS = {"KeyboardInterrupt": KeyboardInterrupt, "SystemExit": SystemExit, "StepInterrupt": StepInterrupt}


def interrupted(instance_id: str, epoch: int, kind: str) -> None:
    logged(instance_id, epoch, "interrupted")
    raise INTERRUPTS[kind](f"the step raised {kind}")


@workflow("workers.interrupted")
def interrupted_step(wf, kind: str) -> None:
    """A step whose code raises a BaseException (sync, or async with its own loop)."""
    wf.step("interrupted", interrupted, wf.instance_id, _epoch(wf), kind)


if os.environ.get("DW_EVERY_SECOND"):
    # Only in the clusters of the schedule test: any other cluster would start it each second.
    @workflow("workers.every_second", schedule="* * * * * *")
    def every_second(wf) -> str:
        return wf.step("tick", logged, wf.instance_id, _epoch(wf), "tick")


def behind_gate(instance_id: str, epoch: int, step: str, gate: str) -> str:
    """Say the step runs (the file `gate`.started), then wait, a minute at most, until the
    test creates the file `gate`."""
    with open(f"{gate}.started", "w"):
        pass
    deadline = time.monotonic() + 60
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the test never created {gate}")
        time.sleep(0.02)
    return logged(instance_id, epoch, step)


@workflow("workers.gated")
def gated(wf, gate: str) -> list[str]:
    first = wf.step("first", behind_gate, wf.instance_id, _epoch(wf), "first", gate)
    return [first, wf.step("second", logged, wf.instance_id, _epoch(wf), "second")]
