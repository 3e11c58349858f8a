"""Compare a pytest-benchmark JSON with the stored baseline, as ratios (new / baseline).

Absolute seconds depend on the machine; the ratios in ``extra_info`` (measured against a baseline run in the
same process) do not, and are the figures that gate. Exit 1 when a ratio moved the wrong way past its
tolerance or a timing got slower than ``--max-slowdown`` times the baseline.

    python ci/compare_benchmarks.py runs/benchmark.json ci/benchmark_baseline.json [--write]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# extra_info keys where larger is better (speed-ups, throughput); every other ratio: smaller is better
HIGHER_IS_BETTER = {"speedup_over_references", "throughput_ratio", "samples_per_second", "bbox_ap", "segm_ap"}
RATIO_TOLERANCE = 0.10


def load(path: Path) -> dict[str, dict]:
    doc = json.loads(path.read_text())
    return {b["fullname"]: {"min": b["stats"]["min"], **b.get("extra_info", {})} for b in doc["benchmarks"]}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("current", type=Path)
    p.add_argument("baseline", type=Path)
    p.add_argument("--max-slowdown", type=float, default=1.5)
    p.add_argument("--write", action="store_true", help="store the current run as the new baseline")
    a = p.parse_args()
    current = load(a.current)
    if a.write:
        a.baseline.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
        print(f"baseline written to {a.baseline}")
        return 0
    baseline = json.loads(a.baseline.read_text())
    failures = 0
    for name, base in sorted(baseline.items()):
        now = current.get(name)
        if now is None:
            print(f"MISSING {name}")
            failures += 1
            continue
        slow = now["min"] / base["min"]
        verdict = "ok" if slow <= a.max_slowdown else "SLOWER"
        failures += verdict != "ok"
        print(f"{verdict:6} {name}: {slow:.2f}x baseline time")
        for key, old in base.items():
            if key == "min" or not isinstance(old, (int, float)) or key not in now:
                continue
            new = now[key]
            worse = new < old * (1 - RATIO_TOLERANCE) if key in HIGHER_IS_BETTER else new > old * (1 + RATIO_TOLERANCE)
            failures += worse
            print(f"{'WORSE' if worse else 'ok':6}   {key}: {new} (baseline {old})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
