"""OpenTelemetry: a span per run and per step attempt, every run of an instance in one trace,
and a start inside a traced request continuing that request's trace."""

from __future__ import annotations

import pytest
from django.test import override_settings
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from durable_workflows import client, fire_alarms
from durable_workflows.models import Alarm

pytestmark = pytest.mark.django_db(transaction=True)

INLINE = {"DISPATCHER": "durable_workflows.dispatch.InlineDispatcher"}
EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def provider():
    """The SDK, set up once: OpenTelemetry allows one global provider per process."""
    current = trace.get_tracer_provider()
    if not isinstance(current, TracerProvider):
        current = TracerProvider()
        trace.set_tracer_provider(current)
    current.add_span_processor(SimpleSpanProcessor(EXPORTER))
    yield


@pytest.fixture
def spans():
    EXPORTER.clear()
    yield EXPORTER
    EXPORTER.clear()


def of(exporter, instance_id):
    return [s for s in exporter.get_finished_spans() if s.attributes.get("workflow.instance_id") == instance_id]


def wake(instance_id: str) -> None:
    alarm = Alarm.objects.get(instance_id=instance_id)
    Alarm.objects.filter(instance_id=instance_id).update(fire_at=alarm.fire_at.replace(year=2020))
    fire_alarms()


def test_runs_and_attempts_are_spans_of_one_trace(spans):
    with override_settings(DURABLE_WORKFLOWS=INLINE):
        nap = client.start("tests.nap", "1h")
        wake(nap.instance_id)
    assert client.get(nap.instance_id).state == "completed"
    found = of(spans, nap.instance_id)
    runs = [s for s in found if s.name == "workflow tests.nap"]
    steps = [s for s in found if s.name.startswith("step ")]
    assert [s.attributes["workflow.mode"] for s in runs] == ["fresh", "resume"]
    assert [s.attributes["workflow.outcome"] for s in runs] == ["paused", "completed"]
    assert [(s.name, s.attributes["workflow.step.position"], s.attributes["workflow.step.attempt"])
            for s in steps] == [("step Before", 0, 1), ("step After", 2, 1)]
    # One trace: both runs continue the context stored at the start, and each step is a
    # child of its run.
    assert len({s.context.trace_id for s in found}) == 1
    assert runs[0].parent is not None and runs[0].parent.span_id == runs[1].parent.span_id
    assert steps[0].parent.span_id == runs[0].context.span_id
    assert steps[1].parent.span_id == runs[1].context.span_id


def test_a_failed_attempt_records_its_error_and_the_retry_is_a_span_of_its_own(spans):
    with override_settings(DURABLE_WORKFLOWS=INLINE):
        handle = client.start("tests.flaky", 1, max_attempts=3)
    assert client.get(handle.instance_id).result() == "ok"
    attempts = [s for s in of(spans, handle.instance_id) if s.name == "step Sometimes"]
    assert [s.attributes["workflow.step.attempt"] for s in attempts] == [1, 2]
    assert attempts[0].status.status_code == StatusCode.ERROR
    assert "ConnectionError: failure 1" in attempts[0].status.description
    assert [e.name for e in attempts[0].events] == ["exception"]
    assert attempts[1].status.status_code != StatusCode.ERROR


def test_a_failed_run_says_why(spans):
    with override_settings(DURABLE_WORKFLOWS=INLINE):
        handle = client.start("tests.flaky", 5, max_attempts=1)
    [run] = [s for s in of(spans, handle.instance_id) if s.name.startswith("workflow ")]
    assert run.attributes["workflow.outcome"] == "failed"
    assert run.status.status_code == StatusCode.ERROR and "ConnectionError" in run.status.description


def test_a_start_inside_a_traced_request_carries_its_trace_into_the_runs(spans):
    tracer = trace.get_tracer("tests")
    with override_settings(DURABLE_WORKFLOWS=INLINE):
        with tracer.start_as_current_span("POST /orders") as request:
            handle = client.start("tests.nap", "1h")
        wake(handle.instance_id)
    runs = [s for s in of(spans, handle.instance_id) if s.name.startswith("workflow ")]
    assert len(runs) == 2
    assert {s.context.trace_id for s in runs} == {request.get_span_context().trace_id}
    assert {s.parent.span_id for s in runs} == {request.get_span_context().span_id}


def test_a_fork_made_inside_a_traced_request_carries_its_trace_as_a_start_does(spans):
    tracer = trace.get_tracer("tests")
    with override_settings(DURABLE_WORKFLOWS=INLINE):
        original = client.start("tests.nap", "1h")
        client.cancel(original.instance_id)
        with tracer.start_as_current_span("POST /instances/fork") as request:
            fork = client.fork(original.instance_id)
        wake(fork.instance_id)  # its second run starts outside the request
    runs = [s for s in of(spans, fork.instance_id) if s.name.startswith("workflow ")]
    assert len(runs) == 2
    assert {s.context.trace_id for s in runs} == {request.get_span_context().trace_id}
    assert {s.parent.span_id for s in runs} == {request.get_span_context().span_id}
