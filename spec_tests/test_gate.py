"""The accuracy gate: a seeded short training on the bundled data lands within the measured band of this
torch line, and the band's check has teeth in both directions.

The training test is the one slow test of the default tier (~1 min on one core); ``conftest.py`` schedules
it first so that under ``pytest -n 2`` the rest of the suite runs beside it.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from reference import gate
from reference.coco_eval import STAT_NAMES, CocoResult
from reference.jobs import run_gate


def _result(bbox: float, segm: float) -> CocoResult:
    stats = {t: [v] + [0.0] * (len(STAT_NAMES) - 1) for t, v in (("bbox", bbox), ("segm", segm))}
    return CocoResult(stats=stats, summary={})


def _rows() -> list[gate.GateCheck]:
    return gate.gate_for("ci")


def test_every_tox_torch_line_has_measured_rows():
    table = json.loads(gate.expected_results_path().read_text())
    assert {"2.1", "2.5", "2.14"} <= set(table["ci"]), "run python ci/measure_gate.py --write on each tox env"
    for line, rows in table["ci"].items():
        measured = table["_measured"]["ci"][line]
        assert len(measured["seeds"]) >= 5, f"torch {line}: rows from fewer than 5 seeds"
        for _task, metric, expected, tolerance in rows:
            values = measured[metric]
            assert expected == pytest.approx(sum(values) / len(values), abs=1e-4), (line, metric)
            assert all(abs(v - expected) <= tolerance for v in values), (line, metric)


@pytest.mark.parametrize("direction", [-1, 1], ids=["lower", "higher"])
def test_a_result_two_tolerances_away_fails(direction):
    checks = _rows()
    values = {c.metric: c.expected for c in checks}
    for c in checks:
        moved = dict(values, **{c.metric: c.expected + direction * 2 * c.tolerance})
        done = gate.check_gate(_result(moved["bbox AP"], moved["segm AP"]), checks)
        failed = [d for d in done if not d.passed]
        assert [d.metric for d in failed] == [c.metric]
        assert ("update expected" in str(failed[0])) == (direction > 0)


def test_a_result_at_the_expected_values_passes():
    checks = _rows()
    values = {c.metric: c.expected for c in checks}
    assert all(c.passed for c in gate.check_gate(_result(values["bbox AP"], values["segm AP"]), checks))


def test_a_row_moved_by_twice_its_tolerance_fails_the_same_result():
    checks = _rows()
    values = {c.metric: c.expected for c in checks}
    result = _result(values["bbox AP"], values["segm AP"])
    for k, c in enumerate(checks):
        for direction in (-1, 1):
            moved = list(checks)
            moved[k] = replace(c, expected=c.expected + direction * 2 * c.tolerance)
            with pytest.raises(gate.GateError, match=c.metric):
                gate.assert_gate(result, moved)


def test_an_unmeasured_torch_line_has_no_gate():
    with pytest.raises(gate.GateUnavailable, match="measure them"):
        gate.gate_for("ci", version="9.99.0")


def test_a_missing_metric_fails():
    checks = gate.check_gate(None, _rows())
    assert not any(c.passed for c in checks) and all("missing" in str(c) for c in checks)


@pytest.mark.gate
def test_short_training_lands_within_the_gate():
    """The headline: the ``ci`` recipe, seed 0, small Mask R-CNN from random weights, bundled data, CPU."""
    try:
        checks = gate.gate_for("ci")
    except gate.GateUnavailable as exc:
        pytest.skip(str(exc))
    result = run_gate("ci", seed=0)
    done = gate.assert_gate(result, checks)
    assert all(c.passed for c in done)
    print(f"torch {torch.__version__}: " + "; ".join(str(c) for c in done))
