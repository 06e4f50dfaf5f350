"""Compare the engine benchmark of two source trees, interleaved, as ratios.

    python bench/compare.py OLD_TREE [NEW_TREE] [--runs N]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test python bench/compare.py ../old

Runs `bench/engine.py` of each tree in turn, one round each, N times, so that both see the
same machine at the same moments. Each run measures its step against a bare INSERT+COMMIT on
its own connection; the table compares those ratios (new / old), which a noisy neighbour
moves far less than the times. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
MEASURES = {
    "step": re.compile(r"one new step \(checkpoint\)\s+([\d.]+) ms"),
    "ratio": re.compile(r"step / bare ratio\s+([\d.]+)x"),
    "prepared_ratio": re.compile(r"step / prepared bare ratio\s+([\d.]+)x"),
}


def run(tree: Path) -> dict[str, float]:
    env = {**os.environ, "BENCH_ROUNDS": "1"}
    out = subprocess.run([sys.executable, str(tree / "bench" / "engine.py")], env=env, cwd=tree,
                         capture_output=True, text=True, check=True).stdout
    found = {name: pattern.search(out) for name, pattern in MEASURES.items()}
    return {name: float(match.group(1)) for name, match in found.items() if match}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path, nargs="?", default=HERE)
    parser.add_argument("--runs", type=int, default=6)
    options = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
    for i in range(options.runs):
        order = ("old", "new") if i % 2 == 0 else ("new", "old")
        for which in order:
            results[which].append(run(getattr(options, which)))
    median = statistics.median
    print(f"\n{options.runs} interleaved runs of bench/engine.py each: {options.old} vs {options.new}\n")
    print(f"{'measure':<30}{'old':>10}{'new':>10}{'new / old':>12}")
    print("-" * 62)
    for name, label, unit in (("step", "one new step", " ms"), ("ratio", "step / bare INSERT", "x"),
                              ("prepared_ratio", "step / prepared INSERT", "x")):
        old = [r[name] for r in results["old"] if name in r]
        new = [r[name] for r in results["new"] if name in r]
        if old and new:
            print(f"{label:<30}{median(old):>8.3f}{unit:<2}{median(new):>8.3f}{unit:<2}"
                  f"{median(new) / median(old):>11.2f}x")


if __name__ == "__main__":
    main()
