"""Prometheus metrics: what runs did, read from the endpoint, and who may read it."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import override_settings

from durable_workflows import client, fire_alarms
from durable_workflows.metrics import REGISTRY
from durable_workflows.models import Alarm, WorkflowInstance
from tests.helpers import staff_user

pytestmark = pytest.mark.django_db(transaction=True)

INLINE = {"DISPATCHER": "durable_workflows.dispatch.InlineDispatcher"}
URL = "/metrics/"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scraped(text: str, name: str, **labels: str) -> float:
    """The value of one sample in the text format."""
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(rf"{re.escape(name)}\{{(.*)\}} (\S+)", line)
        if match and ",".join(sorted(match.group(1).split(","))) == wanted:
            return float(match.group(2))
    return 0.0


@pytest.fixture
def staff_client():
    from django.test import Client

    logged_in = Client()
    logged_in.force_login(staff_user("ops", ("view",)))
    return logged_in


def test_the_endpoint_counts_what_ran(staff_client):
    before = {
        "greet": sample("durable_workflows_instances_finished_total", workflow="tests.greet", outcome="completed"),
        "started": sample("durable_workflows_instances_started_total", workflow="tests.greet"),
        "failed": sample("durable_workflows_instances_finished_total", workflow="tests.flaky", outcome="failed"),
        "retries": sample("durable_workflows_step_retries_total", workflow="tests.flaky", step="Sometimes"),
        "attempts": sample("durable_workflows_step_duration_seconds_count", workflow="tests.flaky",
                           step="Sometimes", outcome="failed"),
        "lag": sample("durable_workflows_alarm_lag_seconds_count", workflow="tests.nap"),
    }
    with override_settings(DURABLE_WORKFLOWS=INLINE):
        for name in ("Ada", "Grace"):
            client.start("tests.greet", name)
        failed = client.start("tests.flaky", 5, max_attempts=2)
        nap = client.start("tests.nap", "1h")
        Alarm.objects.filter(instance_id=nap.instance_id).update(fire_at=Alarm.objects.get(
            instance_id=nap.instance_id).fire_at.replace(year=2020))
        fire_alarms()
    assert client.get(failed.instance_id).state == "failed"
    assert client.get(nap.instance_id).state == "completed"

    response = staff_client.get(URL)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert scraped(text, "durable_workflows_instances_finished_total", workflow="tests.greet",
                   outcome="completed") == before["greet"] + 2
    assert scraped(text, "durable_workflows_instances_started_total", workflow="tests.greet") == before["started"] + 2
    assert scraped(text, "durable_workflows_instances_finished_total", workflow="tests.flaky",
                   outcome="failed") == before["failed"] + 1
    assert scraped(text, "durable_workflows_step_retries_total", workflow="tests.flaky",
                   step="Sometimes") == before["retries"] + 1
    assert scraped(text, "durable_workflows_step_duration_seconds_count", workflow="tests.flaky",
                   step="Sometimes", outcome="failed") == before["attempts"] + 2
    assert scraped(text, "durable_workflows_alarm_lag_seconds_count", workflow="tests.nap") == before["lag"] + 1
    # Instances per state come from the database as it is.
    for state in ("completed", "failed", "paused", "queued"):
        assert scraped(text, "durable_workflows_instances", state=state) == \
            WorkflowInstance.objects.filter(state=state).count()


def test_who_may_read_the_metrics(client, staff_client):
    assert client.get(URL).status_code in (401, 403)
    ordinary = User.objects.create(username="shopper")
    client.force_login(ordinary)
    assert client.get(URL).status_code == 403
    assert staff_client.get(URL).status_code == 200
    with override_settings(DURABLE_WORKFLOWS={"METRICS_PERMISSION_CLASSES": []}):
        client.logout()
        assert client.get(URL).status_code == 200
    with override_settings(DURABLE_WORKFLOWS={"API_PERMISSION_CLASSES": []}):
        assert client.get(URL).status_code == 200  # by default the API's classes rule
    with override_settings(DURABLE_WORKFLOWS={"API_PERMISSION_CLASSES": [],
                                              "METRICS_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"]}):
        assert staff_client.get(URL).status_code == 200
        assert client.get(URL).status_code in (401, 403)


def test_an_observer_that_fails_never_breaks_a_run(caplog):
    from durable_workflows.engine import observe

    class Broken(observe.Observer):
        def run_started(self, run):
            raise RuntimeError("exporter down")

        def attempt_finished(self, attempt, error):
            raise RuntimeError("exporter down")

    broken = Broken()
    observe.add_observer(broken)
    try:
        with override_settings(DURABLE_WORKFLOWS=INLINE):
            handle = client.start("tests.greet", "Ada")
    finally:
        observe.remove_observer(broken)
    assert client.get(handle.instance_id).result() == "Hello, Ada!"
    assert "exporter down" in caplog.text and "the run goes on" in caplog.text


def test_the_grafana_dashboard_asks_only_for_metrics_that_exist():
    import json
    from pathlib import Path

    from durable_workflows.metrics import FINISHED, RECOVERIES, RETRIES, STARTED, STEP_SECONDS

    # Touch every labelled metric so that the registry lists its samples.
    STARTED.labels("x"), FINISHED.labels("x", "completed"), RETRIES.labels("x", "s")
    STEP_SECONDS.labels("x", "s", "completed"), RECOVERIES.labels("x")
    dashboard = json.loads((Path(__file__).resolve().parent.parent / "docs" / "grafana-dashboard.json").read_text())
    asked = {name for panel in dashboard["panels"] for target in panel["targets"]
             for name in re.findall(r"durable_workflows_\w+", target["expr"])}
    known = {s.name for family in REGISTRY.collect() for s in family.samples} | {"durable_workflows_instances"}
    assert asked and asked <= known, asked - known
