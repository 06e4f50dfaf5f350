"""One ticker per cluster under real `qcluster` processes: the ticker lease chooses one worker
process of a cluster, another takes over when it is SIGKILLed, and two clusters of different
names on one database each have theirs and never fire an alarm twice.

ORM broker on SQLite, Redis broker on PostgreSQL (see tests/workers/fixtures.py). Every wait
is a condition with a deadline.
"""

from __future__ import annotations

import os
import signal
from datetime import timedelta

import pytest

import tests.workers.workflows  # noqa: F401  (registers the workflows the clusters run)
from durable_workflows import client
from durable_workflows.engine import clock, wakeup
from durable_workflows.models import Event, TickerLease, WorkflowInstance
from tests.chaos import procs
from tests.helpers import wait_until
from tests.workers import steplog
from tests.workers.fixtures import workers_fixture  # noqa: F401  (the `workers` fixture)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# A short lease: the other workers try to take it every second, its holder renews it twice a second.
LEASE_SECONDS = 3
SHORT_LEASE = {"DW_LEASE_SECONDS": LEASE_SECONDS, "DW_HEARTBEAT_SECONDS": 1}
# What a loaded machine may add to LEASE_SECONDS before a waiting ticker thread runs.
SLACK_SECONDS = 1.5


def _holder(name: str) -> tuple[int | None, object]:
    """The pid holding cluster `name`'s ticker lease (None: nobody), and its expiry."""
    row = TickerLease.objects.filter(name=name).values_list("holder", "expires_at").first()
    if row is None or not row[0] or row[1] <= clock.now():
        return None, None
    return int(row[0].split(":")[-2]), row[1]


def _wait_held(name: str, cluster, timeout: float = 60) -> int:
    def held() -> int | None:
        pid, _ = _holder(name)
        return pid if pid is not None and pid in cluster.worker_pids() else None

    return wait_until(held, timeout=timeout, interval=0.1, message=f"a worker of {name} to hold its ticker")


def _renewals(name: str, pid: int, count: int, timeout: float = 60) -> None:
    """Wait until `pid` has renewed the lease `count` times in a row, holding it throughout."""
    seen: list[object] = []

    def renewed() -> bool:
        holder, expires = _holder(name)
        assert holder == pid, f"the lease went from {pid} to {holder}"
        if not seen or expires != seen[-1]:
            seen.append(expires)
        return len(seen) > count

    wait_until(renewed, timeout=timeout, interval=0.05, message=f"{count} renewals of the lease")


def test_an_idle_cluster_has_exactly_one_ticker(workers):
    cluster = workers.clusters.start("a", workers=3, **SHORT_LEASE)
    pid = _wait_held(workers.name, cluster)
    # Six renewals are three seconds: every other worker tried to take it a few times.
    _renewals(workers.name, pid, 6)
    took = [line for line in cluster.log().splitlines() if "took the ticker lease" in line]
    assert len(took) == 1 and f"pid {pid} took" in took[0], took
    assert "lost the ticker lease" not in cluster.log()
    assert TickerLease.objects.count() == 1


def test_another_worker_takes_over_within_the_lease_when_the_ticker_is_killed(workers):
    cluster = workers.clusters.start("a", **SHORT_LEASE)
    holder = _wait_held(workers.name, cluster)
    handle = client.start("workers.nap", 6.0, instance_id="nap-kill")
    wait_until(lambda: handle.refresh().state == "paused", timeout=60, message="the nap to sleep")
    wake_at = handle.instance.alarm.fire_at
    # Both workers busy in a step: a worker SIGKILLed while it waits for a task can take the
    # lock of the cluster's task queue with it (django-q2 issue 23, see test_workers_wedge).
    busy = [client.start("workers.steps", 1, 8.0, instance_id=f"busy-{n}").instance_id for n in range(2)]
    wait_until(lambda: {e.pid for e in workers.executions() if e.instance in busy and e.end is None}
               == set(cluster.worker_pids()), timeout=60, message="both workers to be in a step")

    killed_at = clock.now()
    os.kill(holder, signal.SIGKILL)
    wait_until(lambda: not procs.alive(holder), timeout=30, message="the ticker's worker to die")
    assert wake_at > killed_at, "the sleep should fall due after the kill"
    successor = wait_until(lambda: _holder(workers.name)[0] not in (None, holder) and _holder(workers.name)[0],
                           timeout=LEASE_SECONDS + 30, interval=0.05, message="another worker to take over")
    taken_at = TickerLease.objects.get(name=workers.name).taken_at
    assert taken_at - killed_at <= timedelta(seconds=LEASE_SECONDS + SLACK_SECONDS), taken_at - killed_at
    assert successor in cluster.worker_pids()

    ids = ["nap-kill", *busy]
    try:
        wait_until(lambda: WorkflowInstance.objects.filter(pk__in=ids, state="completed").count() == 3,
                   timeout=120, interval=0.2, message="the nap and the busy runs to finish")
    except AssertionError:
        raise AssertionError(f"{workers.clusters.logs()}") from None
    counts = steplog.starts(workers.executions())
    assert counts[("nap-kill", "before")] == 1 and counts[("nap-kill", "after")] == 1
    assert Event.objects.filter(instance_id="nap-kill", kind="workflow.resumed").count() == 1


def test_a_ticker_that_stops_cleanly_hands_the_lease_over_at_the_next_try(workers):
    # A lease far longer than the deadline below: only a released lease is taken in time.
    cluster = workers.clusters.start("a", DW_LEASE_SECONDS=30, DW_HEARTBEAT_SECONDS=5)
    holder = _wait_held(workers.name, cluster)
    os.kill(holder, signal.SIGTERM)
    wait_until(lambda: not procs.alive(holder), timeout=30, message="the ticker's worker to exit")
    # The others try every LEASE_SECONDS / 3 = 10 s; the lease itself would last 20 s.
    successor = wait_until(lambda: _holder(workers.name)[0] not in (None, holder) and _holder(workers.name)[0],
                           timeout=15, interval=0.1, message="another worker to take the released lease")
    assert successor in cluster.worker_pids()
    assert f"pid {holder} released the ticker lease" in cluster.log()


def test_two_clusters_of_different_names_each_have_a_ticker_and_fire_each_alarm_once(workers):
    a = workers.clusters.start("a", **SHORT_LEASE)
    other = workers.another_name()
    b = workers.clusters.start("b", DW_CLUSTER_NAME=other, **SHORT_LEASE)
    assert _wait_held(workers.name, a) != _wait_held(other, b)

    # Started here, on cluster a's queue; their alarms fall due over a few seconds, and
    # whichever cluster's ticker claims one runs its resume.
    naps = [client.start("workers.nap", 2.0 + n / 20, instance_id=f"two-{n}").instance_id for n in range(60)]
    wait_until(lambda: WorkflowInstance.objects.filter(pk__in=naps, state="completed").count() == len(naps),
               timeout=180, interval=0.2, message="every nap to finish")

    resumed = Event.objects.filter(instance_id__in=naps, kind="workflow.resumed")
    assert sorted(resumed.values_list("instance_id", flat=True)) == sorted(naps)
    counts = steplog.starts(workers.executions())
    assert all(counts[(pk, step)] == 1 for pk in naps for step in ("before", "after"))
    # Both tickers held their lease throughout.
    for name, cluster in ((workers.name, a), (other, b)):
        assert _holder(name)[0] in cluster.worker_pids()
        assert "lost the ticker lease" not in cluster.log()


def _listeners(db_name: str) -> set[int]:
    """The server processes LISTENing for alarms on the test database."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND query = %s",
                       [db_name, f"LISTEN {wakeup.CHANNEL}"])
        return {pid for (pid,) in cursor.fetchall()}


def test_a_terminated_listen_connection_is_made_again_and_no_alarm_is_lost(workers):
    from django.db import connection

    if not wakeup.listens():
        pytest.skip("LISTEN needs PostgreSQL through psycopg 3")
    db_name = connection.settings_dict["NAME"]
    cluster = workers.clusters.start("a", **SHORT_LEASE)
    _wait_held(workers.name, cluster)
    (first,) = wait_until(lambda: _listeners(db_name), timeout=60, message="the ticker to LISTEN")
    naps = [client.start("workers.nap", 1.0 + n / 10, instance_id=f"cut-{n}").instance_id for n in range(20)]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [first])
    again = wait_until(lambda: _listeners(db_name) - {first}, timeout=60, message="a new LISTEN session")
    assert len(again) == 1
    wait_until(lambda: WorkflowInstance.objects.filter(pk__in=naps, state="completed").count() == len(naps),
               timeout=120, interval=0.2, message="every nap to finish")
    assert "the LISTEN connection failed" in cluster.log()
    counts = steplog.starts(workers.executions())
    assert all(counts[(pk, step)] == 1 for pk in naps for step in ("before", "after"))
