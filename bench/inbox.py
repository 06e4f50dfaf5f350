"""Inbox benchmark: one run that takes many queued events, waits with no step between them.

    python bench/inbox.py                    # PostgreSQL (BENCH_POSTGRES_URL)
    BENCH_SQLITE=1 python bench/inbox.py     # a SQLite file

BENCH_EVENTS (default 10,000) events are sent to an instance that is not running yet; then
one run takes them all, at two sizes (a fifth, and all), timed with the statements it made:
linear means the second row costs five times the first. Prints a table; asserts nothing.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
if not os.environ.get("BENCH_SQLITE"):
    os.environ["DATABASE_URL"] = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/dw_bench")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

N = int(os.environ.get("BENCH_EVENTS", "10000"))


class Held:
    """A dispatcher that sends nothing: the instance waits until the benchmark runs it."""

    synchronous = False

    def dispatch(self, instance_id: str, mode: str, epoch: int) -> None:
        return None


def main() -> None:
    if os.environ.get("DATABASE_URL"):
        from bench.workers import _create_postgres_database

        _create_postgres_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext, override_settings

    from durable_workflows import client, send_event, workflow
    from durable_workflows.engine import execute
    from durable_workflows.models import WorkflowInstance

    @workflow("bench.drain")
    def drain(wf, count: int) -> int:
        return sum(wf.wait_for_event("item") for _ in range(count))

    call_command("migrate", verbosity=0)
    WorkflowInstance.objects.filter(workflow="bench.drain").delete()
    print(f"\nOne run taking queued events on {connection.vendor}\n")
    print(f"{'events':>8}{'send, s':>10}{'take, s':>10}{'events/s':>10}{'queries':>9}{'longest':>9}")
    print("-" * 56)
    for count in (N // 5, N):
        with override_settings(DURABLE_WORKFLOWS={"DISPATCHER": "__main__.Held"}):
            handle = client.start("bench.drain", count)
        began = time.perf_counter()
        for item in range(count):
            send_event(handle.instance_id, "item", item)
        sent = time.perf_counter()
        with CaptureQueriesContext(connection) as captured:
            state = execute(handle.instance_id, "fresh", handle.instance.epoch)
        taken = time.perf_counter() - sent
        assert state == "completed" and handle.refresh().result() == count * (count - 1) // 2, state
        longest = max(len(q["sql"]) for q in captured.captured_queries)
        print(f"{count:>8}{sent - began:>10.1f}{taken:>10.2f}{count / taken:>10.0f}"
              f"{len(captured.captured_queries):>9}{longest:>9}")
    WorkflowInstance.objects.filter(workflow="bench.drain").delete()


if __name__ == "__main__":
    main()
