"""Scheduled workflows under real `qcluster` processes: the ticker of each cluster runs the
pass, and each fire time still gets exactly one instance, run once."""

from __future__ import annotations

import pytest

import tests.workers.workflows  # noqa: F401  (registers the workflows the clusters run)
from durable_workflows.models import ScheduleFire, WorkflowInstance
from tests.helpers import wait_until
from tests.workers import steplog
from tests.workers.fixtures import workers_fixture  # noqa: F401  (the `workers` fixture)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_two_clusters_start_each_fire_time_once(workers):
    # Of two names: each cluster has its ticker, so two passes run every second.
    workers.clusters.start("a", DW_EVERY_SECOND=1)
    workers.clusters.start("b", DW_EVERY_SECOND=1, DW_CLUSTER_NAME=workers.another_name())
    started = WorkflowInstance.objects.filter(workflow="workers.every_second", state="completed")
    wait_until(lambda: started.count() >= 4, timeout=60, interval=0.2, message="four fire times to run")
    for cluster in workers.clusters.started:
        cluster.close()

    ids = sorted(started.values_list("pk", flat=True))
    stamps = [pk.split("@", 1)[1] for pk in ids]
    assert all(stamp.endswith("Z") for stamp in stamps) and len(set(stamps)) == len(stamps)
    fire = ScheduleFire.objects.get(workflow="workers.every_second")
    assert fire.last_instance_id == max(WorkflowInstance.objects.filter(workflow="workers.every_second")
                                        .values_list("pk", flat=True))
    # Two tickers ran the pass every second; each instance's step ran once.
    ticks = [e for e in workers.executions() if e.step == "tick"]
    finished = set(ids)
    assert set(steplog.starts([e for e in ticks if e.instance in finished]).values()) == {1}
