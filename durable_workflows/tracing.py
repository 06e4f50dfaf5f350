"""OpenTelemetry spans (the optional extra `otel`, opentelemetry-api only): one per run, one
per step attempt inside it.

Installed by the app when opentelemetry-api can be imported; with no SDK configured the API's
tracer does nothing. A start stores a W3C trace context with the instance: the span of the
request (or step) that started it when there is one, else a new trace of its own. Every run of
the instance continues that context, so a workflow that slept for a week and was recovered
twice is still one trace, its runs side by side under the start that caused them.

Attributes: `workflow.name`, `workflow.instance_id`, `workflow.mode`, `workflow.epoch` on runs;
`workflow.step.name`, `workflow.step.position`, `workflow.step.branch`, `workflow.step.attempt`
on attempts. A failed attempt records its exception and an error status.
"""

from __future__ import annotations

import random
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .engine import observe

_propagator = TraceContextTextMapPropagator()
_KEY = "otel_span"


def tracer() -> trace.Tracer:
    # Looked up each time: a provider the project sets after start-up is used from then on.
    return trace.get_tracer("durable_workflows")


def _current_span_context() -> trace.SpanContext | None:
    run = observe.CURRENT_ATTEMPT.get() or observe.CURRENT_RUN.get()
    span = run.state.get(_KEY) if run is not None else None
    context = (span or trace.get_current_span()).get_span_context()
    return context if context.is_valid else None


class TracingObserver(observe.Observer):
    def started(self) -> dict[str, str]:
        context = _current_span_context()
        if context is None:
            # A trace of the instance's own, so that its runs still end up in one.
            trace_id, span_id, flags = random.getrandbits(128) or 1, random.getrandbits(64) or 1, 1
        else:
            trace_id, span_id, flags = context.trace_id, context.span_id, int(context.trace_flags)
        return {"trace_parent": f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"}

    def run_started(self, run: observe.RunInfo) -> None:
        parent = _propagator.extract({"traceparent": run.trace_parent}) if run.trace_parent else None
        links = []
        if parent is not None:
            remote = trace.get_current_span(parent).get_span_context()
            if remote.is_valid:
                links.append(Link(remote, {"workflow.link": "start"}))
        run.state[_KEY] = tracer().start_span(
            f"workflow {run.workflow}", context=parent, kind=SpanKind.INTERNAL, links=links,
            attributes={"workflow.name": run.workflow, "workflow.instance_id": run.instance_id,
                        "workflow.mode": run.mode, "workflow.epoch": run.epoch},
        )

    def run_finished(self, run: observe.RunInfo, outcome: str | None, error: BaseException | None) -> None:
        span: Span | None = run.state.pop(_KEY, None)
        if span is None:
            return
        span.set_attribute("workflow.outcome", str(outcome or "stopped"))
        if error is not None:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        elif run.error:
            span.set_status(Status(StatusCode.ERROR, run.error))
        span.end()

    def attempt_started(self, attempt: observe.AttemptInfo) -> None:
        run_span = attempt.run.state.get(_KEY) if attempt.run is not None else None
        context = trace.set_span_in_context(run_span) if run_span is not None else None
        attempt.state[_KEY] = tracer().start_span(
            f"step {attempt.name}", context=context,
            attributes={"workflow.name": attempt.workflow, "workflow.instance_id": attempt.instance_id,
                        "workflow.step.name": attempt.name, "workflow.step.position": attempt.position,
                        "workflow.step.branch": attempt.branch, "workflow.step.attempt": attempt.attempt,
                        "workflow.mode": attempt.run.mode if attempt.run else ""},
        )

    def attempt_finished(self, attempt: observe.AttemptInfo, error: BaseException | None) -> None:
        span: Any = attempt.state.pop(_KEY, None)
        if span is None:
            return
        if error is not None:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        span.end()


OBSERVER = TracingObserver()


def install() -> None:
    observe.add_observer(OBSERVER)
