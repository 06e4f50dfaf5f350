"""The tables the benchmarks print: Markdown, so that they paste into docs/benchmarks.md."""

from __future__ import annotations

from typing import Any


def markdown(header: list[str], body: list[list[str]]) -> str:
    """A Markdown table, each column as wide as its widest cell."""
    widths = [max(len(str(row[i])) for row in [header, *body]) for i in range(len(header))]
    line = "| " + " | ".join(f"{{:<{w}}}" for w in widths) + " |"
    out = [line.format(*header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    return "\n".join(out + [line.format(*row) for row in body])


def workers(results: dict[str, dict[str, Any]], labels: dict[str, str], lease_seconds: float) -> str:
    """The table of bench/workers.py: a row a measure, a column a set-up (`labels`)."""
    rows = [
        ("alarm latency p50 / p99 / max past fire_at",
         lambda r: f"{r['alarms']['p50']:.2f} / {r['alarms']['p99']:.2f} / {r['alarms']['max']:.2f} s "
         f"(n={r['alarms']['n']})"),
        ("event delivery p50 / p99 / max (send returned -> wait returned)",
         lambda r: f"{r['events']['p50']:.2f} / {r['events']['p99']:.2f} / {r['events']['max']:.2f} s "
         f"(n={r['events']['n']})"),
        ("send_event() / async_task() call, median",
         lambda r: f"{r['events']['send_ms']:.2f} / {r['events']['bare_ms']:.2f} ms = "
         f"{r['events']['send_ms'] / r['events']['bare_ms']:.2f}x"),
        ("fan-in: parent of n children / n direct starts",
         lambda r: f"{r['children']['fan_seconds']:.1f} / {r['children']['direct_seconds']:.1f} s, "
         f"ratio {r['children']['ratio']:.2f}x (rounds {min(r['children']['ratios']):.2f}-"
         f"{max(r['children']['ratios']):.2f}x, n={r['children']['n']})"),
        ("fan-in: runs of the parent (most in a round)", lambda r: f"{r['children']['parent_runs']}"),
        (f"SIGKILL worker -> Running again (lease {lease_seconds:g} s)",
         lambda r: _spread(r["kill_worker"])),
        (f"SIGKILL cluster + restart -> Running again (lease {lease_seconds:g} s)",
         lambda r: _spread(r["kill_cluster"])),
        ("three-step workflows / s",
         lambda r: f"{r['ours']['per_second']:.0f} (n={r['ours']['n']})"),
        ("bare django-q2 no-op tasks / s (success rows stored)",
         lambda r: f"{r['bare']['per_second']:.0f} (n={r['bare']['n']})"),
        ("workflows / no-op tasks",
         lambda r: f"{r['ours']['per_second'] / r['bare']['per_second']:.2f}x"),
        ("save_limit=-1 (no success rows): workflows / s",
         lambda r: f"{r['ours_unsaved']['per_second']:.0f}"),
        ("save_limit=-1 (no success rows): no-op tasks / s",
         lambda r: f"{r['bare_unsaved']['per_second']:.0f}"),
        ("save_limit=-1 (no success rows): workflows / no-op tasks",
         lambda r: f"{r['ours_unsaved']['per_second'] / r['bare_unsaved']['per_second']:.2f}x"),
        ("end to end (submitted and finished, workers running): workflows / s",
         lambda r: f"{r['e2e']['ours']:.0f} (n={r['e2e']['n']})"),
        ("end to end: bare no-op tasks / s", lambda r: f"{r['e2e']['bare']:.0f}"),
        ("end to end: workflows / no-op tasks, median of the rounds",
         lambda r: f"{r['e2e']['ratio']:.2f}x ({_listed(r['e2e']['ratios'])})"),
        ("end to end, to the broker's drain (results stored, acknowledged): workflows / s",
         lambda r: f"{r['e2e']['drained']['ours']:.0f}"),
        ("end to end, to the broker's drain: bare no-op tasks / s",
         lambda r: f"{r['e2e']['drained']['bare']:.0f}"),
        ("end to end, to the broker's drain: workflows / no-op tasks",
         lambda r: f"{r['e2e']['drained']['ratio']:.2f}x ({_listed(r['e2e']['drained']['ratios'])})"),
        ("start() / async_task() calls per s (one thread)",
         lambda r: f"{r['ours']['enqueue_per_second']:.0f} / {r['bare']['enqueue_per_second']:.0f}"),
    ]
    keys = list(results)
    return markdown(["measure (2 workers)", *[labels[k] for k in keys]],
                    [[name, *[_cell(fmt, results[k]) for k in keys]] for name, fmt in rows])


def _cell(fmt, result: dict[str, Any]) -> str:
    try:
        return fmt(result)
    except KeyError:
        return "-"  # a part left out with BENCH_PARTS


def _listed(values: list[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in values)


def _spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f} s (n={len(values)})"
