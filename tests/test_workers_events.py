"""Events with real `qcluster` workers: many instances waiting, events sent from another
process, and a cluster killed between the sends and the resumes."""

from __future__ import annotations

import subprocess
import sys

import pytest

import tests.workers.workflows  # noqa: F401  (registers the workflows the clusters run)
from durable_workflows import client
from durable_workflows.models import InboxMessage, StepRecord, WorkflowInstance
from tests.helpers import ROOT, wait_until
from tests.workers import steplog
from tests.workers.fixtures import workers_fixture  # noqa: F401  (the `workers` fixture)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def send_from_another_process(workers, ids: list[str]) -> None:
    """`send_event` for each id, from a process of its own that enqueues to the clusters'
    broker, as a web server would."""
    script = (
        "import django, sys; django.setup()\n"
        "from durable_workflows import send_event\n"
        "for line in sys.stdin.read().split():\n"
        "    assert send_event(line, 'go', {'for': line}, event_id=f'delivery-{line}')\n"
    )
    env = {**workers.clusters.base_env, "DJANGO_SETTINGS_MODULE": "tests.workers.settings"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, input="\n".join(ids),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def waiting(ids: list[str]) -> bool:
    return StepRecord.objects.filter(instance_id__in=ids, kind="event", state="awaiting").count() == len(ids)


def check_each_took_its_event_once(ids: list[str], workers) -> None:
    for pk in ids:
        assert client.get(pk).result() == {"for": pk}
    assert InboxMessage.objects.filter(instance_id__in=ids, taken_at__isnull=False).count() == len(ids)
    assert not InboxMessage.objects.filter(instance_id__in=ids, taken_at__isnull=True).exists()


def _completed(ids: list[str]) -> bool:
    return WorkflowInstance.objects.filter(pk__in=ids, state="completed").count() == len(ids)


def test_two_hundred_waiting_instances_take_events_sent_from_another_process(workers):
    workers.clusters.start("a", workers=2)
    ids = [client.start("workers.await_event", instance_id=f"wait-{n}").instance_id for n in range(200)]
    wait_until(lambda: waiting(ids), timeout=120, interval=0.2, message="200 instances to wait")
    send_from_another_process(workers, ids)
    wait_until(lambda: _completed(ids), timeout=120, interval=0.2,
               message=f"200 instances to resume\n{workers.clusters.logs()}")
    check_each_took_its_event_once(ids, workers)
    counts = steplog.starts(workers.executions())
    assert sorted(counts) == sorted((pk, "after") for pk in ids)
    assert set(counts.values()) == {1}


def test_a_cluster_killed_between_the_sends_and_the_resumes_loses_no_event(workers):
    env = {"DW_LEASE_SECONDS": 3, "DW_HEARTBEAT_SECONDS": 1, "DW_REDISPATCH_AFTER_SECONDS": 3,
           "DW_Q_TIMEOUT": 8, "DW_Q_RETRY": 10}
    first = workers.clusters.start("a", **env)
    # Each resume runs a step of 0.2 s, so that 2 workers take seconds to get through them all.
    ids = [client.start("workers.await_event", 0.2, instance_id=f"kill-{n}").instance_id for n in range(40)]
    wait_until(lambda: waiting(ids), timeout=120, interval=0.2, message="40 instances to wait")
    send_from_another_process(workers, ids)
    # The resumes are on their way (in the broker, fetched by the cluster, half run) when the
    # whole cluster dies: whatever it had taken is lost with it.
    wait_until(lambda: WorkflowInstance.objects.filter(pk__in=ids, state="completed").exists(),
               timeout=60, interval=0.05, message="the first resume")
    first.kill()
    resumed_before = WorkflowInstance.objects.filter(pk__in=ids, state="completed").count()
    assert resumed_before < len(ids)
    workers.clusters.start("b", **env)
    wait_until(lambda: _completed(ids), timeout=120, interval=0.2,
               message=f"every instance to resume after the kill\n{workers.clusters.logs()}")
    check_each_took_its_event_once(ids, workers)
    print(f"{resumed_before} of {len(ids)} had completed before the kill")
