"""Workers benchmark: real 2-worker `qcluster` processes on PostgreSQL + Redis and on
SQLite + the ORM broker. Prints a table; asserts nothing.

    python bench/workers.py                      # both set-ups
    python bench/workers.py --setup sqlite-orm   # one of them

Measured per set-up, in one run:
- alarm latency: how long after its `fire_at` a sleeping instance is Running again
  (p50/p99/max over many sleeps whose ends are spread over a few seconds);
- recovery: time from SIGKILL to the instance Running again, for a killed worker (its
  cluster lives on) and for a killed cluster restarted at once; LEASE_SECONDS is 5;
- event delivery: how long after `send_event()` returns the instance's wait has returned
  (its next step started), p50/p99/max, for many instances waiting, sent 10 a second; and
  the cost of a `send_event()` call against a bare `async_task()` call made right after it;
- fan-in: a parent starting CHILDREN children of one instant step each and waiting for them
  all, against the same children started directly by `start()`, in three interleaved rounds
  (the median of the rounds' ratios); and how many runs the parent took;
- end to end: three-step workflows submitted and finished per second with the workers
  running while the starts arrive, beside bare no-op tasks submitted the same way;
- throughput: three-step workflows per second, against bare django-q2 no-op tasks on the
  same broker, database and settings, enqueued and drained the same way. The cluster runs
  with django-q2's defaults, as the README recommends: a bare task stores its success row,
  a run does not (it is enqueued with save=False). A second cluster with save_limit=-1
  repeats the comparison with no success rows on either side.

PostgreSQL: BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/dw_bench, created
if missing). Redis: BENCH_REDIS_URL (default redis://127.0.0.1:6379/0). Sizes: BENCH_N (three-
step workflows and no-op tasks, default 1000), BENCH_ALARMS (default 200), BENCH_KILLS (default 3);
BENCH_EVENTS (default 200), BENCH_CHILDREN (default 1000); BENCH_PARTS picks what to run
(default "throughput,e2e,alarms,events,children,kills,unsaved"); BENCH_E2E (default 300) and
BENCH_E2E_ROUNDS (default 5).

    python bench/workers.py --mode idle          # an idle cluster's cost (bench/idle.py)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    # Run under the module's real name, so that the workflows below register once, as they
    # do in the workers (bench.workers_settings imports bench.workers when apps are ready).
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.workers_settings")
    import django

    django.setup()
    from bench.workers import main

    sys.exit(main(sys.argv[1:]))

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from datetime import datetime, timedelta  # noqa: E402
from typing import Any  # noqa: E402

from bench import tables  # noqa: E402
from durable_workflows import workflow  # noqa: E402

SETUPS = {
    "postgres-redis": {"label": "PostgreSQL + Redis", "database": "postgres", "broker": "redis"},
    "postgres-orm": {"label": "PostgreSQL + ORM broker", "database": "postgres", "broker": "orm"},
    "sqlite-orm": {"label": "SQLite + ORM broker", "database": "sqlite", "broker": "orm"},
}
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/dw_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
N = int(os.environ.get("BENCH_N", "1000"))
ALARMS = int(os.environ.get("BENCH_ALARMS", "200"))
KILLS = int(os.environ.get("BENCH_KILLS", "3"))
EVENTS = int(os.environ.get("BENCH_EVENTS", "200"))
CHILDREN = int(os.environ.get("BENCH_CHILDREN", "1000"))
PARTS = set(os.environ.get("BENCH_PARTS", "throughput,e2e,alarms,events,children,kills,unsaved").split(","))
E2E = int(os.environ.get("BENCH_E2E", "300"))
E2E_ROUNDS = int(os.environ.get("BENCH_E2E_ROUNDS", "5"))
LEASE_SECONDS = 5.0


# -- what the workers run ---------------------------------------------------------------------
def identity(value: Any) -> Any:
    return value


def noop() -> None:
    return None


def mark_done(path: str) -> None:
    """Drops a file once every task enqueued before it has been taken by a worker."""
    Path(path).touch()


@workflow("bench.three_steps")
def three_steps(wf, n: int) -> int:
    a = wf.step("one", identity, n)
    b = wf.step("two", identity, a + 1)
    return wf.step("three", identity, b + 1)


@workflow("bench.three_steps_limited", concurrency=2)
def three_steps_limited(wf, n: int) -> int:
    """bench.three_steps with a concurrency limit (bench/limits.py)."""
    return three_steps(wf, n)


@workflow("bench.rate_none")
def rate_none(wf, n: int) -> int:
    """bench/rates.py: the same one step without a limit, for what the workers can do at all."""
    return wf.step("one", identity, n)


@workflow("bench.rate_10", rate_limit="10/s")
def rate_10(wf, n: int) -> int:
    """bench/rates.py: one step, at most ten first claims a second."""
    return wf.step("one", identity, n)


@workflow("bench.rate_50", rate_limit="50/s")
def rate_50(wf, n: int) -> int:
    return wf.step("one", identity, n)


@workflow("bench.rate_200", rate_limit="200/s")
def rate_200(wf, n: int) -> int:
    return wf.step("one", identity, n)


@workflow("bench.limited_step")
def limited_step(wf, n: int) -> int:
    """bench/rates.py: one step through the "bench" limiter (LIMITERS in bench/workers_settings.py)."""
    return wf.step("one", identity, n, limiter="bench")


@workflow("bench.sleeper")
def sleeper(wf, wake_at: str) -> str:
    wf.sleep_until(datetime.fromisoformat(wake_at))
    return wf.step("after", identity, "awake")


@workflow("bench.waiter")
def waiter(wf) -> str:
    wf.wait_for_event("go")
    return wf.step("after", identity, "got it")


@workflow("bench.child")
def child(wf, n: int) -> int:
    return wf.step("one", identity, n)


@workflow("bench.fan")
def fan(wf, count: int) -> int:
    kids = [wf.start_child("bench.child", n) for n in range(count)]
    return sum(wf.wait_child(kid) for kid in kids)


@workflow("bench.long_step")
def long_step(wf, seconds: float) -> None:
    wf.step("long", time.sleep, seconds)


# -- the driver -------------------------------------------------------------------------------
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", choices=sorted(SETUPS), action="append")
    parser.add_argument("--json", action="store_true", help="measure in this process, print JSON")
    parser.add_argument("--mode", choices=["full", "idle"], default="full",
                        help="idle: what an idle cluster of 2 and 8 workers costs PostgreSQL (bench/idle.py)")
    args = parser.parse_args(argv)
    if args.mode == "idle":
        from bench import idle

        if args.json:
            print(json.dumps(idle.measure()))
            return 0
        return idle.run(POSTGRES_URL, REDIS_URL, __file__, ROOT)
    if args.json:
        print(json.dumps(measure()))
        return 0
    results = {}
    for key in args.setup or list(SETUPS):
        print(f"running {SETUPS[key]['label']} ...", file=sys.stderr, flush=True)
        results[key] = _run_setup(key)
    print(tables.workers(results, {k: v["label"] for k, v in SETUPS.items()}, LEASE_SECONDS))
    return 0


def _run_setup(key: str) -> dict[str, Any]:
    setup = SETUPS[key]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.workers_settings",
           "BENCH_BROKER": setup["broker"], "BENCH_CLUSTER": f"bench{uuid.uuid4().hex[:8]}",
           "BENCH_LEASE_SECONDS": str(LEASE_SECONDS), "PYTHONUNBUFFERED": "1"}
    if setup["database"] == "postgres":
        _create_postgres_database(POSTGRES_URL)
        env["DATABASE_URL"] = POSTGRES_URL
    else:
        env.pop("DATABASE_URL", None)
        env["BENCH_SQLITE"] = os.path.join(tempfile.mkdtemp(prefix="dw-bench-"), "bench.sqlite3")
    try:
        done = subprocess.run([sys.executable, __file__, "--json"], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    finally:
        if "BENCH_SQLITE" in env:
            shutil.rmtree(os.path.dirname(env["BENCH_SQLITE"]), ignore_errors=True)
    if done.returncode != 0:
        raise SystemExit(f"{setup['label']}: the measuring process failed ({done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _create_postgres_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def measure() -> dict[str, Any]:
    """Runs in a process whose settings point at one database and one broker."""
    from django.core.management import call_command
    from django.db import connection

    from durable_workflows.models import WorkflowInstance
    from tests.workers.cluster import QCluster

    call_command("migrate", verbosity=0)
    WorkflowInstance.objects.all().delete()
    # Tasks an earlier, interrupted run left under its own cluster name: every dequeue
    # would scan past them.
    from django_q.models import OrmQ

    OrmQ.objects.all().delete()
    _vacuum()
    log_dir = Path(tempfile.mkdtemp(prefix="dw-bench-logs-"))
    cluster = QCluster("bench", dict(os.environ), log_dir / "cluster.log", workers=2,
                       settings="bench.workers_settings")
    results: dict[str, Any] = {"database": connection.vendor}
    try:
        cluster.start().wait_ready()
        if "throughput" in PARTS:
            results["bare"] = _bare_throughput(N, log_dir)
            results["ours"] = _workflow_throughput(N, log_dir)
        if "e2e" in PARTS:
            results["e2e"] = _end_to_end(E2E)
        if "alarms" in PARTS:
            results["alarms"] = _alarm_latency(ALARMS)
        if "events" in PARTS:
            results["events"] = _event_delivery(EVENTS)
        if "children" in PARTS:
            results["children"] = _fan_in(CHILDREN)
        if "kills" in PARTS:
            results["kill_worker"] = [_kill_worker(cluster) for _ in range(KILLS)]
            results["kill_cluster"] = [_kill_cluster(cluster) for _ in range(KILLS)]
        cluster.close()
        if "unsaved" not in PARTS:
            return results
        # The same throughput with save_limit=-1: the bare tasks store no success row
        # either, so both sides do only their own work.
        cluster = QCluster("bench-unsaved", {**os.environ, "BENCH_SAVE_LIMIT": "-1"},
                           log_dir / "cluster-unsaved.log", workers=2, settings="bench.workers_settings")
        cluster.start().wait_ready()
        results["bare_unsaved"] = _bare_throughput(N, log_dir)
        results["ours_unsaved"] = _workflow_throughput(N, log_dir)
    except BaseException:
        print(cluster.log()[-5000:], file=sys.stderr)
        raise
    finally:
        cluster.close()
        _empty_queue()
        shutil.rmtree(log_dir, ignore_errors=True)
    return results


def _empty_queue() -> None:
    """Drop what the kills left in the broker (tasks of instances that no longer matter)."""
    from django_q.brokers import get_broker

    get_broker().delete_queue()


def _wait(condition, timeout: float, what: str, interval: float = 0.02) -> float:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(interval)
    return time.monotonic()


def gate(entered: str, release: str, limit: float = 300.0) -> None:
    """Holds a worker until `release` exists, so that the queue fills up behind it."""
    Path(entered).touch()
    deadline = time.monotonic() + limit
    while not Path(release).exists() and time.monotonic() < deadline:
        time.sleep(0.005)


class _Gates:
    """Occupies every worker with a gate task; the work enqueued meanwhile waits in the
    broker, and the drain is timed from the moment the gates open."""

    def __init__(self, log_dir: Path) -> None:
        from django_q.conf import Conf

        self.workers = int(Conf.WORKERS)
        self.dir = log_dir / f"gates-{uuid.uuid4().hex}"
        self.dir.mkdir()
        self.release = self.dir / "release"

    def close(self) -> None:
        from django_q.tasks import async_task

        entered = [self.dir / f"entered-{i}" for i in range(self.workers)]
        for marker in entered:
            async_task("bench.workers.gate", str(marker), str(self.release))
        _wait(lambda: all(m.exists() for m in entered), 60, "every worker to hold a gate")

    def open(self) -> float:
        self.release.touch()
        return time.monotonic()


def _bare_throughput(n: int, log_dir: Path) -> dict[str, float]:
    """n no-op tasks, then one marker task per worker: when every marker has run, every
    task before them has been taken, and all but the last few finished."""
    from django_q.tasks import async_task

    gates = _Gates(log_dir)
    gates.close()
    markers = [gates.dir / f"done-{i}" for i in range(gates.workers)]
    began = time.monotonic()
    for _ in range(n):
        async_task("bench.workers.noop")
    enqueued = time.monotonic()
    for marker in markers:
        async_task("bench.workers.mark_done", str(marker))
    opened = gates.open()
    finished = _wait(lambda: all(m.exists() for m in markers), 600, "the no-op tasks")
    return {"n": n, "seconds": finished - opened, "per_second": n / (finished - opened),
            "enqueue_per_second": n / (enqueued - began)}


def _end_to_end(n: int, rounds: int = E2E_ROUNDS) -> dict[str, Any]:
    """Submitted and finished, with the workers running while the starts arrive (no gate):
    n three-step workflows, and n bare no-op tasks (then one marker per worker) submitted
    the same way, in interleaved rounds, each timed from the first submission.

    Two ends are timed for each phase. The last completion: the last instance's
    `finished_at`, the last marker's run (once it ran, every no-op before it had been taken
    by a worker). And, with the ORM broker, the drain: no task of the phase left in the
    broker, which the monitor empties once it has stored a task's result and acknowledged
    it. The first leaves out the monitor's work on the bare tasks' results; the second
    counts it, and the acknowledgements of the workflows' tasks too.

    Between two phases the broker drains and its table is vacuumed (not timed), so that no
    phase's trailing work is timed in the next one."""
    from django.db.models import Max
    from django_q.conf import Conf
    from django_q.tasks import async_task

    from durable_workflows import client
    from durable_workflows.models import WorkflowInstance

    ours, bare, ours_drained, bare_drained = [], [], [], []
    for _ in range(rounds):
        WorkflowInstance.objects.filter(workflow="bench.three_steps").delete()
        _settle()
        began = time.time()
        for i in range(n):
            client.start("bench.three_steps", i)
        done = WorkflowInstance.objects.filter(workflow="bench.three_steps", state="completed")
        _wait(lambda done=done: done.count() >= n, 600, "the workflows", interval=0.05)
        last = done.aggregate(last=Max("finished_at"))["last"].timestamp()
        ours.append(n / (last - began))
        drained = _settle()
        if drained is not None:
            ours_drained.append(n / (drained - began))
        marks = Path(tempfile.mkdtemp(prefix="dw-bench-e2e-"))
        markers = [marks / f"done-{i}" for i in range(int(Conf.WORKERS))]
        began = time.time()
        for _ in range(n):
            async_task("bench.workers.noop")
        for marker in markers:
            async_task("bench.workers.mark_done", str(marker))
        _wait(lambda markers=markers: all(m.exists() for m in markers), 600, "the no-op tasks")
        last = max(m.stat().st_mtime for m in markers)
        bare.append(n / (last - began))
        drained = _settle()
        if drained is not None:
            bare_drained.append(n / (drained - began))
        shutil.rmtree(marks, ignore_errors=True)
    result = {"n": n, "rounds": rounds, **_rates(ours, bare)}
    if ours_drained:
        result["drained"] = _rates(ours_drained, bare_drained)
    return result


def _rates(ours: list[float], bare: list[float]) -> dict[str, Any]:
    """Medians of the rates, and of the rounds' ratios (each round's two phases ran back to
    back, so their ratio holds up against the machine's drift better than the rates)."""
    ratios = sorted(o / b for o, b in zip(ours, bare, strict=True))
    return {"ours": statistics.median(ours), "bare": statistics.median(bare),
            "ratio": statistics.median(ratios), "ratios": ratios}


def _vacuum() -> None:
    """VACUUM the tables a phase churns (PostgreSQL). Every task leaves dead rows in the
    ORM broker's table, which has no index a dequeue could use: each dequeue scans them.
    Autovacuum keeps that in check on a real server, but some test machines run with it off,
    and then every phase would be slower than the one before, bare tasks and workflows
    alike."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    from django_q.models import OrmQ, Task

    from durable_workflows.models import Event, StepRecord, WorkflowInstance

    tables = ", ".join(m._meta.db_table for m in (OrmQ, Task, WorkflowInstance, StepRecord, Event))
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM (ANALYZE) {tables}")


def _settle(timeout: float = 120) -> float | None:
    """Wait until the broker holds none of this cluster's tasks, then vacuum. Returns when
    the broker was found empty, with the ORM broker, where a task's row goes once the
    monitor has stored its result and acknowledged it; None with Redis, which hands a task
    out for good when a worker takes it (a short pause then covers its monitor)."""
    from django_q.brokers import get_broker
    from django_q.conf import Conf

    broker = get_broker()
    if not Conf.ORM:
        _wait(lambda: broker.queue_size() == 0, timeout, "the broker to drain", interval=0.02)
        time.sleep(0.3)
        return None
    from django_q.models import OrmQ

    pending = OrmQ.objects.using(Conf.ORM).filter(key=broker.list_key)
    _wait(lambda: not pending.exists(), timeout, "the broker to drain", interval=0.005)
    drained = time.time()
    _vacuum()
    return drained


def _workflow_throughput(n: int, log_dir: Path) -> dict[str, float]:
    from durable_workflows import client
    from durable_workflows.models import WorkflowInstance

    WorkflowInstance.objects.filter(workflow="bench.three_steps").delete()
    gates = _Gates(log_dir)
    gates.close()
    began = time.monotonic()
    for i in range(n):
        client.start("bench.three_steps", i)
    enqueued = time.monotonic()
    opened = gates.open()
    done = WorkflowInstance.objects.filter(workflow="bench.three_steps", state="completed")
    finished = _wait(lambda: done.count() >= n, 600, "the workflows", interval=0.05)
    return {"n": n, "seconds": finished - opened, "per_second": n / (finished - opened),
            "enqueue_per_second": n / (enqueued - began)}


def _alarm_latency(count: int) -> dict[str, float]:
    """Sleeps ending at a steady rate (25 a second), all of them asleep before the first
    ends, so that the delay measured is the dispatch's, not a backlog's."""
    from django.utils import timezone

    from durable_workflows import client
    from durable_workflows.models import Event, StepRecord, WorkflowInstance

    first = timezone.now() + timedelta(seconds=3 + 0.03 * count)
    ids = [
        client.start("bench.sleeper", (first + timedelta(seconds=i / 25)).isoformat()).instance_id
        for i in range(count)
    ]
    done = WorkflowInstance.objects.filter(pk__in=ids, state="completed")
    _wait(lambda: done.count() == count, 120 + count / 25, "the sleepers", interval=0.1)
    wake_at = dict(
        StepRecord.objects.filter(instance_id__in=ids, kind="sleep").values_list("instance_id", "wake_at")
    )
    resumed = dict(
        Event.objects.filter(instance_id__in=ids, kind="workflow.resumed")
        .values_list("instance_id", "created_at")
    )
    # An instance whose first run came after its wake time never slept: it has no delay.
    delays = sorted((resumed[pk] - wake_at[pk]).total_seconds() for pk in ids if pk in resumed)
    return {
        "n": len(delays),
        "p50": statistics.median(delays),
        "p99": delays[min(len(delays) - 1, int(round(0.99 * len(delays))) - 1)],
        "max": delays[-1],
    }


def _percentiles(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {"n": len(values), "p50": statistics.median(values),
            "p99": values[min(len(values) - 1, int(round(0.99 * len(values))) - 1)], "max": values[-1]}


def _waiters(count: int) -> list[str]:
    from durable_workflows import client
    from durable_workflows.models import StepRecord

    ids = [client.start("bench.waiter").instance_id for _ in range(count)]
    awaiting = StepRecord.objects.filter(instance_id__in=ids, kind="event", state="awaiting")
    _wait(lambda: awaiting.count() == count, 120 + count / 10, "the waiters to wait", interval=0.1)
    return ids


def _event_delivery(count: int) -> dict[str, Any]:
    """Latency: instances waiting for an event, each sent one at 10 a second (the workers
    keep up, so the delay is the delivery's, not a backlog's). Cost: as many again, sent
    back to back, each send followed by a bare `async_task` of a no-op, both timed."""
    from django_q.tasks import async_task

    from durable_workflows import send_event
    from durable_workflows.models import StepRecord, WorkflowInstance

    ids = _waiters(count)
    sent_at: dict[str, float] = {}
    began = time.time()
    for i, instance_id in enumerate(ids):
        pause = began + i / 10 - time.time()
        if pause > 0:
            time.sleep(pause)
        send_event(instance_id, "go", {"n": i}, event_id=f"bench-{i}")
        sent_at[instance_id] = time.time()
    done = WorkflowInstance.objects.filter(pk__in=ids, state="completed")
    _wait(lambda: done.count() == count, 120, "the waiters to finish", interval=0.1)
    returned = dict(
        StepRecord.objects.filter(instance_id__in=ids, name="after").values_list("instance_id", "started_at")
    )
    delays = [returned[pk].timestamp() - sent_at[pk] for pk in ids]
    send_costs, bare_costs = [], []
    for i, instance_id in enumerate(_waiters(count)):
        started = time.perf_counter()
        send_event(instance_id, "go", {"n": i}, event_id=f"cost-{i}")
        send_costs.append(time.perf_counter() - started)
        started = time.perf_counter()
        async_task("bench.workers.noop")
        bare_costs.append(time.perf_counter() - started)
    return {**_percentiles(delays), "send_ms": statistics.median(send_costs) * 1000,
            "bare_ms": statistics.median(bare_costs) * 1000}


def _fan_in(count: int, rounds: int = 3) -> dict[str, Any]:
    """The same `count` one-step workflows, once as the children of one parent and once
    started directly, each timed from the first start to the last completion; `rounds`
    rounds, the two interleaved, reported as the median of each round's ratio."""
    from durable_workflows import client
    from durable_workflows.models import Event, WorkflowInstance

    fans, directs, runs = [], [], []
    for _ in range(rounds):
        began = time.monotonic()
        parent = client.start("bench.fan", count).instance_id
        finished = WorkflowInstance.objects.filter(pk=parent, state="completed")
        fans.append(_wait(finished.exists, 600, "the fan-in", interval=0.05) - began)
        runs.append(Event.objects.filter(instance_id=parent, kind__in=["workflow.started", "workflow.resumed"]).count())
        began = time.monotonic()
        ids = [client.start("bench.child", n).instance_id for n in range(count)]
        done = WorkflowInstance.objects.filter(pk__in=ids, state="completed")
        directs.append(_wait(lambda done=done: done.count() == count, 600, "the direct starts", interval=0.05) - began)
    ratios = sorted(f / d for f, d in zip(fans, directs, strict=True))
    return {"n": count, "fan_seconds": statistics.median(fans), "direct_seconds": statistics.median(directs),
            "ratio": statistics.median(ratios), "ratios": ratios, "parent_runs": max(runs)}


def _start_long_step():
    from durable_workflows import client
    from durable_workflows.models import WorkflowInstance

    handle = client.start("bench.long_step", 3600.0)
    row = WorkflowInstance.objects.filter(pk=handle.instance_id)
    _wait(lambda: row.filter(state="running").exists(), 60, "the long step to start")
    # The claim commits just before the step starts; give it a moment to be inside it.
    time.sleep(0.2)
    return handle, row


def _running_again(row, epoch: int, since: float) -> float:
    _wait(lambda: row.filter(state="running", epoch__gt=epoch).exists(), 120,
          "the instance to run again", interval=0.01)
    return time.monotonic() - since


def _owner_pid(row) -> int:
    return int(row.values_list("lease_owner", flat=True).get().split(":")[1])


def _end_long_step(handle, row) -> None:
    """Cancel the instance and kill the worker still sleeping in its step, so that the
    next trial finds both workers free (the cluster replaces the worker)."""
    handle.cancel("benchmark over")
    os.kill(_owner_pid(row), signal.SIGKILL)


def _kill_worker(cluster) -> float:
    handle, row = _start_long_step()
    epoch = row.values_list("epoch", flat=True).get()
    pid = _owner_pid(row)
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    seconds = _running_again(row, epoch, killed)
    _end_long_step(handle, row)
    return seconds


def _kill_cluster(cluster) -> float:
    handle, row = _start_long_step()
    epoch = row.values_list("epoch", flat=True).get()
    killed = time.monotonic()
    cluster.kill(signal.SIGKILL)
    cluster.start()
    seconds = _running_again(row, epoch, killed)
    cluster.wait_ready()
    _end_long_step(handle, row)
    return seconds
