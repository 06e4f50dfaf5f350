"""Chaos benchmark: N five-step workflows on a supervised 2-worker `qcluster`, with faults
at random moments while they run. Prints a table per run; asserts nothing.

    python bench/chaos.py                          # both brokers, N=200, 9 faults
    python bench/chaos.py --broker redis --n 200 --faults 9

Each run starts a private PostgreSQL (and redis-server) on free ports; the machine's own
servers are never used. The faults: SIGKILL of a worker, of the guard (django-q2's Sentinel;
its workers live on as orphans), of the whole cluster; a PostgreSQL crash (`pg_ctl stop -m
immediate`, restarted after a moment); with Redis, a Redis restart that loses the queue.
A supervisor restarts `qcluster` one second after its main process exits. At least two of
the faults are database crashes. See tests/chaos/ for the harness and what it checks.

Reported per run:
- faults by kind, and per fault: when it struck, the steps done by then, the re-runs it
  explains and the longest delay from the fault to the start of one of those re-runs;
- instances completed / failed / unfinished; re-runs (a step body run again), explained or
  not;
- settle time: from the last fault to the moment the last instance finished (its
  finished_at), against the bound LEASE_SECONDS + 10 s + the work left at the last fault.
  The work left is the steps not yet ended when the last fault struck, divided by the rate
  of the run before its first fault (distinct steps ended per second, both workers);
- total time, from the first start to the last instance finished.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.chaos import servers  # noqa: E402
from tests.chaos.launch import run_driver  # noqa: E402

SETTINGS = ["--lease", "5", "--heartbeat", "1", "--redispatch", "10", "--q-timeout", "20",
            "--q-retry", "30", "--deadline", "900"]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=["orm", "redis"], action="append")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--faults", type=int, default=9)
    parser.add_argument("--seed", type=int)
    args = parser.parse_args(argv)
    reason = servers.missing()
    if reason:
        raise SystemExit(f"cannot run: {reason}")
    for broker in args.broker or ["orm", "redis"]:
        print(f"running the {broker} broker ...", file=sys.stderr, flush=True)
        extra = ["--seed", str(args.seed)] if args.seed is not None else []
        summary = run_driver(["--broker", broker, "--n", str(args.n), "--faults", str(args.faults),
                              *SETTINGS, *extra], timeout=3600)
        print(table(summary), flush=True)
        print(flush=True)
    return 0


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def table(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"{r['broker']} broker: the run failed: {r['error']} (kept in {r['run_dir']})"
    lease = r["settings"]["lease"]
    faults = r["faults"]
    kinds = Counter(f["kind"] for f in faults)
    last = faults[-1] if faults else None
    rows = [
        ("faults by kind", ", ".join(f"{k} {kinds[k]}" for k in sorted(kinds))
         + (f" (skipped: {', '.join(r['faults_skipped'])})" if r["faults_skipped"] else "")),
        ("instances completed / failed / unfinished",
         f"{r['completed']} / {r['failed']} / {r['unfinished']} of {r['n']}"),
        ("step executions / re-runs", f"{r['executions']} / {r['reruns']}"),
        ("re-runs explained by a fault / unexplained / cut short by no fault of ours",
         f"{sum(r['reruns_per_fault'])} / {len(r['unexplained_reruns'])} / "
         f"{r['reruns_cut_short_not_by_a_fault']}"),
        ("re-runs per fault", " ".join(str(n) for n in r["reruns_per_fault"])),
        ("runs overlapping in time (fencing)", str(len(r["overlaps"]))),
        ("runs / recoveries / cluster starts", f"{r['runs']} / {r['recoveries']} / {r['cluster_starts']}"),
        ("tasks run: fresh / recover (duplicates find nothing to claim)",
         f"{r['log_counts']['fresh tasks run']} / {r['log_counts']['recover tasks run']}"),
        ("clean rate before the first fault", f"{r['clean_steps_per_second']:.1f} steps/s"
         if r["clean_steps_per_second"] else "-"),
        ("work left at the last fault",
         f"{r['steps_left_at_last_fault']} steps = {_s(r['work_left_seconds'])}"),
        (f"settle after the last fault ({last['kind'] if last else '-'})",
         f"{_s(r['settle_seconds'])} vs bound {_s(r['settle_bound_seconds'])} "
         f"(LEASE {lease:g} s + 10 s + work left)"),
        ("total time", _s(r["total_seconds"])),
        ("library log: claims failed / runs stopped by db / ticker errors / broker pulls failed",
         " / ".join(str(r["log_counts"][k]) for k in
                    ("could not claim", "run stopped by a database error", "ticker scan failed",
                     "broker pull failed"))),
    ]
    header = f"### {r['broker']} broker: N={r['n']}, {len(faults)} faults, seed {r['seed']}"
    out = [header, "", *_markdown(["measure", "value"], rows), "", *_markdown(
        ["#", "fault", "at", "steps done", "in flight", "re-runs", "longest re-run delay", "note"],
        [(str(i + 1), f["kind"], _s(f["at"]), str(f["steps_done"]), str(f["in_flight"]),
          str(r["reruns_per_fault"][i]), _s(r["rerun_delay_per_fault"][i]), f["note"][:40])
         for i, f in enumerate(faults)])]
    if r["unexplained_reruns"]:
        out += ["", f"unexplained re-runs (first 5): {r['unexplained_reruns'][:5]}"]
    if r["failed_examples"]:
        out += ["", f"failed (first 5): {r['failed_examples'][:5]}"]
    return "\n".join(out)


def _markdown(header: list[str], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    line = "| " + " | ".join(f"{{:<{w}}}" for w in widths) + " |"
    return [line.format(*header), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
            *[line.format(*row) for row in rows]]


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main(sys.argv[1:]))
