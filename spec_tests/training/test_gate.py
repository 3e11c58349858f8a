"""The accuracy gate's rows and checks: measured per torch line from at least 5 seeds, and a check with teeth in
both directions. The gated training itself is the demo's (``test_demo.py``).
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from reference.training import accuracy_gate as gate
from reference.engine.coco_eval import STAT_NAMES, CocoResult
from reference.training.fit import EpochRecord

AP_TOLERANCE_CAP = 0.02  # the bound for the AP rows (ci/measure_gate.py applies it)


def _run(values: dict[str, float]) -> tuple[CocoResult, EpochRecord]:
    """A COCO result and a last epoch holding ``values`` ("bbox AP", "segm AP", "train loss", ...)."""
    stats = {t: [0.0] * len(STAT_NAMES) for t in ("bbox", "segm")}
    losses = {}
    for metric, v in values.items():
        kind, _, name = metric.partition(" ")
        if kind == "train":
            losses[name] = v
        else:
            stats[kind][STAT_NAMES.index(name)] = v
    epoch = EpochRecord(0, losses.pop("loss", 0.0), losses, 1.0)
    return CocoResult(stats=stats, summary={}), epoch


def _rows() -> list[gate.GateCheck]:
    return gate.gate_for("ci")


def test_the_demo_gate_has_ap_rows_at_most_0_02_wide_and_a_training_loss_row():
    metrics = {c.metric: c.tolerance for c in _rows()}
    assert {"bbox AP", "segm AP", "train loss"} <= set(metrics)
    assert metrics["bbox AP"] <= 0.02 and metrics["segm AP"] <= 0.02


def test_every_tox_torch_line_has_measured_rows():
    table = json.loads(gate.expected_results_path().read_text())
    assert {"2.1", "2.5", "2.14"} <= set(table["ci"]), "run python ci/measure_gate.py --write on each tox env"
    for line, rows in table["ci"].items():
        measured = table["_measured"]["ci"][line]
        assert len(measured["seeds"]) >= 5, f"torch {line}: rows from fewer than 5 seeds"
        for _task, metric, expected, tolerance in rows:
            values = measured[metric]
            assert expected == pytest.approx(sum(values) / len(values), abs=1e-4), (line, metric)
            rule = gate.tolerance_from(values, center=expected)
            capped = " AP" in metric and rule > AP_TOLERANCE_CAP
            assert tolerance == (AP_TOLERANCE_CAP if capped else rule), (line, metric)
            if not capped:  # a capped row is narrower than its seeds: docs/training.md says so and how often it bites
                assert all(abs(v - expected) <= tolerance for v in values), (line, metric)
            assert abs(values[measured["seeds"].index(0)] - expected) <= tolerance, (line, metric)  # the gate's seed


@pytest.mark.parametrize("direction", [-1, 1], ids=["lower", "higher"])
def test_a_result_two_tolerances_away_fails(direction):
    checks = _rows()
    values = {c.metric: c.expected for c in checks}
    for c in checks:
        moved = dict(values, **{c.metric: c.expected + direction * 2 * c.tolerance})
        result, epoch = _run(moved)
        done = gate.check_gate(result, checks, epoch)
        failed = [d for d in done if not d.passed]
        assert [d.metric for d in failed] == [c.metric]
        assert ("update expected" in str(failed[0])) == (direction > 0)


def test_a_result_at_the_expected_values_passes():
    checks = _rows()
    values = {c.metric: c.expected for c in checks}
    result, epoch = _run(values)
    assert all(c.passed for c in gate.check_gate(result, checks, epoch))


def test_a_row_moved_by_twice_its_tolerance_fails_the_same_result():
    checks = _rows()
    values = {c.metric: c.expected for c in checks}
    result, epoch = _run(values)
    for k, c in enumerate(checks):
        for direction in (-1, 1):
            moved = list(checks)
            moved[k] = replace(c, expected=c.expected + direction * 2 * c.tolerance)
            with pytest.raises(gate.GateError, match=c.metric):
                gate.assert_gate(result, moved, epoch)


def test_an_unmeasured_torch_line_has_no_gate():
    with pytest.raises(gate.GateUnavailable, match="measure them"):
        gate.gate_for("ci", version="9.99.0")


def test_a_missing_metric_fails():
    checks = gate.check_gate(None, _rows())
    assert not any(c.passed for c in checks) and all("missing" in str(c) for c in checks)
