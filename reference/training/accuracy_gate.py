"""The accuracy gate: ``fixtures/expected_results.json`` rows ``[task, metric, expected, tolerance]``.

Rows are kept per recipe and per torch version line (``"2.14"``), because the same seeded run gives slightly
different numbers on different torch releases. ``expected`` is the mean over several seeds measured on that
line and ``tolerance`` comes from their spread (``ci/measure_gate.py`` measures both and says how). The
check is two-sided: a drop beyond tolerance is a regression; a rise beyond it means the results changed too,
and the message says to update ``expected``. A torch line without measured rows has no gate: callers are told
so (:class:`GateUnavailable`), never handed another line's numbers.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..engine.coco_eval import STAT_NAMES, CocoResult

if TYPE_CHECKING:
    from .fit import EpochRecord
from ..paths import fixtures_dir

TOLERANCE_RULE = ("max(3 sample standard deviations of the seeds, the largest distance of a seed from their mean), "
                  "rounded up to 0.001")


def tolerance_from(values: list[float], minimum: float = 0.0, center: float | None = None) -> float:
    """A row's tolerance from its seeds' values (:data:`TOLERANCE_RULE`), and at least ``minimum``.

    Three sample standard deviations, but at least the largest distance of any seed from ``center`` (default:
    their mean), so that every measured seed passes; rounded up to 0.001. The one rule of ``ci/measure_gate.py``'s
    rows and of ``tvref gate measure`` (both call this). Float noise just above a multiple of 0.001 is not
    rounded up (3 std of [0.50, 0.52, 0.54] is 0.06000000000000005: 0.06, where ``math.ceil`` alone gives
    0.061), while a seed exactly at the tolerance still passes (checked). Give ``center``
    the row's ``expected`` when that is the mean rounded (to 4 decimals, as the rows are): distances from the
    rounded value are what the check compares. Needs at least 2 values.
    """
    if len(values) < 2:
        raise ValueError(f"a tolerance needs at least 2 seeds' values, got {len(values)}")
    mid = statistics.fmean(values) if center is None else center
    spread = max(3 * statistics.stdev(values), max(abs(v - mid) for v in values))
    tolerance = math.ceil(spread * 1000 - 1e-6) / 1000
    if any(abs(v - mid) > tolerance for v in values):  # the float noise was a seed's own distance
        tolerance = round(tolerance + 0.001, 3)
    return max(tolerance, minimum)


class GateError(AssertionError):
    """A metric left its gate's band."""


class GateUnavailable(LookupError):
    """No measured rows for this recipe and torch line."""


@dataclass(frozen=True)
class GateCheck:
    task: str
    metric: str  # "<iou type> <stat name>" ("bbox AP", "segm AP50") or "train <loss>" ("train loss")
    expected: float
    tolerance: float
    actual: float | None = None

    @property
    def passed(self) -> bool:
        return self.actual is not None and abs(self.actual - self.expected) <= self.tolerance

    @property
    def verdict(self) -> str:
        if self.actual is None:
            return "FAIL (missing)"
        if self.passed:
            return "PASS"
        return "FAIL (lower)" if self.actual < self.expected else "FAIL (higher: results changed; update expected)"

    def to_dict(self) -> dict:
        """The check as a report.json record: its row, the actual value, and whether it passed."""
        return {**asdict(self), "passed": self.passed}

    def __str__(self) -> str:
        actual = "missing" if self.actual is None else round(self.actual, 4)
        return (f"{self.verdict} {self.task} {self.metric}: actual {actual}, expected {self.expected} "
                f"+/- {self.tolerance}")


def torch_line(version: str = torch.__version__) -> str:
    major, minor = version.split("+")[0].split(".")[:2]
    return f"{major}.{minor}"


def expected_results_path() -> Path:
    return fixtures_dir() / "expected_results.json"


def gate_for(recipe: str, version: str = torch.__version__, path: Path | None = None) -> list[GateCheck]:
    path = path or expected_results_path()
    table = {k: v for k, v in json.loads(Path(path).read_text()).items() if not k.startswith("_")}
    lines = table.get(recipe)
    if lines is None:
        raise KeyError(f"{path}: no gate for recipe {recipe!r} (known: {', '.join(table)})")
    rows = lines.get(torch_line(version))
    if rows is None:
        raise GateUnavailable(f"{path}: recipe {recipe!r} has no rows measured on torch {torch_line(version)} "
                              f"(measured: {', '.join(lines)}); measure them with python ci/measure_gate.py --write")
    return [GateCheck(*row) for row in rows]


TRAIN_PREFIX = "train "  # "train loss" (the last epoch's mean total loss), "train loss_mask", ...


def metric_value(result: CocoResult | None, metric: str, last_epoch: EpochRecord | None = None) -> float | None:
    """A row's value: ``"<iou type> <stat>"`` from the COCO result, ``"train <loss>"`` from the last epoch's
    mean losses as the references log them (``loss`` is their sum); None when the run has no such value."""
    if metric.startswith(TRAIN_PREFIX):
        if last_epoch is None:
            return None
        key = metric[len(TRAIN_PREFIX):]
        return last_epoch.train_loss if key == "loss" else last_epoch.losses.get(key)
    iou_type, _, stat = metric.partition(" ")
    if result is None or iou_type not in result.stats or stat not in STAT_NAMES:
        return None
    return result.stats[iou_type][STAT_NAMES.index(stat)]


def check_gate(result: CocoResult | None, checks: list[GateCheck],
               last_epoch: EpochRecord | None = None) -> list[GateCheck]:
    """Each check with its actual value filled in (None when the run has no such metric)."""
    return [GateCheck(c.task, c.metric, c.expected, c.tolerance, metric_value(result, c.metric, last_epoch))
            for c in checks]


def assert_gate(result: CocoResult | None, checks: list[GateCheck],
                last_epoch: EpochRecord | None = None) -> list[GateCheck]:
    """Raise :class:`GateError` listing expected vs actual for every failed check."""
    done = check_gate(result, checks, last_epoch)
    failed = [c for c in done if not c.passed]
    if failed:
        raise GateError("accuracy gate failed:\n" + "\n".join(str(c) for c in failed))
    return done
