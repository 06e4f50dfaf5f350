"""A cluster wedged by the SIGKILL of the idle worker that held its task queue's read lock
(django-q2 issue 23) ends itself, and the cluster its supervisor starts runs the work
(durable_workflows/djangoq/wedge.py). Before that, workers busy with steps longer than the wedge
delay, tasks waiting behind them, leave the cluster running.

ORM broker on SQLite, Redis broker on PostgreSQL (see tests/workers/fixtures.py).
"""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest

import tests.workers.workflows  # noqa: F401  (registers the workflows the clusters run)
from durable_workflows import client, wedge
from durable_workflows.models import WorkflowInstance
from tests.chaos import procs
from tests.chaos.supervisor import Supervisor
from tests.helpers import wait_until
from tests.workers import steplog
from tests.workers.fixtures import workers_fixture  # noqa: F401  (the `workers` fixture)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# A short lease, so that the tasks the wedged cluster took with it run again soon; every
# other backstop slow, so that the test cannot pass by waiting for them.
WEDGE_ENV = {
    "DW_LEASE_SECONDS": "3", "DW_HEARTBEAT_SECONDS": "1", "DW_REDISPATCH_AFTER_SECONDS": "600",
    "DW_Q_TIMEOUT": "500", "DW_Q_RETRY": "600",
}


@pytest.fixture
def supervisor(workers, tmp_path):
    env = {**workers.clusters.base_env, procs.MARKER: uuid.uuid4().hex[:12], **WEDGE_ENV}
    supervised = Supervisor(env, tmp_path / "supervised.log", workers=2,
                            settings="tests.workers.settings").start()
    try:
        yield supervised
    finally:
        supervised.stop()


def _completed(ids: list[str]) -> int:
    return WorkflowInstance.objects.filter(pk__in=ids, state="completed").count()


def test_a_cluster_wedged_by_a_killed_idle_worker_exits_and_its_work_completes(workers, supervisor):
    wait_until(supervisor.ready, timeout=60, interval=0.1, message="the first cluster")
    first = supervisor.current()

    # Both workers in a step longer than the wedge delay, three tasks waiting behind them in
    # the task queue: not a wedge.
    long = [client.start("workers.steps", 1, wedge.WEDGE_SECONDS + 2, instance_id=f"long-{n}").instance_id
            for n in range(2)]
    wait_until(lambda: sum(1 for e in workers.executions() if e.end is None) == 2, timeout=30,
               message="both workers inside their long step")
    behind = [client.start("workers.steps", 1, instance_id=f"behind-{n}").instance_id for n in range(3)]
    wait_until(lambda: _completed(long + behind) == 5, timeout=60, interval=0.2,
               message=f"the long steps and the tasks behind them\n{supervisor.logs()}")
    assert supervisor.starts == 1 and first.alive, supervisor.logs()

    # Idle: one worker waits for a task holding the read lock, the other waits for the lock.
    holder = wait_until(lambda: [pid for pid in supervisor.worker_pids() if procs.reading_a_pipe(pid)],
                        timeout=30, message="an idle worker reading the task queue")[0]
    main, guard = supervisor.main_pid(), supervisor.guard_pid()
    others = [pid for pid in procs.children(guard) if pid != holder]  # workers, pusher, monitor
    helpers = [pid for pid in others if pid not in first.worker_pids()]  # pusher, monitor
    assert main and guard and len(helpers) == 2, (main, guard, others)
    os.kill(holder, signal.SIGKILL)
    killed_at = time.time()
    ids = [client.start("workers.steps", 1, instance_id=f"after-{n}").instance_id for n in range(10)]

    wait_until(lambda: supervisor.exits, timeout=30, interval=0.1,
               message=f"the wedged cluster to exit\n{supervisor.logs()}")
    exited_at, pid, code = supervisor.exits[0]
    assert pid == main and code == -signal.SIGKILL, supervisor.exits
    assert "the task queue of this cluster is wedged" in supervisor.logs(20000)
    # No pusher is left taking tasks into the dead queue, and nothing else of that cluster
    # outlives it for long.
    wait_until(lambda: not any(procs.alive(p) for p in [guard, *helpers]), timeout=2, interval=0.05,
               message="the guard, the pusher and the monitor to be gone")
    wait_until(lambda: not any(procs.alive(p) for p in others), timeout=wedge.SIBLINGS_EXIT_SECONDS + 5,
               interval=0.1, message="every process of the wedged cluster to be gone")

    def all_done() -> bool:
        return _completed(ids) == len(ids)

    wait_until(all_done, timeout=max(1.0, killed_at + 60 - time.time()), interval=0.2,
               message=f"the 10 workflows started after the kill\n{supervisor.logs()}")
    done_at = time.time()
    assert supervisor.starts == 2, supervisor.exits
    counts = steplog.starts(workers.executions())
    assert [counts[(pk, "step-0")] for pk in ids] == [1] * len(ids)
    print(f"\nwedge: kill to exit {exited_at - killed_at:.1f} s, kill to all 10 completed "
          f"{done_at - killed_at:.1f} s ({workers.broker} broker)")
