"""Prometheus metrics (the optional extra `prometheus`): what ran, how it ended, how long it took.

Installed by the app when prometheus-client can be imported; mount `durable_workflows.metrics.urls`
to expose them. The counters and histograms are fed in the process that does the work (a
qcluster worker): with PROMETHEUS_MULTIPROC_DIR set in every process's environment, as
prometheus-client's multi-process mode asks, the endpoint adds up every process's values.
Instances per state are counted from the database when the endpoint is read.

| metric | labels | from |
|---|---|---|
| `durable_workflows_instances_started_total` | workflow | an instance's first run |
| `durable_workflows_instances_finished_total` | workflow, outcome | completed, failed, cancelled |
| `durable_workflows_step_duration_seconds` | workflow, outcome | each step attempt (its count: attempts) |
| `durable_workflows_step_retries_total` | workflow | each retry scheduled |
| `durable_workflows_alarm_lag_seconds` | workflow | an alarm's due time to its resume's claim |
| `durable_workflows_recoveries_total` | workflow | a run in recover mode |
| `durable_workflows_instances` | state | the database, when scraped |

Every label is a closed set: the registered workflows, the outcomes, the states. Step names and
instance ids never are: each label set is a series that every process keeps and every scrape
sends, for good, so a workflow that names its steps after its data (a step per order) would grow
workers and the page without end. Steps are known by name in the admin's slowest steps and in
the traces. A workflow name no registered workflow has (an instance left by a workflow since
removed or renamed) is counted under `workflow="(unregistered)"`.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.exceptions import ImproperlyConfigured

try:
    from prometheus_client import CollectorRegistry, Counter, Histogram
except ModuleNotFoundError as error:
    if error.name != "prometheus_client":
        raise
    raise ImproperlyConfigured('durable_workflows.metrics needs prometheus-client, the "prometheus" extra: '
                               'pip install "django-durable-workflows[prometheus]"') from None

from ..engine import clock, observe
from ..registry import registered
from ..signals import SIGNALS

#: Our metrics only, not the process collectors of prometheus-client's default registry.
REGISTRY = CollectorRegistry(auto_describe=True)

STARTED = Counter("durable_workflows_instances_started", "Instances whose first run began.",
                  ["workflow"], registry=REGISTRY)
FINISHED = Counter("durable_workflows_instances_finished", "Instances that reached a final state.",
                   ["workflow", "outcome"], registry=REGISTRY)
STEP_SECONDS = Histogram("durable_workflows_step_duration_seconds", "Step attempts, by how long they ran.",
                         ["workflow", "outcome"], registry=REGISTRY,
                         buckets=(0.005, 0.025, 0.1, 0.5, 1, 5, 30, 120, 600, float("inf")))
RETRIES = Counter("durable_workflows_step_retries", "Retries scheduled after a failed step attempt.",
                  ["workflow"], registry=REGISTRY)
ALARM_LAG = Histogram("durable_workflows_alarm_lag_seconds", "From an alarm's due time to the claim of its resume.",
                      ["workflow"], registry=REGISTRY,
                      buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 15, 60, float("inf")))
RECOVERIES = Counter("durable_workflows_recoveries", "Runs that took over an instance whose worker went away.",
                     ["workflow"], registry=REGISTRY)

OUTCOMES = {"workflow.completed": "completed", "workflow.failed": "failed", "workflow.cancelled": "cancelled"}

UNREGISTERED = "(unregistered)"


def workflow_label(name: str) -> str:
    """The `workflow` label of a name read from a stored instance: only registered workflows
    have one of their own, so rows of however many other names add one label set, not one each."""
    return name if registered(name) is not None else UNREGISTERED


class MetricsObserver(observe.Observer):
    def run_started(self, run: observe.RunInfo) -> None:
        if run.mode == "recover":
            RECOVERIES.labels(workflow_label(run.workflow)).inc()
        if run.woken_at is not None:
            ALARM_LAG.labels(workflow_label(run.workflow)).observe(max(0.0, (clock.now() - run.woken_at).total_seconds()))

    def attempt_finished(self, attempt: observe.AttemptInfo, error: BaseException | None) -> None:
        labels = (workflow_label(attempt.workflow), "failed" if error is not None else "completed")
        child = _step_children.get(labels)
        if child is None:
            child = _step_children[labels] = STEP_SECONDS.labels(*labels)
        child.observe(time.perf_counter() - attempt.started)


# The histogram's child per (workflow, outcome): `labels()` takes a lock each time, and this is
# called for every step attempt.
_step_children: dict[tuple[str, str], Any] = {}


def on_event(sender: Any, event: str, workflow: str, data: dict[str, Any], **kwargs: Any) -> None:
    """Counts from the lifecycle signals, sent once each change has committed."""
    if event == "workflow.started":
        STARTED.labels(workflow_label(workflow)).inc()
    elif event in OUTCOMES:
        FINISHED.labels(workflow_label(workflow), OUTCOMES[event]).inc()
    elif event == "retry.scheduled":
        RETRIES.labels(workflow_label(workflow)).inc()


OBSERVER = MetricsObserver()


# Only the signals counted: a step's own events then cost no receiver call.
COUNTED = ("workflow.started", *OUTCOMES, "retry.scheduled")


def install() -> None:
    """Feed the metrics in this process (the app does it when prometheus-client is there)."""
    observe.add_observer(OBSERVER)
    for name in COUNTED:
        SIGNALS[name].connect(on_event, dispatch_uid=f"durable_workflows.metrics.{name}")


def uninstall() -> None:
    observe.remove_observer(OBSERVER)
    for name in COUNTED:
        SIGNALS[name].disconnect(dispatch_uid=f"durable_workflows.metrics.{name}")
