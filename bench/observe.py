"""Observability benchmark: the step checkpoint with metrics and tracing on against off.

    python bench/observe.py                                   # SQLite file
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test python bench/observe.py

"On" is what a project gets with both extras installed: the Prometheus observer and signal
receiver, and the tracing observer under an OpenTelemetry SDK whose spans go through a
BatchSpanProcessor to an exporter that drops them. "Off" has no observer at all. The per-step
cost is measured as bench/engine.py does (a run of BENCH_STEPS steps, less a run of none),
in BENCH_ROUNDS interleaved rounds, and compared as a ratio. Prints a table; asserts nothing.
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult  # noqa: E402

from bench.engine import STEPS, per_step  # noqa: E402
from durable_workflows import metrics, tracing  # noqa: E402
from durable_workflows.engine import observe  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", 15))


class Drop(SpanExporter):
    def export(self, spans):  # noqa: ANN001
        return SpanExportResult.SUCCESS


def switch(on: bool) -> None:
    (metrics.install if on else metrics.uninstall)()
    (observe.add_observer if on else observe.remove_observer)(tracing.OBSERVER)


def main() -> None:
    call_command("migrate", verbosity=0)
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    trace.set_tracer_provider(provider)
    results: dict[bool, list[float]] = {False: [], True: []}
    per_step(STEPS)  # warm-up
    for _ in range(ROUNDS):
        for on in (False, True):
            switch(on)
            results[on].append(per_step(STEPS))
    switch(True)
    ratios = sorted(b / a for a, b in zip(results[False], results[True], strict=True))
    off, on = statistics.median(results[False]), statistics.median(results[True])
    print(f"\n| step checkpoint, {connection.vendor}, {STEPS} steps, {ROUNDS} interleaved rounds | per step |")
    print("|---|---|")
    print(f"| observers off | {off * 1000:.3f} ms |")
    print(f"| metrics and tracing on | {on * 1000:.3f} ms |")
    print(f"| on / off, per round | {', '.join(f'{r:.2f}x' for r in ratios)} |")
    print(f"| on / off: median of the rounds' ratios; ratio of the medians | "
          f"{statistics.median(ratios):.2f}x; {on / off:.2f}x |")


if __name__ == "__main__":
    main()
