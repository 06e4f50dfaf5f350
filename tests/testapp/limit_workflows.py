"""Workflows with concurrency limits. Every step appends "enter"/"leave" lines to a log, so a
test can show how many instances were inside at once."""

from __future__ import annotations

import json
import os
import time

from durable_workflows import workflow

from .engine_workflows import crash_once


def mark(log: str, instance_id: str, event: str) -> str:
    line = (json.dumps({"instance": instance_id, "event": event, "at": time.time(), "pid": os.getpid()}) + "\n").encode()
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return event


@workflow("limits.sync_account", concurrency=1, concurrency_key="account")
def sync_account(wf, account: str, log: str, crash_marker: str = "") -> str:
    """One sync per account at a time: it waits for "done" while it holds its slot."""
    wf.step("Enter", mark, log, wf.instance_id, "enter")
    if crash_marker:
        wf.step("Crash once", crash_once, crash_marker)
    wf.wait_for_event("done")
    wf.step("Leave", mark, log, wf.instance_id, "leave")
    return account


@workflow("limits.timed", concurrency=1, timeout="1h")
def timed(wf, log: str) -> str:
    wf.step("Enter", mark, log, wf.instance_id, "enter")
    wf.wait_for_event("done")
    return "done"


@workflow("limits.three_at_once", concurrency=3)
def three_at_once(wf, log: str, seconds: float = 0.2) -> str:
    """The worker test's workflow: inside for `seconds`, across a durable sleep."""
    wf.step("Enter", mark, log, wf.instance_id, "enter")
    wf.sleep(seconds)
    wf.step("Leave", mark, log, wf.instance_id, "leave")
    return wf.instance_id


@workflow("limits.two_at_once", concurrency=2)
def two_at_once(wf, steps: int = 3) -> int:
    for n in range(steps):
        wf.step(f"Step {n}", int, n)
    return steps


def read_log(log: str) -> list[dict]:
    try:
        with open(log) as lines:
            return [json.loads(line) for line in lines]
    except FileNotFoundError:
        return []


def most_inside(entries: list[dict]) -> int:
    """The most instances between their "enter" and their "leave" at any moment."""
    inside, most = set(), 0
    for entry in sorted(entries, key=lambda e: e["at"]):
        if entry["event"] == "enter":
            inside.add(entry["instance"])
        else:
            inside.discard(entry["instance"])
        most = max(most, len(inside))
    return most
