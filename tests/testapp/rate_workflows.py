"""Workflows with rate limits and step limiters."""

from __future__ import annotations

import os

from durable_workflows import workflow


def pid() -> int:
    return os.getpid()


@workflow("rates.three_a_minute", rate_limit="3/m")
def three_a_minute(wf) -> str:
    wf.step("Work", pid)
    return wf.instance_id


@workflow("rates.per_account", rate_limit="2/h", rate_key="account")
def per_account(wf, account: str) -> str:
    return account


@workflow("rates.twenty_a_second", rate_limit="20/s")
def twenty_a_second(wf) -> int:
    """The worker test's workflow: one quick step."""
    return wf.step("Work", pid)


@workflow("rates.charge")
def charge(wf, order: int, limiter: str = "payments") -> int:
    """A step that calls a rate-limited service, then one that does not."""
    charged = wf.step("Charge", int, order, limiter=limiter)
    wf.step("Ship", int, order)
    return charged


@workflow("rates.charge_then_wait")
def charge_then_wait(wf, order: int) -> int:
    """Replays its limited step after the event: the replay takes no unit."""
    charged = wf.step("Charge", int, order, limiter="payments")
    wf.wait_for_event("shipped")
    return charged


@workflow("rates.limited_many")
def limited_many(wf, steps: int) -> list[int]:
    """The worker test's workflow: steps of one limiter shared by every instance."""
    return [wf.step(f"Call {n}", pid, limiter="shared") for n in range(steps)]
