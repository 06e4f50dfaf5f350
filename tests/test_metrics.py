"""Prometheus metrics: what runs did, read from the endpoint, and who may read it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import override_settings

from durable_workflows import RetryPolicy, State, client, fire_alarms, workflow
from durable_workflows.metrics import REGISTRY
from durable_workflows.models import Alarm, WorkflowInstance
from durable_workflows.registry import unregister
from tests.helpers import run_python, staff_user

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
        "retries": sample("durable_workflows_step_retries_total", workflow="tests.flaky"),
        "attempts": sample("durable_workflows_step_duration_seconds_count", workflow="tests.flaky", outcome="failed"),
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
    assert scraped(text, "durable_workflows_step_retries_total", workflow="tests.flaky") == before["retries"] + 1
    assert scraped(text, "durable_workflows_step_duration_seconds_count", workflow="tests.flaky",
                   outcome="failed") == before["attempts"] + 2
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

    from durable_workflows.metrics import FINISHED, RECOVERIES, RETRIES, STARTED, STEP_SECONDS

    # Touch every labelled metric so that the registry lists its samples.
    STARTED.labels("x"), FINISHED.labels("x", "completed"), RETRIES.labels("x")
    STEP_SECONDS.labels("x", "completed"), RECOVERIES.labels("x")
    dashboard = json.loads((Path(__file__).resolve().parent.parent / "docs" / "grafana-dashboard.json").read_text())
    asked = {name for panel in dashboard["panels"] for target in panel["targets"]
             for name in re.findall(r"durable_workflows_\w+", target["expr"])}
    labels = {s.name: set(s.labels) for family in REGISTRY.collect() for s in family.samples}
    labels["durable_workflows_instances"] = {"state"}
    assert asked and asked <= set(labels), asked - set(labels)
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            grouped = {label.strip() for by in re.findall(r"by \(([^)]*)\)", target["expr"]) for label in by.split(",")}
            shown = set(re.findall(r"{{(\w+)}}", target["legendFormat"]))
            for name in re.findall(r"durable_workflows_\w+", target["expr"]):
                assert grouped | shown <= labels[name], (panel["title"], name)


# -- bounded label sets ------------------------------------------------------------------------------

FAILED_ONCE: set[tuple[str, int]] = set()


@workflow("tests.metrics.named_steps")
def named_steps(wf, run: str, names: list[str]) -> None:
    """Each step fails its first attempt and is retried, so that every metric a step feeds is fed."""
    def fails_once(position: int) -> None:
        if (run, position) not in FAILED_ONCE:
            FAILED_ONCE.add((run, position))
            raise ConnectionError("first attempt")

    for position, name in enumerate(names):
        wf.step(name, fails_once, position, retry=RetryPolicy(max_attempts=2, initial_delay=0, jitter=False))


def series(text: str) -> set[str]:
    """Each sample's name and labels (its series), without its value."""
    return {line.rsplit(" ", 1)[0] for line in text.splitlines() if line and not line.startswith("#")}


def test_uniquely_named_steps_add_no_label_sets(staff_client):
    steps = 200
    with override_settings(DURABLE_WORKFLOWS=INLINE):
        client.start(named_steps, "same", ["One name"] * steps)
        same = staff_client.get(URL).content.decode()
        handle = client.start(named_steps, "unique", [f"Charge order {n:04d}" for n in range(steps)])
    assert client.get(handle.instance_id).state == "completed"
    unique = staff_client.get(URL).content.decode()
    assert series(unique) == series(same)
    assert "Charge order" not in unique and handle.instance_id not in unique
    # The unique steps were counted all the same, under their workflow.
    for outcome in ("failed", "completed"):
        assert scraped(unique, "durable_workflows_step_duration_seconds_count", workflow="tests.metrics.named_steps",
                       outcome=outcome) == scraped(same, "durable_workflows_step_duration_seconds_count",
                                                   workflow="tests.metrics.named_steps", outcome=outcome) + steps
    assert scraped(unique, "durable_workflows_step_retries_total", workflow="tests.metrics.named_steps") == \
        scraped(same, "durable_workflows_step_retries_total", workflow="tests.metrics.named_steps") + steps


def test_instances_of_workflows_no_longer_registered_share_one_label_set(staff_client):
    """Names read back from stored instances (a workflow since removed or renamed) are not a
    label set each."""
    names = [f"tests.metrics.removed_{n}" for n in range(20)]
    handles = []
    for name in names:
        workflow(name)(lambda wf: wf.sleep("1h"))
        handles.append(client.start(name))
        unregister(name)
    before = scraped(staff_client.get(URL).content.decode(), "durable_workflows_instances_finished_total",
                     workflow="(unregistered)", outcome="cancelled")
    for handle in handles:
        client.cancel(handle.instance_id, reason="workflow removed")
    text = staff_client.get(URL).content.decode()
    assert scraped(text, "durable_workflows_instances_finished_total", workflow="(unregistered)",
                   outcome="cancelled") == before + len(names)
    assert not [line for line in text.splitlines() if "removed_" in line and "finished" in line]
    # Instances per state are counted per state alone, whatever the workflows of the rows.
    assert {line.split(" ")[0] for line in text.splitlines() if line.startswith("durable_workflows_instances{")} == {
        f'durable_workflows_instances{{state="{state.value}"}}' for state in State}


def test_the_metrics_urls_without_prometheus_client_name_the_extra_to_install():
    """The app starts without prometheus-client; mounting the metrics says what to install."""
    script = (
        "import sys\n"
        "sys.modules['prometheus_client'] = None  # as if it were not installed\n"
        "import django; django.setup()\n"
        "print('started')\n"
        "import durable_workflows.metrics.urls\n"
    )
    done = run_python(script)
    assert done.stdout == "started\n", done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "django.core.exceptions.ImproperlyConfigured: durable_workflows.metrics needs prometheus-client, "
        'the "prometheus" extra: pip install "django-durable-workflows[prometheus]"')
