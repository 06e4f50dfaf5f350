"""Schedule pass benchmark: what `fire_schedules()` costs each worker every second.

    python bench/schedules.py                                             # SQLite
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test python bench/schedules.py

Registers BENCH_SCHEDULES (default 100) scheduled workflows, then times a pass that starts
one instance for each (their latest fire time has no instance yet), and many passes with
nothing due, which is what the ticker's once-a-second call costs nearly always. Tasks go to a
dispatcher that drops them: the run is not what is measured. Prints a table; asserts nothing.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

import django  # noqa: E402

django.setup()

from datetime import timedelta  # noqa: E402

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import override_settings  # noqa: E402
from django.utils import timezone  # noqa: E402

from durable_workflows import fire_schedules, workflow  # noqa: E402
from durable_workflows.models import ScheduleFire, WorkflowInstance  # noqa: E402

COUNT = int(os.environ.get("BENCH_SCHEDULES", "100"))
IDLE_PASSES = int(os.environ.get("BENCH_IDLE_PASSES", "300"))
EXPRESSIONS = ["*/5 * * * *", "0 * * * *", "0 2 * * *", "30 6 * * 1-5", "0 0 1 * *"]


class DropTasks:
    synchronous = False

    def dispatch(self, instance_id: str, mode: str, epoch: int) -> None:
        return None


def _register(count: int) -> list[str]:
    names = []
    for n in range(count):
        name = f"bench.scheduled.{n}"

        def report(wf):
            return None

        workflow(name, schedule=EXPRESSIONS[n % len(EXPRESSIONS)], schedule_tz="Europe/Paris")(report)
        names.append(name)
    return names


def main() -> None:
    call_command("migrate", verbosity=0)
    names = _register(COUNT)
    WorkflowInstance.objects.filter(workflow__in=names).delete()
    ScheduleFire.objects.filter(workflow__in=names).delete()
    now = timezone.now()
    with override_settings(DURABLE_WORKFLOWS={"DISPATCHER": "bench.schedules.DropTasks"}):
        began = time.perf_counter()
        started = fire_schedules(now=now)
        first = time.perf_counter() - began
        idle = []
        for i in range(IDLE_PASSES):
            began = time.perf_counter()
            again = fire_schedules(now=now + timedelta(milliseconds=i))
            idle.append(time.perf_counter() - began)
            assert again == [], again
    rows = [
        ("scheduled workflows", f"{COUNT} ({', '.join(EXPRESSIONS)})"),
        ("a pass that starts one instance each", f"{len(started)} started in {first * 1000:.0f} ms "
                                                  f"({first * 1000 / max(len(started), 1):.2f} ms per start)"),
        (f"a pass with nothing due ({IDLE_PASSES} passes)",
         f"median {statistics.median(idle) * 1000:.2f} ms, p99 {sorted(idle)[int(len(idle) * 0.99) - 1] * 1000:.2f} ms"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"\n| {'fire_schedules(), ' + connection.vendor:<{width}} | value |\n|{'-' * (width + 2)}|---|")
    for name, value in rows:
        print(f"| {name:<{width}} | {value} |")
    WorkflowInstance.objects.filter(workflow__in=names).delete()
    ScheduleFire.objects.filter(workflow__in=names).delete()


if __name__ == "__main__":
    main()
