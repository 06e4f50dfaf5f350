"""A dispatcher that keeps the tasks it is given until the test runs them, for the tests of
what waits for a turn (concurrency and rate limits, priority)."""

from __future__ import annotations

from durable_workflows.engine import execute

TASKS: list[tuple[str, str, int]] = []
QUEUE = {"DISPATCHER": "tests.queueing.QueueDispatcher"}


class QueueDispatcher:
    """Keeps tasks until the test runs them (`drain`), as a broker would until a worker is free."""

    synchronous = False

    def dispatch(self, instance_id, mode, epoch):
        TASKS.append((instance_id, mode, epoch))


def drain() -> None:
    while TASKS:
        execute(*TASKS.pop(0))
