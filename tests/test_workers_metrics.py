"""Metrics in a real `qcluster`: with prometheus-client's multi-process mode, the endpoint adds
up what every worker process counted."""

from __future__ import annotations

import pytest
from django.test import Client

import tests.workers.workflows  # noqa: F401  (registers the workflows the clusters run)
from durable_workflows import client
from durable_workflows.models import WorkflowInstance
from tests.helpers import staff_user, wait_until
from tests.test_metrics import scraped
from tests.workers.fixtures import workers_fixture  # noqa: F401  (the `workers` fixture)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_the_endpoint_adds_up_every_worker_process(workers, tmp_path, monkeypatch):
    shared = tmp_path / "prometheus"
    shared.mkdir()
    workers.clusters.start("a", PROMETHEUS_MULTIPROC_DIR=str(shared))
    ids = [client.start("workers.steps", 3, 0.02).instance_id for _ in range(24)]
    wait_until(lambda: WorkflowInstance.objects.filter(pk__in=ids, state="completed").count() == len(ids),
               timeout=120, interval=0.2, message="24 workflows to complete")
    executions = workers.executions()
    assert len({e.pid for e in executions}) == 2, "both workers should have run steps"

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(shared))
    reader = Client()
    reader.force_login(staff_user("ops", ("view",)))
    text = reader.get("/metrics/").content.decode()
    assert scraped(text, "durable_workflows_instances_finished_total", workflow="workers.steps",
                   outcome="completed") == 24
    assert scraped(text, "durable_workflows_instances_started_total", workflow="workers.steps") == 24
    assert scraped(text, "durable_workflows_step_duration_seconds_count", workflow="workers.steps",
                   outcome="completed") == 72  # three steps each
    assert scraped(text, "durable_workflows_instances", state="completed") == 24
    # Each worker wrote its own file: the sum above is of several processes.
    written = {path.name.rsplit("_", 1)[-1] for path in shared.glob("counter_*.db")}
    assert len(written) >= 2, written
