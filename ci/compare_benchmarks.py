"""Compare a pytest-benchmark JSON with the stored baseline, gating same-process ratios on measured scatter.

    python ci/compare_benchmarks.py runs/benchmark.json ci/benchmark_baseline.json           # compare
    python ci/compare_benchmarks.py runs/benchmark.json ci/benchmark_baseline.json --record  # add this run

Absolute seconds depend on the machine and on what else runs on it; the ratios in ``extra_info`` (measured
against a baseline run in the same process) much less so, and only they gate. The baseline keeps every
recorded run's value of each ratio; the threshold of a ratio is its recorded mean moved, in the worse
direction, by its tolerance: three sample standard deviations of the recorded runs, at least the largest
distance of any recorded run from the mean, and at least 2% of the mean (two runs can agree by chance).
Exit 1 when a ratio is worse than its threshold, or a gating benchmark is missing; 2 when the baseline has no
recorded runs; 0 otherwise.
Everything else in ``extra_info`` is printed for the reader.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

HIGHER_IS_BETTER = {"speedup_over_references", "speedup_same_loader", "throughput_ratio"}
LOWER_IS_BETTER = {"validate_over_iterate", "validate_over_iterate_160x128_fixture", "ours_over_tutorial",
                   "header_over_decode", "headers_only_over_header_loop", "validate_over_decode_loop"}
MIN_RELATIVE_TOLERANCE = 0.02


def tolerance(values: list[float]) -> float:
    mean = statistics.fmean(values)
    spread = 3 * statistics.stdev(values) if len(values) > 1 else 0.0
    return max(spread, max(abs(v - mean) for v in values), MIN_RELATIVE_TOLERANCE * abs(mean))


def threshold(key: str, values: list[float]) -> float:
    mean, tol = statistics.fmean(values), tolerance(values)
    return mean - tol if key in HIGHER_IS_BETTER else mean + tol


def is_worse(key: str, new: float, values: list[float]) -> bool:
    limit = threshold(key, values)
    return new < limit if key in HIGHER_IS_BETTER else new > limit


def load_run(path: Path) -> tuple[dict[str, dict], dict]:
    doc = json.loads(path.read_text())
    benches = {b["fullname"]: {"seconds": b["stats"]["min"], **b.get("extra_info", {})} for b in doc["benchmarks"]}
    return benches, doc.get("machine_info", {})


def record(current: dict[str, dict], machine: dict, baseline_path: Path) -> None:
    base = json.loads(baseline_path.read_text()) if baseline_path.exists() else {}
    if base.get("format") != "tvref-bench-baseline/1":
        base = {"format": "tvref-bench-baseline/1", "benchmarks": {}}
    base["machine"] = {k: machine.get(k) for k in ("cpu", "machine", "python_version") if k in machine}
    if isinstance(base["machine"].get("cpu"), dict):
        base["machine"]["cpu"] = base["machine"]["cpu"].get("brand_raw")
    for name, info in current.items():
        entry = base["benchmarks"].setdefault(name, {})
        for key, value in info.items():
            if key in HIGHER_IS_BETTER | LOWER_IS_BETTER:
                entry.setdefault(key, []).append(value)
            elif isinstance(value, (int, float)):
                entry.setdefault("reported", {})[key] = value
    baseline_path.write_text(json.dumps(base, indent=2, sort_keys=True) + "\n")
    runs = max((len(v) for b in base["benchmarks"].values() for k, v in b.items() if k != "reported"), default=0)
    print(f"recorded into {baseline_path} ({runs} runs of each ratio)")


def compare(current: dict[str, dict], baseline: dict) -> int:
    failures = 0
    for name, entry in sorted(baseline["benchmarks"].items()):
        now = current.get(name)
        gating = {k: v for k, v in entry.items() if k in HIGHER_IS_BETTER | LOWER_IS_BETTER}
        if now is None:
            failures += bool(gating)
            print(f"MISSING {name}")
            continue
        print(f"{name}: {now['seconds']:.3f} s (baseline run {entry.get('reported', {}).get('seconds', '?')})")
        for key, values in sorted(gating.items()):
            worse = key in now and is_worse(key, now[key], values)
            failures += worse or key not in now
            verdict = "WORSE" if worse else "MISSING" if key not in now else "ok"
            side = ">=" if key in HIGHER_IS_BETTER else "<="
            print(f"  {verdict:7} {key}: {now.get(key)} (must be {side} {threshold(key, values):.3f}; recorded "
                  f"{', '.join(str(v) for v in values)})")
        for key, value in sorted(now.items()):
            if key not in gating and key != "seconds" and not isinstance(value, dict):
                print(f"  info    {key}: {value}")
    return 1 if failures else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("current", type=Path, help="pytest-benchmark JSON of this run")
    p.add_argument("baseline", type=Path, help="ci/benchmark_baseline.json")
    p.add_argument("--record", action="store_true", help="add this run to the baseline instead of comparing")
    a = p.parse_args()
    current, machine = load_run(a.current)
    if a.record:
        record(current, machine, a.baseline)
        return 0
    baseline = json.loads(a.baseline.read_text()) if a.baseline.exists() else {}
    if not baseline.get("benchmarks"):
        print(f"{a.baseline}: no recorded runs to compare with; record some with RECORD=1 bash ci/bench.sh",
              file=sys.stderr)
        return 2
    return compare(current, baseline)


if __name__ == "__main__":
    sys.exit(main())
