"""Start benchmark: what `start()` costs against a bare django-q2 `async_task()`, and a bulk
`start_many()`, with no workers running (the tasks stay in the queue).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test python bench/starts.py          # ORM broker
    DATABASE_URL=... BENCH_BROKER=redis python bench/starts.py                            # Redis

Calls are timed in interleaved rounds (a round of starts, then a round of bare tasks), so
both see the same machine; the ratio is the median of the rounds' ratios. Prints a table;
asserts nothing.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.workers_settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django_q.brokers import get_broker  # noqa: E402
from django_q.models import OrmQ  # noqa: E402
from django_q.tasks import async_task  # noqa: E402

from durable_workflows import client  # noqa: E402
from durable_workflows.models import WorkflowInstance  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", 7))
CALLS = int(os.environ.get("BENCH_CALLS", 200))


def per_call(fn) -> float:
    started = time.perf_counter()
    for i in range(CALLS):
        fn(i)
    return (time.perf_counter() - started) / CALLS


def main() -> None:
    call_command("migrate", verbosity=0)
    broker = get_broker()
    broker_name = "redis" if os.environ.get("BENCH_BROKER") == "redis" else "ORM"

    def start(i: int) -> None:
        client.start("bench.three_steps", i)

    def bare(i: int) -> None:
        async_task("bench.workers.identity", i, q_options={"broker": broker, "save": False})

    per_call(start), per_call(bare)  # warm-up
    starts, bares = [], []
    for _ in range(ROUNDS):
        starts.append(per_call(start))
        bares.append(per_call(bare))
    ratios = [s / b for s, b in zip(starts, bares, strict=True)]
    began = time.perf_counter()
    handles = client.start_many("bench.three_steps", [[i] for i in range(1000)])
    many = time.perf_counter() - began
    assert len(handles) == 1000
    print(f"\nStarts on {connection.vendor} with the {broker_name} broker ({ROUNDS} interleaved rounds of "
          f"{CALLS} calls)\n")
    print(f"{'measure':<44}{'value':>16}")
    print("-" * 60)
    print(f"{'start(), per call':<44}{statistics.median(starts) * 1000:>13.2f} ms")
    print(f"{'bare async_task(), per call':<44}{statistics.median(bares) * 1000:>13.2f} ms")
    print(f"{'start() / async_task(), median of rounds':<44}{statistics.median(ratios):>15.2f}x")
    print(f"{'start_many() of 1,000 inputs, one call':<44}{many * 1000:>13.0f} ms")
    WorkflowInstance.objects.filter(workflow="bench.three_steps").delete()
    OrmQ.objects.all().delete()
    broker.purge_queue()


if __name__ == "__main__":
    main()
