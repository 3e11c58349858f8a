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

# The extra_info keys that gate. Same-process ratios: 10% relative plus 0.01 absolute slack. AP: 0.02 absolute
# (detectron2's tolerance for inference results). Other keys (absolute timings, counts) are printed only: they
# depend on the machine and are covered by --max-slowdown on the benchmark's own time.
HIGHER_IS_BETTER = {"speedup_over_references", "throughput_ratio"}
LOWER_IS_BETTER = {"validate_over_iterate", "validate_over_iterate_160x128_fixture", "ours_over_tutorial",
                   "header_over_decode"}
AP_KEYS = {"bbox_ap", "segm_ap"}
RATIO_TOLERANCE, RATIO_SLACK, AP_TOLERANCE = 0.10, 0.01, 0.02


def is_worse(key: str, new: float, old: float) -> bool | None:
    """True / False for gating keys, None for keys that are only reported."""
    if key in HIGHER_IS_BETTER:
        return new < old * (1 - RATIO_TOLERANCE) - RATIO_SLACK
    if key in LOWER_IS_BETTER:
        return new > old * (1 + RATIO_TOLERANCE) + RATIO_SLACK
    if key in AP_KEYS:
        return new < old - AP_TOLERANCE
    return None


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
            worse = is_worse(key, new, old)
            failures += bool(worse)
            verdict = "info" if worse is None else "WORSE" if worse else "ok"
            print(f"{verdict:6}   {key}: {new} (baseline {old})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
