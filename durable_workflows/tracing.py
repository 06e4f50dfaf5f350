"""OpenTelemetry spans (the optional extra `otel`, opentelemetry-api only): one per run, one
per step attempt inside it.

Installed by the app when opentelemetry-api can be imported; until the project sets up an SDK
(a tracer provider), no span is made. A start stores a W3C trace context with the instance: the span of the
request (or step) that started it when there is one, else a new trace of its own. Every run of
the instance continues that context, so a workflow that slept for a week and was recovered
twice is still one trace, its runs side by side under the start that caused them.

Step spans are made when their run ends (pauses or finishes), each with the start and end
times its attempt had: the hot path only reads two clocks.

Attributes: `workflow.name`, `workflow.instance_id`, `workflow.mode`, `workflow.epoch` on runs;
`workflow.instance_id`, `workflow.step.name`, `workflow.step.position`, `workflow.step.attempt`
(and `workflow.step.branch` inside `wf.parallel`) on attempts, whose run span is their parent. A failed attempt records its exception and an error status.
"""

from __future__ import annotations

import random
import time
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .engine import observe

_propagator = TraceContextTextMapPropagator()
_KEY = "otel_span"
_CONTEXT = "otel_context"
_STARTED = "otel_started"
_DONE = "otel_attempts"


_tracer: tuple[Any, trace.Tracer] | None = None


def tracer() -> trace.Tracer | None:
    """Our tracer from the current provider: kept while the provider stays (getting one costs
    more than a span), and taken again once the project sets another. None while no SDK is
    set up: spans nobody records are not worth making for every step."""
    global _tracer
    provider = trace.get_tracer_provider()
    if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        return None
    if _tracer is None or _tracer[0] is not provider:
        _tracer = (provider, trace.get_tracer("durable_workflows", tracer_provider=provider))
    return _tracer[1]


def _current_span_context() -> trace.SpanContext | None:
    run = observe.CURRENT_RUN.get()
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
        current = tracer()
        if current is None:
            return
        parent = _propagator.extract({"traceparent": run.trace_parent}) if run.trace_parent else None
        links = []
        if parent is not None:
            remote = trace.get_current_span(parent).get_span_context()
            if remote.is_valid:
                links.append(Link(remote, {"workflow.link": "start"}))
        span = run.state[_KEY] = current.start_span(
            f"workflow {run.workflow}", context=parent, kind=SpanKind.INTERNAL, links=links,
            attributes={"workflow.name": run.workflow, "workflow.instance_id": run.instance_id,
                        "workflow.mode": run.mode, "workflow.epoch": run.epoch},
        )
        run.state[_CONTEXT] = trace.set_span_in_context(span)

    def run_finished(self, run: observe.RunInfo, outcome: str | None, error: BaseException | None) -> None:
        span: Span | None = run.state.pop(_KEY, None)
        if span is None:
            return
        current = tracer()
        for name, attributes, started, ended, failure in run.state.pop(_DONE, ()):
            if current is not None:
                _record(current.start_span(name, context=run.state[_CONTEXT], attributes=attributes,
                                           start_time=started), failure, ended)
        span.set_attribute("workflow.outcome", str(outcome or "stopped"))
        if error is not None:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        elif run.error:
            span.set_status(Status(StatusCode.ERROR, run.error))
        span.end()

    def attempt_started(self, attempt: observe.AttemptInfo) -> None:
        if attempt.run is not None and _CONTEXT in attempt.run.state:
            attempt.state[_STARTED] = time.time_ns()

    def attempt_finished(self, attempt: observe.AttemptInfo, error: BaseException | None) -> None:
        """An attempt's span is made when its run ends, from the times kept here: making spans
        one after the other costs a fraction of making each between a step's database writes,
        and the hot path then only notes two clocks."""
        started = attempt.state.pop(_STARTED, None)
        if started is None or attempt.run is None:
            return
        attributes: dict[str, Any] = {
            "workflow.instance_id": attempt.instance_id, "workflow.step.name": attempt.name,
            "workflow.step.position": attempt.position, "workflow.step.attempt": attempt.attempt,
        }
        if attempt.branch:
            attributes["workflow.step.branch"] = attempt.branch
        attempt.run.state.setdefault(_DONE, []).append(
            (f"step {attempt.name}", attributes, started, time.time_ns(), error))


def _record(span: Any, error: BaseException | None, ended: int) -> None:
    if error is not None:
        span.record_exception(error, timestamp=ended)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
    span.end(end_time=ended)


OBSERVER = TracingObserver()


def install() -> None:
    observe.add_observer(OBSERVER)
