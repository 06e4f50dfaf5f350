"""The faults a chaos run injects, and the record each one leaves for the checks.

- worker: SIGKILL of one worker process of the running cluster (its guard starts another);
- guard: SIGKILL of the cluster's guard (django-q2's Sentinel); its main process exits and
  the supervisor starts a new cluster, while the old workers run on as orphans;
- cluster: SIGKILL of the running cluster's whole process group (a machine losing power);
- db: a crash of the private PostgreSQL (`pg_ctl stop -m immediate`), started again after
  a moment; every connection is cut and the server runs crash recovery;
- redis: SIGKILL of the private redis-server, started again after a moment, its queue lost.

Each fault records when it struck (`at`) and when it was over (`over`: the server is back;
the same as `at` for a kill), which processes it killed and, for a guard, which workers it
left orphaned (should those exit mid-step, the guard's death is what cut their steps
short), so that the checks can tell which re-run of a step it explains.
"""

from __future__ import annotations

import random
import signal
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from tests.chaos import procs
from tests.chaos.servers import PrivatePostgres, PrivateRedis
from tests.chaos.supervisor import Supervisor

KINDS = ("worker", "guard", "cluster", "db", "redis")
# How long the orphaned workers of a killed guard get to exit.
ORPHAN_EXIT_SECONDS = 15.0


@dataclass
class Fault:
    kind: str
    at: float
    over: float
    killed: list[int] = field(default_factory=list)
    orphaned: list[int] = field(default_factory=list)  # a killed guard's workers
    note: str = ""
    steps_done: int = 0  # distinct steps ended (step log) when it struck
    in_flight: int = 0  # steps started and not ended when it struck

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan(count: int, broker: str, rng: random.Random) -> list[str]:
    """`count` faults: each kind once and a second database crash, in a random order, the
    rest drawn at random (a Redis restart only with the Redis broker)."""
    kinds = [k for k in KINDS if k != "redis" or broker == "redis"]
    base = [*kinds, "db"]
    chosen = base[:count] if count < len(base) else base + rng.choices(kinds, k=count - len(base))
    rng.shuffle(chosen)
    return chosen


class Injector:
    """Strikes faults at the running cluster and the private servers."""

    def __init__(self, supervisor: Supervisor, postgres: PrivatePostgres,
                 redis: PrivateRedis | None, rng: random.Random,
                 down_seconds: tuple[float, float] = (0.5, 2.0)) -> None:
        self.supervisor = supervisor
        self.postgres = postgres
        self.redis = redis
        self.rng = rng
        self.down_seconds = down_seconds

    def strike(self, kind: str, busy_pids: set[int]) -> Fault:
        """Inject one fault. `busy_pids` are the processes in a step right now: a worker
        kill prefers one of them, as a random kill of a busy worker."""
        return getattr(self, f"_{kind}")(busy_pids)

    def _worker(self, busy_pids: set[int]) -> Fault:
        workers = self.supervisor.worker_pids()
        if not workers:
            return Fault("worker", time.time(), time.time(), note="no live worker to kill")
        busy = [pid for pid in workers if pid in busy_pids]
        victim = self.rng.choice(busy or workers)
        procs.kill([victim])
        at = time.time()
        return Fault("worker", at, at, [victim], note="busy" if busy else "idle")

    def _guard(self, busy_pids: set[int]) -> Fault:
        guard = self.supervisor.guard_pid()
        if guard is None:
            return Fault("guard", time.time(), time.time(), note="no guard to kill")
        orphans = self.supervisor.worker_pids()
        procs.kill([guard])
        at = time.time()
        # The fault is over when its orphaned workers have exited (they notice their guard
        # is gone and stop, giving their runs back): a step one of them had started lasted
        # until then. Those still alive after the deadline are reported.
        deadline = at + ORPHAN_EXIT_SECONDS
        while any(procs.alive(pid) for pid in orphans) and time.time() < deadline:
            time.sleep(0.05)
        lingering = [pid for pid in orphans if procs.alive(pid)]
        note = f"orphaned workers {orphans}" + (f", still alive: {lingering}" if lingering else ", exited")
        return Fault("guard", at, time.time(), [guard], orphaned=orphans, note=note)

    def _cluster(self, busy_pids: set[int]) -> Fault:
        main = self.supervisor.main_pid()
        if main is None:
            return Fault("cluster", time.time(), time.time(), note="no cluster running")
        members = procs.group_members(main)
        procs.killpg(main, signal.SIGKILL)
        at = time.time()
        return Fault("cluster", at, at, members)

    def _db(self, busy_pids: set[int]) -> Fault:
        self.postgres.crash()
        at = time.time()
        down = self.rng.uniform(*self.down_seconds)
        time.sleep(down)  # the outage itself: how long the server stays down
        self.postgres.start()
        return Fault("db", at, time.time(), note=f"down {down:.1f}s, then crash recovery")

    def _redis(self, busy_pids: set[int]) -> Fault:
        assert self.redis is not None, "a Redis restart needs the Redis broker"
        self.redis.crash()
        at = time.time()
        down = self.rng.uniform(*self.down_seconds)
        time.sleep(down)
        self.redis.start()
        return Fault("redis", at, time.time(), note=f"down {down:.1f}s, queue lost")
