"""ci/compare_benchmarks.py: ratios gate on the scatter of recorded runs, in the right direction."""

from __future__ import annotations

import importlib.util
import json

import pytest

from spec_tests.conftest import ROOT

spec = importlib.util.spec_from_file_location("compare_benchmarks", ROOT / "ci" / "compare_benchmarks.py")
cb = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cb)

NAME = "spec_tests/test_benchmarks.py::test_training_iterations_against_a_plain_loop"


def _run(path, throughput_ratio, seconds=1.0):
    path.write_text(json.dumps({"benchmarks": [{"fullname": NAME, "stats": {"min": seconds},
                                                "extra_info": {"throughput_ratio": throughput_ratio}}]}))
    return path


def _baseline(tmp_path, values):
    base = tmp_path / "baseline.json"
    for v in values:
        cb.record(*cb.load_run(_run(tmp_path / "run.json", v)), base)
    return json.loads(base.read_text())


def test_threshold_is_three_standard_deviations_of_the_recorded_runs(tmp_path):
    baseline = _baseline(tmp_path, [1.00, 1.04, 0.98, 1.02])
    values = baseline["benchmarks"][NAME]["throughput_ratio"]
    assert values == [1.00, 1.04, 0.98, 1.02]
    assert cb.threshold("throughput_ratio", values) == pytest.approx(1.01 - 3 * 0.025819888974716, abs=1e-9)


@pytest.mark.parametrize("ratio,code", [(0.95, 0), (0.90, 1), (1.30, 0)])
def test_only_a_ratio_worse_than_its_threshold_fails(tmp_path, ratio, code):
    baseline = _baseline(tmp_path, [1.00, 1.04, 0.98, 1.02])
    current, _ = cb.load_run(_run(tmp_path / "now.json", ratio))
    assert cb.compare(current, baseline) == code


def test_lower_is_better_ratios_fail_upwards():
    assert cb.is_worse("header_over_decode", 0.02, [0.008, 0.009]) is True
    assert cb.is_worse("header_over_decode", 0.001, [0.008, 0.009]) is False


def test_a_missing_gating_benchmark_fails(tmp_path):
    baseline = _baseline(tmp_path, [1.0, 1.0])
    assert cb.compare({}, baseline) == 1
