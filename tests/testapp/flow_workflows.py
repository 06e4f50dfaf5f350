"""Workflows for priority, delayed starts and debounce: each step appends a line to a log,
so a test can tell in what order instances went in and with what arguments."""

from __future__ import annotations

from durable_workflows import workflow

from .limit_workflows import mark


@workflow("flow.one_at_a_time", concurrency=1)
def one_at_a_time(wf, log: str, hold: bool = False) -> str:
    """One at a time; with `hold`, it keeps its slot until it is sent "done"."""
    wf.step("Enter", mark, log, wf.instance_id, "enter")
    if hold:
        wf.wait_for_event("done")
    return wf.instance_id


@workflow("flow.urgent", priority=50)
def urgent(wf) -> str:
    return "urgent"


@workflow("flow.digest")
def digest(wf, user: str, items: list) -> dict:
    return {"user": user, "items": items}


@workflow("flow.options_as_parameters")
def options_as_parameters(wf, delay: str = "", priority: int = 0) -> dict:
    """A workflow whose parameters have the names of start()'s options."""
    return {"delay": delay, "priority": priority}
