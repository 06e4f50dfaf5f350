"""Django's tasks framework on durable workflows (Django 6.0+). Prints a table; asserts nothing.

    python bench/tasks.py                          # PostgreSQL + Redis and PostgreSQL + ORM broker
    python bench/tasks.py --setup postgres-redis   # one of them

Measured per set-up, in one run:
- enqueue: the cost of `enqueue()` of a no-op task on DurableTaskBackend, against Django's
  DummyBackend (which stores the result in memory and runs nothing) and, where the
  django-tasks-db package is installed, its database backend; interleaved rounds, medians
  and the median of the rounds' ratios. No cluster runs meanwhile.
- end to end: no-op tasks enqueued and finished per second with 2 `qcluster` workers
  running, against bare django-q2 `async_task` no-op tasks submitted the same way, in
  interleaved rounds (the harness of bench/workers.py's end-to-end measure).

PostgreSQL: BENCH_POSTGRES_URL (as bench/workers.py). Sizes: BENCH_ENQUEUES (enqueues a
backend a round, default 300), BENCH_ENQUEUE_ROUNDS (default 5), BENCH_TASKS_E2E (tasks a
round, default 300), BENCH_E2E_ROUNDS (default 3).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.tasks_settings")
    import django

    django.setup()
    from bench.tasks import main

    sys.exit(main(sys.argv[1:]))

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from typing import Any  # noqa: E402

from django.tasks import task  # noqa: E402

from bench import tables  # noqa: E402
from bench.workers import (  # noqa: E402
    POSTGRES_URL,
    SETUPS,
    _create_postgres_database,
    _empty_queue,
    _rates,
    _settle,
    _vacuum,
    _wait,
)

ENQUEUES = int(os.environ.get("BENCH_ENQUEUES", "300"))
ENQUEUE_ROUNDS = int(os.environ.get("BENCH_ENQUEUE_ROUNDS", "5"))
E2E = int(os.environ.get("BENCH_TASKS_E2E", "300"))
E2E_ROUNDS = int(os.environ.get("BENCH_E2E_ROUNDS", "3"))
RUN_SETUPS = ("postgres-redis", "postgres-orm")


@task
def noop_task() -> None:
    return None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", choices=RUN_SETUPS, action="append")
    parser.add_argument("--json", action="store_true", help="measure in this process, print JSON")
    args = parser.parse_args(argv)
    if args.json:
        print(json.dumps(measure()))
        return 0
    results = {}
    for key in args.setup or RUN_SETUPS:
        print(f"running {SETUPS[key]['label']} ...", file=sys.stderr, flush=True)
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.tasks_settings", "BENCH_BROKER": SETUPS[key]["broker"],
               "BENCH_CLUSTER": f"bench{uuid.uuid4().hex[:8]}", "PYTHONUNBUFFERED": "1", "DATABASE_URL": POSTGRES_URL}
        _create_postgres_database(POSTGRES_URL)
        done = subprocess.run([sys.executable, __file__, "--json"], env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{SETUPS[key]['label']}: the measuring process failed ({done.returncode})")
        results[key] = json.loads(done.stdout.strip().splitlines()[-1])
    print(table(results))
    return 0


def table(results: dict[str, dict[str, Any]]) -> str:
    keys = list(results)
    rows = []
    for backend in ("dummy", "database"):
        if all(backend in results[k]["enqueue"]["others"] for k in keys):
            rows.append([f"enqueue(): durable / {backend} backend, median ms (ratio)"] + [
                f"{results[k]['enqueue']['durable_ms']:.2f} / {results[k]['enqueue']['others'][backend]['ms']:.2f} ms"
                f" = {results[k]['enqueue']['others'][backend]['ratio']:.2f}x" for k in keys])
    rows.append(["tasks / s end to end: durable / bare async_task (median ratio)"] + [
        f"{results[k]['e2e']['ours']:.0f} / {results[k]['e2e']['bare']:.0f} = {results[k]['e2e']['ratio']:.2f}x "
        f"(rounds {min(results[k]['e2e']['ratios']):.2f}-{max(results[k]['e2e']['ratios']):.2f}x, "
        f"n={results[k]['e2e']['n']})" for k in keys])
    return tables.markdown(["measure", *(SETUPS[k]["label"] for k in keys)], rows)


def measure() -> dict[str, Any]:
    """Runs in a process whose settings point at one database and one broker."""
    from django.core.management import call_command
    from django_q.models import OrmQ

    from durable_workflows.models import WorkflowInstance
    from tests.workers.cluster import QCluster

    call_command("migrate", verbosity=0)
    WorkflowInstance.objects.all().delete()
    OrmQ.objects.all().delete()
    _vacuum()
    results: dict[str, Any] = {"enqueue": _enqueue_cost(ENQUEUES, ENQUEUE_ROUNDS)}
    # What the enqueues left: no cluster is to run it.
    WorkflowInstance.objects.all().delete()
    _empty_queue()
    _vacuum()
    log_dir = Path(tempfile.mkdtemp(prefix="dw-bench-logs-"))
    cluster = QCluster("bench", dict(os.environ), log_dir / "cluster.log", workers=2, settings="bench.tasks_settings")
    try:
        cluster.start().wait_ready()
        results["e2e"] = _end_to_end(E2E, E2E_ROUNDS)
    except BaseException:
        print(cluster.log()[-5000:], file=sys.stderr)
        raise
    finally:
        cluster.close()
        _empty_queue()
        shutil.rmtree(log_dir, ignore_errors=True)
    return results


def _enqueue_cost(n: int, rounds: int) -> dict[str, Any]:
    """Median ms an enqueue, a backend after the other in each round; ratios durable/other."""
    from django.tasks import task_backends

    others = [alias for alias in ("dummy", "database") if alias in task_backends]
    times: dict[str, list[float]] = {alias: [] for alias in ("default", *others)}
    for _ in range(rounds):
        for alias in times:
            bound = noop_task.using(backend=alias)
            began = time.perf_counter()
            for _ in range(n):
                bound.enqueue()
            times[alias].append((time.perf_counter() - began) / n * 1000)
        task_backends["dummy"].clear()
    ours = times["default"]
    return {"n": n, "rounds": rounds, "durable_ms": statistics.median(ours), "others": {
        alias: {"ms": statistics.median(times[alias]),
                "ratio": statistics.median(sorted(o / t for o, t in zip(ours, times[alias], strict=True)))}
        for alias in others}}


def _end_to_end(n: int, rounds: int) -> dict[str, Any]:
    """n tasks enqueued with the workers running, timed from the first enqueue to the last
    instance's `finished_at`; then n bare no-op tasks and a marker per worker, as
    bench/workers.py's end-to-end measure does. Rates a second; interleaved rounds."""
    from django.db.models import Max
    from django_q.conf import Conf
    from django_q.tasks import async_task

    from durable_workflows.models import WorkflowInstance
    from durable_workflows.taskflow import TASK_WORKFLOW

    ours, bare = [], []
    for _ in range(rounds):
        WorkflowInstance.objects.filter(workflow=TASK_WORKFLOW).delete()
        _settle()
        began = time.time()
        for _ in range(n):
            noop_task.enqueue()
        done = WorkflowInstance.objects.filter(workflow=TASK_WORKFLOW, state="completed")
        _wait(lambda done=done: done.count() >= n, 600, "the tasks", interval=0.05)
        ours.append(n / (done.aggregate(last=Max("finished_at"))["last"].timestamp() - began))
        _settle()
        marks = Path(tempfile.mkdtemp(prefix="dw-bench-tasks-"))
        markers = [marks / f"done-{i}" for i in range(int(Conf.WORKERS))]
        began = time.time()
        for _ in range(n):
            async_task("bench.workers.noop")
        for marker in markers:
            async_task("bench.workers.mark_done", str(marker))
        _wait(lambda markers=markers: all(m.exists() for m in markers), 600, "the no-op tasks")
        bare.append(n / (max(m.stat().st_mtime for m in markers) - began))
        _settle()
        shutil.rmtree(marks, ignore_errors=True)
    return {"n": n, "rounds": rounds, **_rates(ours, bare)}
