"""Measure the accuracy gate's rows for the installed torch line: the gate's run over several seeds.

    python ci/measure_gate.py                 # 5 seeds, print the rows it would write
    python ci/measure_gate.py --write         # and store them in fixtures/expected_results.json
    python ci/measure_gate.py --seeds 0 1     # other seeds (at least 5 for --write)

How the row is made from the seeds, per metric:
- ``expected`` is the mean over the seeds;
- ``tolerance`` is ``reference.training.accuracy_gate.tolerance_from``: 3 sample standard deviations of the seeds
  (rounded up to 0.001), but at least the largest distance of any seed from the mean; for AP rows at most
  ``AP_TOLERANCE_CAP`` (0.02 AP: detectron2's training-run gate uses 0.016 bbox / 0.0125 segm). A capped row is
  narrower than the seeds' spread: a run that follows another trajectory (another CPU's float kernels, another
  thread count) can fail it without any regression, and docs/training.md says how often. The gate's own run uses seed 0.
- ``train loss`` is the last epoch's mean total training loss as the references log it: it sees what the AP rows
  can miss (a lost augmentation, a loss weight), with the same tolerance rule.

The per-seed values are stored beside the rows (``_measured``) so a reader can redo the arithmetic.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import torch

from reference.atomic_io import atomic_write_json
from reference.training.accuracy_gate import expected_results_path, metric_value, tolerance_from, torch_line
from reference.app.demo import run_gate

METRICS = ("bbox AP", "segm AP", "train loss")
AP_TOLERANCE_CAP = 0.02
TASK = "small_maskrcnn/ci"


def tolerance(metric: str, values: list[float]) -> float:
    spread = tolerance_from(values, center=round(statistics.fmean(values), 4))
    return min(spread, AP_TOLERANCE_CAP) if " AP" in metric else spread


def one_seed(seed: int, recipe: str, epochs: int | None, threads: int) -> tuple[int, dict[str, float], float]:
    torch.set_num_threads(threads)
    start = time.perf_counter()
    result, last_epoch = run_gate(recipe, seed, epochs)
    values = {m: round(metric_value(result, m, last_epoch), 4) for m in METRICS}
    return seed, values, time.perf_counter() - start


def measure(seeds: list[int], recipe: str, epochs: int | None, jobs: int) -> dict[str, list[float]]:
    """Each seed's gate run, ``jobs`` at a time (each with its share of the cores, as under pytest -n)."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    done: dict[int, dict[str, float]] = {}
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for seed, values, seconds in pool.map(one_seed, seeds, [recipe] * len(seeds), [epochs] * len(seeds),
                                              [threads] * len(seeds)):
            done[seed] = values
            print(f"seed {seed}: " + ", ".join(f"{m} {v:.4f}" for m, v in values.items())
                  + f" ({seconds:.0f} s, {threads} torch threads)", flush=True)
    return {m: [done[s][m] for s in seeds] for m in METRICS}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="seeds to train (default 0-4)")
    p.add_argument("--recipe", default="ci", help="recipe whose rows to measure (default ci)")
    p.add_argument("--epochs", type=int, help="override the recipe's epochs (exploration only; refuses --write)")
    p.add_argument("--jobs", type=int, default=2, help="seeds trained at once, each with cores // jobs torch "
                   "threads (default 2: what each pytest -n 2 worker gets on 2 cores)")
    p.add_argument("--write", action="store_true", help="store the rows for this torch line")
    a = p.parse_args()
    line = torch_line(torch.__version__)
    print(f"torch {torch.__version__} (line {line}), seeds {a.seeds}, {a.jobs} at a time")
    values = measure(a.seeds, a.recipe, a.epochs, a.jobs)
    rows = [[TASK, m, round(statistics.fmean(v), 4), tolerance(m, v)] for m, v in values.items()]
    for m, v in values.items():
        print(f"{m}: seeds {v}, mean {statistics.fmean(v):.4f}, sample sd {statistics.stdev(v):.4f}, "
              f"rule {tolerance_from(v, center=round(statistics.fmean(v), 4))}, row {tolerance(m, v)}")
    for row in rows:
        print(f"row: {row}")
    if not a.write:
        return 0
    if len(a.seeds) < 5 or a.epochs is not None:
        print("--write needs at least 5 seeds and the recipe's own epochs", file=sys.stderr)
        return 2
    path = expected_results_path()
    table = json.loads(path.read_text())
    table.setdefault(a.recipe, {})[line] = rows
    table.setdefault("_measured", {}).setdefault(a.recipe, {})[line] = {
        "torch": torch.__version__, "threads": max(1, (os.cpu_count() or 1) // a.jobs), "seeds": a.seeds, **values}
    atomic_write_json(path, table)
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
