"""Real `qcluster` processes run workflows: sleeps resume, crashes recover, clusters share work.

ORM broker on SQLite, Redis broker on PostgreSQL (see tests/workers/fixtures.py). Every wait
is a condition with a deadline; none of these tests fails on a time.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from django_q.brokers import get_broker
from django_q.models import Success
from django_q.tasks import async_task

import tests.workers.workflows  # noqa: F401  (registers the workflows the clusters run)
from durable_workflows import client
from durable_workflows.models import Event, StepRecord, WorkflowInstance
from tests.chaos import procs
from tests.helpers import wait_until
from tests.workers import steplog
from tests.workers.fixtures import workers_fixture  # noqa: F401  (the `workers` fixture)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _finished(ids: list[str]) -> bool:
    return WorkflowInstance.objects.filter(pk__in=ids, state="completed").count() == len(ids)


def _wait_all_completed(ids: list[str], setup, timeout: float = 120) -> None:
    try:
        wait_until(lambda: _finished(ids), timeout=timeout, interval=0.2,
                   message=f"{len(ids)} workflows to complete")
    except AssertionError:
        states = dict(WorkflowInstance.objects.filter(pk__in=ids).values_list("pk", "state"))
        stuck = {pk: state for pk, state in states.items() if state != "completed"}
        raise AssertionError(f"not completed: {stuck}\n{setup.clusters.logs()}") from None


def test_fifty_workflows_with_a_sleep_complete_with_each_step_run_once(workers):
    workers.clusters.start("a")
    ids = [client.start("workers.nap", 1.0, instance_id=f"nap-{n}").instance_id for n in range(50)]
    _wait_all_completed(ids, workers)

    executions = workers.executions()
    counts = steplog.starts(executions)
    assert sorted(counts) == sorted((pk, step) for pk in ids for step in ("before", "after"))
    assert set(counts.values()) == {1}, [key for key, n in counts.items() if n != 1]
    assert all(e.end is not None for e in executions)
    assert not [e for e in executions if e.in_transaction], "a step ran inside a transaction"
    # Each alarm resumed its instance once.
    resumed = Event.objects.filter(instance_id__in=ids, kind="workflow.resumed")
    assert resumed.count() == 50
    assert all(client.get(pk).result() == "rested" for pk in ids[:5])

    # django-q2 keeps no success row for a run: the instance is its record. A plain task
    # enqueued afterwards is saved as usual, once the monitor has handled every run before it.
    marker = async_task("math.floor", 1.5)
    wait_until(lambda: Success.objects.filter(id=marker).exists(), timeout=60,
               message="the monitor to save a plain task")
    assert Success.objects.get(id=marker).result == 1
    assert not Success.objects.filter(name__startswith="dw:").exists()


CRASH_ENV = {
    "DW_LEASE_SECONDS": 3, "DW_HEARTBEAT_SECONDS": 1, "DW_REDISPATCH_AFTER_SECONDS": 5,
    "DW_Q_TIMEOUT": 8, "DW_Q_RETRY": 10,
}


def test_sigkill_while_steps_run_then_restart_completes_every_instance(workers):
    cluster = workers.clusters.start("a", **CRASH_ENV)
    ids = [client.start("workers.steps", 3, 0.3, instance_id=f"crash-{n}").instance_id
           for n in range(30)]

    def steps_in_flight() -> bool:
        executions = workers.executions()
        fresh = [e for e in executions if e.end is None and time.time() - e.start < 0.15]
        return len(executions) >= 12 and bool(fresh)

    wait_until(steps_in_flight, timeout=60, message="a dozen steps, one of them just started")
    cluster.kill(signal.SIGKILL)
    killed_at = time.time()

    # What survived the crash is what the database holds now.
    finished = set(
        StepRecord.objects.filter(instance_id__in=ids, state="completed")
        .values_list("instance_id", "name")
    )
    cut_short = [e for e in workers.executions() if e.end is None]
    assert cut_short, "the kill should have caught a step in flight"
    assert WorkflowInstance.objects.filter(pk__in=ids, state="running").exists()

    cluster.start().wait_ready()
    _wait_all_completed(ids, workers)

    executions = workers.executions()
    counts = steplog.starts(executions)
    for key in finished:
        assert counts[key] == 1, f"{key} had finished before the crash, yet ran again"
    for pk in ids:
        again = [step for (instance, step), n in counts.items() if instance == pk and n > 1]
        assert len(again) <= 1, f"{pk}: more than the step in flight ran again: {again}"
        assert not again or (pk, again[0]) not in finished
        for n in range(3):
            assert any(e.instance == pk and e.step == f"step-{n}" and e.end for e in executions)
    assert steplog.overlaps(executions, killed_at) == []
    assert client.get(ids[0]).result() == 3


def test_sigterm_to_a_worker_mid_step_hands_its_run_over_at_once(workers):
    # A lease far longer than the deadline below: only a released lease lets the run
    # finish in time.
    workers.clusters.start("a", DW_LEASE_SECONDS=300, DW_HEARTBEAT_SECONDS=5)
    handle = client.start("workers.steps", 2, 2.0, instance_id="term-1")
    first = wait_until(
        lambda: [e for e in workers.executions() if e.step == "step-1"], timeout=60,
        message="the second step to start",
    )[0]
    os.kill(first.pid, signal.SIGTERM)
    wait_until(lambda: not procs.alive(first.pid), timeout=30, message="the worker to exit")

    wait_until(lambda: handle.refresh().state == "completed", timeout=60,
               message="the run to be recovered before its lease would have expired")
    counts = steplog.starts(workers.executions())
    assert counts[("term-1", "step-0")] == 1
    assert counts[("term-1", "step-1")] == 2
    assert Event.objects.filter(instance_id="term-1", kind="workflow.recovered").count() == 1
    assert handle.instance.last_mode == "recover"


def test_sigterm_to_every_process_of_a_cluster_hands_its_runs_to_another(workers):
    # systemd's default KillMode sends SIGTERM to the main process, the sentinel and every
    # worker at once. The workers give their runs back as they exit; the other cluster
    # recovers them long before the lease (300 s) would have run out.
    env = {"DW_LEASE_SECONDS": 300, "DW_HEARTBEAT_SECONDS": 5}
    first = workers.clusters.start("a", **env)
    ids = [client.start("workers.steps", 2, 2.0, instance_id=f"group-{n}").instance_id
           for n in range(2)]
    wait_until(lambda: {e.instance for e in workers.executions()} == set(ids), timeout=60,
               message="both runs to start a step")
    first.kill(signal.SIGTERM)
    wait_until(lambda: not any(procs.alive(pid) for pid in first.worker_pids()), timeout=60,
               message="the workers to exit")
    # django-q2's main process can hang after this (its sentinel died while it waited on a
    # shared condition); the service manager then kills it, as we do here.
    first.kill(signal.SIGKILL)
    workers.clusters.start("b", **env)
    _wait_all_completed(ids, workers, timeout=60)
    assert Event.objects.filter(instance_id__in=ids, kind="workflow.recovered").count() == 2
    counts = steplog.starts(workers.executions())
    assert all(counts[(pk, "step-1")] == 1 for pk in ids)


def test_a_run_stopped_by_the_django_q_timeout_is_recovered_at_once(workers):
    # django-q2 stops a task at its timeout (2 s here); the lease (300 s) would keep the run
    # stuck far past the deadline below unless the worker gives it back as it stops.
    workers.clusters.start("a", DW_Q_TIMEOUT=2, DW_Q_RETRY=5, DW_LEASE_SECONDS=300,
                           DW_HEARTBEAT_SECONDS=5)
    handle = client.start("workers.slow_once", 30.0, instance_id="timeout-1")
    wait_until(lambda: handle.refresh().state == "completed", timeout=60,
               message="the timed-out run to be recovered and finish")
    counts = steplog.starts(workers.executions())
    assert counts[("timeout-1", "first")] == 1
    assert counts[("timeout-1", "slow-once")] == 2
    assert handle.instance.last_mode == "recover"


def test_sigterm_to_the_cluster_lets_runs_finish_and_leaves_nothing_running(workers):
    cluster = workers.clusters.start("a")
    ids = [client.start("workers.steps", 3, 0.3, instance_id=f"stop-{n}").instance_id
           for n in range(8)]
    wait_until(lambda: len(workers.executions()) >= 2, timeout=60, message="steps to start")
    assert cluster.terminate(timeout=120) == 0
    # Each worker let its ticker finish before exiting.
    assert cluster.log().count("durable_workflows ticker stopped") == len(cluster.worker_pids())

    assert not WorkflowInstance.objects.filter(pk__in=ids, state="running").exists()
    assert all(e.end is not None for e in workers.executions()), "a step was cut short"
    cluster.start().wait_ready()
    _wait_all_completed(ids, workers)
    assert set(steplog.starts(workers.executions()).values()) == {1}


def test_two_clusters_share_the_work_and_never_run_an_instance_twice_at_once(workers):
    env = {"DW_LEASE_SECONDS": 3, "DW_HEARTBEAT_SECONDS": 0.5}
    a = workers.clusters.start("a", **env)
    b = workers.clusters.start("b", **env)
    naps = [client.start("workers.nap", 1.0, 0.02, instance_id=f"pair-{n}").instance_id
            for n in range(95)]
    # Steps longer than the lease: only the heartbeat keeps another worker from taking over.
    long = [client.start("workers.steps", 1, 4.0, instance_id=f"long-{n}").instance_id
            for n in range(5)]
    ids = naps + long
    _wait_all_completed(ids, workers)

    executions = workers.executions()
    assert steplog.overlaps(executions) == []
    assert set(steplog.starts(executions).values()) == {1}
    pids = {e.pid for e in executions}
    assert pids & set(a.worker_pids()) and pids & set(b.worker_pids()), "one cluster did all the work"
    resumed = Event.objects.filter(instance_id__in=naps, kind="workflow.resumed")
    assert resumed.count() == len(naps)
    assert sorted(resumed.values_list("instance_id", flat=True)) == sorted(naps)
    assert not Event.objects.filter(instance_id__in=ids, kind="workflow.recovered").exists()


@pytest.mark.requires_postgres
def test_no_transaction_stays_open_while_a_step_runs(workers):
    from django.db import connection

    workers.clusters.start("a")
    handle = client.start("workers.steps", 1, 3.0, instance_id="open-txn")
    wait_until(lambda: workers.executions(), timeout=60, message="the step to start")
    held = []
    while not [e for e in workers.executions() if e.end is not None]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid, state, query FROM pg_stat_activity WHERE datname = current_database()"
                " AND xact_start < now() - interval '500 milliseconds' AND pid <> pg_backend_pid()"
            )
            held.extend(cursor.fetchall())
        time.sleep(0.1)
    assert held == []
    wait_until(lambda: handle.refresh().state == "completed", timeout=30, message="completion")


def test_tasks_the_broker_lost_are_sent_again(workers):
    # Started while no cluster runs, then the queue is emptied: every task is lost.
    ids = [client.start("workers.steps", 1, instance_id=f"lost-{n}").instance_id for n in range(10)]
    assert WorkflowInstance.objects.filter(pk__in=ids, state="queued").count() == 10
    broker = get_broker()
    broker.purge_queue()
    assert broker.queue_size() == 0

    workers.clusters.start("a", DW_REDISPATCH_AFTER_SECONDS=2)
    _wait_all_completed(ids, workers)
    assert set(steplog.starts(workers.executions()).values()) == {1}


@pytest.mark.requires_postgres
def test_workers_keep_their_database_connection_across_tasks(workers):
    # With the recommended CONN_MAX_AGE, django-q2's close_old_connections() before each
    # task keeps the connection: each worker process uses one for all its runs.
    workers.clusters.start("a")
    ids = [client.start("workers.connection", instance_id=f"conn-{n}").instance_id for n in range(40)]
    _wait_all_completed(ids, workers)
    seen: dict[int, set[str]] = {}
    for pk in ids:
        pid, opened = client.get(pk).result()
        seen.setdefault(pid, set()).add(opened)
    assert seen and all(len(opened) == 1 for opened in seen.values()), seen
