"""Workflows the tests run. Step functions record their calls in CALLS to count executions."""

from __future__ import annotations

from collections import Counter

from durable_workflows import RetryPolicy, workflow

CALLS: Counter[str] = Counter()


def record(name: str, value=None):
    CALLS[name] += 1
    return value


@workflow("tests.greet")
def greet(wf, name: str, punctuation: str = "!") -> str:
    text = wf.step("Compose", record, "compose", f"Hello, {name}{punctuation}")
    return text


@workflow("tests.nap")
def nap(wf, duration="1h") -> str:
    wf.step("Before", record, "before", 1)
    wf.sleep(duration)
    wf.step("After", record, "after", 2)
    return "rested"


@workflow("tests.three_steps")
def three_steps(wf, n: int = 0) -> int:
    a = wf.step("One", record, "one", n + 1)
    b = wf.step("Two", record, "two", a + 1)
    return wf.step("Three", record, "three", b + 1)


@workflow("tests.flaky")
def flaky(wf, failures: int, max_attempts: int = 3, delay: str = "0s") -> str:
    def sometimes() -> str:
        CALLS["flaky"] += 1
        if CALLS["flaky"] <= failures:
            raise ConnectionError(f"failure {CALLS['flaky']}")
        return "ok"

    return wf.step(
        "Sometimes", sometimes,
        retry=RetryPolicy(max_attempts=max_attempts, initial_delay=delay, jitter=False),
    )


class PaymentDeclined(Exception):
    def __init__(self, code: str, amount: int) -> None:
        super().__init__(code, amount)
        self.code = code


def declined_charge(order: str) -> str:
    CALLS["charge"] += 1
    raise PaymentDeclined("card_declined", 42)


def lookup(key: str) -> str:
    return {"a": "1"}[key]


CAUGHT_RESULT = {"declined": "card_declined", "args": ["card_declined", 42], "missing": "'missing'"}


@workflow("tests.caught")
def caught(wf, order: str) -> dict:
    """Catches two step failures, then sleeps: a replay must take the same branches."""
    try:
        wf.step("Charge", declined_charge, order)
    except PaymentDeclined as declined:
        outcome = {"declined": declined.code, "args": list(declined.args)}
    try:
        wf.step("Lookup", lookup, "missing")
    except KeyError as missing:
        outcome["missing"] = str(missing)
    wf.sleep("1h")
    return outcome


# Registered here too, so that processes the tests start (commands, workers) know them.
from . import (  # noqa: E402, F401
    atomic_workflows,
    branch_workflows,
    child_workflows,
    event_workflows,
    fault_workflows,
    flow_workflows,
    generation_workflows,
    limit_workflows,
    patch_workflows,
    pause_workflows,
    race_workflows,
    rate_workflows,
    testing_workflows,
)
