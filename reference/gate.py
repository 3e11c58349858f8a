"""The accuracy gate: ``fixtures/expected_results.json`` rows ``[task, metric, expected, tolerance]``.

Like detectron2's regression gate, one row per metric; unlike it, the check is one-sided: a run passes when
``actual >= expected - tolerance`` (a better model is not a regression). Rows are kept per recipe and per
torch version line (``"2.14"``); a line without rows of its own uses the ``"default"`` rows and says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .coco_eval import STAT_NAMES, CocoResult
from .paths import fixtures_dir



class GateError(AssertionError):
    """A metric fell below its gate."""


@dataclass(frozen=True)
class GateCheck:
    task: str
    metric: str  # "<iou type> <stat name>", e.g. "bbox AP" or "segm AP50"
    expected: float
    tolerance: float
    actual: float | None = None

    @property
    def passed(self) -> bool:
        return self.actual is not None and self.actual >= self.expected - self.tolerance

    def __str__(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        actual = "missing" if self.actual is None else round(self.actual, 4)
        return (f"{verdict} {self.task} {self.metric}: actual {actual} vs expected {self.expected} - tolerance "
                f"{self.tolerance}")


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
    rows = lines.get(torch_line(version), lines.get("default"))
    if rows is None:
        raise KeyError(f"{path}: recipe {recipe!r} has no rows for torch {torch_line(version)} and no default")
    return [GateCheck(*row) for row in rows]


def metric_value(result: CocoResult, metric: str) -> float | None:
    iou_type, _, stat = metric.partition(" ")
    if iou_type not in result.stats or stat not in STAT_NAMES:
        return None
    return result.stats[iou_type][STAT_NAMES.index(stat)]


def check_gate(result: CocoResult | None, checks: list[GateCheck]) -> list[GateCheck]:
    """Each check with its actual value filled in (None when the run has no such metric)."""
    return [GateCheck(c.task, c.metric, c.expected, c.tolerance,
                      metric_value(result, c.metric) if result else None) for c in checks]


def assert_gate(result: CocoResult | None, checks: list[GateCheck]) -> list[GateCheck]:
    """Raise :class:`GateError` listing expected vs actual for every failed check."""
    done = check_gate(result, checks)
    failed = [c for c in done if not c.passed]
    if failed:
        raise GateError("accuracy gate failed:\n" + "\n".join(str(c) for c in failed))
    return done
