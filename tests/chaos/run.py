"""The chaos driver: `python -m tests.chaos.run [--broker orm|redis] [--n N] [--faults F]`.

It starts a private PostgreSQL (and redis-server), points Django at them
(tests.chaos.settings), starts N five-step workflows on a supervised 2-worker cluster, and
strikes faults while they run: each when a random share of the steps is done, a step is
in flight and the cluster is up. Then it waits (with a deadline) for every instance to
finish, checks the step log against the faults (checks.py) and prints a JSON summary as
its last line of stdout. Progress goes to stderr. It asserts nothing; the test and the
bench read the summary (launch.run_driver starts it and cleans up after it).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.chaos import checks, procs
from tests.chaos.faults import Fault, Injector, plan
from tests.chaos.servers import PrivatePostgres, PrivateRedis
from tests.chaos.supervisor import Supervisor
from tests.workers import steplog

LOG_PATTERNS = {
    "could not claim": "could not claim",
    "run stopped by a database error": "stopped by a database error",
    "ticker scan failed": "ticker: ",
    "worker reincarnated": "reincarnated worker",
    "pusher reincarnated": "reincarnated pusher",
    "broker pull failed": "Failed to pull task from broker",
    "dispatch failed": "DispatchError",
    "cluster failed to start": "failed to start",
    "fresh tasks run": "processing dw:fresh:",
    "recover tasks run": "processing dw:recover:",
}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=["orm", "redis"], default="orm")
    parser.add_argument("--n", type=int, default=200, help="five-step workflows")
    parser.add_argument("--faults", type=int, default=9, help="how many faults (random kinds)")
    parser.add_argument("--kinds", default="", help="the faults, comma-separated, in this order")
    parser.add_argument("--step-seconds", type=float, default=0.1)
    parser.add_argument("--lease", type=float, default=5.0)
    parser.add_argument("--heartbeat", type=float, default=1.0)
    parser.add_argument("--redispatch", type=float, default=10.0)
    parser.add_argument("--q-timeout", type=int, default=20)
    parser.add_argument("--q-retry", type=int, default=30)
    parser.add_argument("--deadline", type=float, default=600.0, help="seconds to settle, at most")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the run's directory")
    return parser.parse_args(argv)


def say(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    args = parse(argv)
    run_id = os.environ.setdefault(procs.MARKER, uuid.uuid4().hex[:12])
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    run_dir = Path(tempfile.mkdtemp(prefix=f"dw-chaos-{run_id}-"))
    os.chmod(run_dir, 0o755)  # PostgreSQL runs as another user under it
    procs.become_subreaper()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    env = dict(os.environ)
    postgres = PrivatePostgres(run_dir / "pg", env)
    redis = PrivateRedis(run_dir / "redis", env) if args.broker == "redis" else None
    supervisor: Supervisor | None = None
    summary: dict[str, Any] = {"broker": args.broker, "n": args.n, "seed": seed, "run_dir": str(run_dir),
                               "settings": {k: getattr(args, k) for k in
                                            ("step_seconds", "lease", "heartbeat", "redispatch",
                                             "q_timeout", "q_retry")}}
    try:
        postgres.start()
        postgres.create_database()
        if redis is not None:
            redis.start()
        _configure(args, run_dir, postgres, redis)
        import django
        from django.core.management import call_command

        django.setup()
        logging.getLogger("django-q").setLevel(logging.WARNING)  # not a line per start here
        call_command("migrate", verbosity=0)
        supervisor = Supervisor(dict(os.environ), run_dir / "cluster.log").start()
        _wait(supervisor.ready, 180, "the first cluster to start")
        injector = Injector(supervisor, postgres, redis, random.Random(seed))
        summary.update(_chaos(args, random.Random(seed + 1), supervisor, injector, run_dir))
    except BaseException as error:
        summary["error"] = f"{type(error).__name__}: {error}"
        raise
    finally:
        if supervisor is not None:
            supervisor.stop()
            summary["log_counts"] = _log_counts(supervisor.logs(tail=10**9))
            summary["cluster_log_tail"] = supervisor.logs(tail=4000)
        for server in (redis, postgres):
            if server is not None:
                server.stop()
        summary["leftovers"] = procs.kill_marked(run_id)
        procs.reap()
        summary["ok"] = _ok(summary)
        if summary["ok"] and not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
        print(json.dumps(summary), flush=True)
    return 0


def _configure(args: argparse.Namespace, run_dir: Path, postgres: PrivatePostgres,
               redis: PrivateRedis | None) -> None:
    """The environment tests.chaos.settings reads, here and in every cluster."""
    for key in ("DATABASE_URL", "DW_DB_NAME", "DW_REDIS_URL"):
        os.environ.pop(key, None)
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "tests.chaos.settings",
        "DW_CHAOS_PG_PORT": str(postgres.port),
        "DW_BROKER": args.broker,
        "DW_CLUSTER_NAME": f"chaos{os.environ[procs.MARKER]}",
        "DW_STEP_LOG": str(run_dir / "steps.jsonl"),
        "DW_LEASE_SECONDS": str(args.lease),
        "DW_HEARTBEAT_SECONDS": str(args.heartbeat),
        "DW_REDISPATCH_AFTER_SECONDS": str(args.redispatch),
        "DW_Q_TIMEOUT": str(args.q_timeout),
        "DW_Q_RETRY": str(args.q_retry),
        "PYTHONUNBUFFERED": "1",
    })
    if redis is not None:
        os.environ["DW_CHAOS_REDIS_PORT"] = str(redis.port)


def _wait(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
    return True


def _chaos(args: argparse.Namespace, rng: random.Random, supervisor: Supervisor,
           injector: Injector, run_dir: Path) -> dict[str, Any]:
    from durable_workflows import client
    from tests.chaos.workflows import STEPS

    step_log = run_dir / "steps.jsonl"
    began = time.time()
    ids = [client.start("chaos.five_steps", args.step_seconds, instance_id=f"chaos-{i}").instance_id
           for i in range(args.n)]
    kinds = args.kinds.split(",") if args.kinds else plan(args.faults, args.broker, rng)
    total = args.n * len(STEPS)
    # Fault k strikes once a random share of the steps in the k-th of equal slices of
    # 5%..75% is done: spread over the run, and well before its end.
    shares = [0.05 + 0.70 * (k + rng.random()) / len(kinds) for k in range(len(kinds))]
    faults: list[Fault] = []
    skipped: list[str] = []
    for kind, share in zip(kinds, shares, strict=True):
        previous = faults[-1].over if faults else 0.0
        state: dict[str, Any] = {}

        def due(kind: str = kind, share: float = share, previous: float = previous,
                state: dict[str, Any] = state) -> bool:
            executions = steplog.read(step_log)
            now = time.time()
            done = checks.steps_done_before(executions, now)
            busy = {e.pid for e in executions if e.end is None and now - e.start < 2.0 and procs.alive(e.pid)}
            state.update(done=done, busy=busy)
            if done >= total:
                return True  # too late: every step is done
            if kind == "worker":
                busy &= set(supervisor.worker_pids())
            return (done >= share * total and bool(busy) and supervisor.ready()
                    and any(e.end is not None and e.end > previous for e in executions))

        _wait(due, args.deadline, f"the moment for fault {len(faults) + 1} ({kind})")
        if state["done"] >= total:
            skipped.append(kind)
            continue
        fault = injector.strike(kind, state["busy"])
        fault.steps_done, fault.in_flight = state["done"], len(state["busy"])
        faults.append(fault)
        say(f"fault {len(faults)}/{len(kinds)}: {kind} at {fault.steps_done}/{total} steps "
            f"({fault.in_flight} in flight) {fault.note}")
    finished_at, states = _wait_finished(ids, args.deadline)
    return _summarise(args, ids, STEPS, faults, skipped, states, began, finished_at,
                      steplog.read(step_log), supervisor)


def _wait_finished(ids: list[str], timeout: float) -> tuple[float | None, dict[str, int]]:
    """Wait until every instance is Completed, Failed or Cancelled (or the deadline).
    Returns the moment the last one finished (its finished_at) and the count per state.
    The database may be recovering from a crash: errors are retried."""
    from django.db import DatabaseError, connections
    from django.db.models import Count, Max

    from durable_workflows.models import WorkflowInstance

    def read() -> tuple[Any, dict[str, int]] | None:
        try:
            rows = WorkflowInstance.objects.filter(pk__in=ids).values("state").annotate(n=Count("pk"))
            states = {row["state"]: row["n"] for row in rows}
            last = WorkflowInstance.objects.filter(pk__in=ids).aggregate(m=Max("finished_at"))["m"]
            return last, states
        except DatabaseError:
            connections.close_all()
            return None

    deadline = time.monotonic() + timeout
    while True:
        result = read()
        if result is not None:
            last, states = result
            finished = sum(states.get(s, 0) for s in ("completed", "failed", "cancelled"))
            if finished == len(ids):
                return last.timestamp(), states
            if time.monotonic() > deadline:
                return None, states
        time.sleep(0.2)


def _summarise(args: argparse.Namespace, ids: list[str], steps: list[str], faults: list[Fault],
               skipped: list[str], states: dict[str, int], began: float, finished_at: float | None,
               executions: list[steplog.Execution], supervisor: Supervisor) -> dict[str, Any]:
    from django.db.models import Max, Sum

    from durable_workflows.models import Event, WorkflowInstance

    instances = WorkflowInstance.objects.filter(pk__in=ids)
    failed = list(instances.filter(state="failed").values_list("pk", "error_message")[:20])
    totals = instances.aggregate(runs=Sum("run_count"), most=Max("run_count"))
    result = checks.analyse(executions, faults, ids, steps)
    last = faults[-1].at if faults else began
    rate = checks.clean_rate(executions, faults[0].at) if faults else None
    left = len(ids) * len(steps) - checks.steps_done_before(executions, last)
    estimate = left / rate if rate else None
    return {
        **result,
        "faults": [f.as_dict() | {"at": f.at - began, "over": f.over - began} for f in faults],
        "faults_skipped": skipped,
        "states": states,
        "completed": states.get("completed", 0),
        "failed": states.get("failed", 0),
        "unfinished": len(ids) - sum(states.get(s, 0) for s in ("completed", "failed", "cancelled")),
        "failed_examples": failed,
        "runs": totals["runs"],
        "most_runs_of_one_instance": totals["most"],
        "recoveries": Event.objects.filter(instance_id__in=ids, kind="workflow.recovered").count(),
        "cluster_starts": supervisor.starts,
        "clean_steps_per_second": rate,
        "step_seconds_median": checks.step_seconds(executions),
        "steps_left_at_last_fault": left,
        "work_left_seconds": estimate,
        "settle_seconds": finished_at - last if finished_at else None,
        "settle_bound_seconds": args.lease + 10 + estimate if estimate is not None else None,
        "total_seconds": (finished_at or time.time()) - began,
    }


def _log_counts(log: str) -> dict[str, int]:
    return {name: log.count(pattern) for name, pattern in LOG_PATTERNS.items()}


def _ok(summary: dict[str, Any]) -> bool:
    return (not summary.get("error") and summary.get("completed") == summary["n"]
            and not summary.get("unexplained_reruns") and not summary.get("missing_steps")
            and not summary.get("overlaps"))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
