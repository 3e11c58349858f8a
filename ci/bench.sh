#!/usr/bin/env bash
# The benchmark tier: set up, run the benchmarks alone (they need the machine to themselves), then compare
# their same-process ratios with ci/benchmark_baseline.json. Extra arguments go to pytest.
#   RECORD=1 bash ci/bench.sh     adds this run to the baseline instead (thresholds come from the recorded runs)
set -uo pipefail
cd "$(dirname "$0")/.."
bash ci/setup.sh || exit 1
VENV="${VENV:-.venv}"
mkdir -p runs
"$VENV/bin/python" -m pytest -p no:randomly -m benchmark_run --benchmark-json=runs/benchmark.json "$@" || exit $?
if [ "${RECORD:-0}" = "1" ]; then
    exec "$VENV/bin/python" ci/compare_benchmarks.py runs/benchmark.json ci/benchmark_baseline.json --record
fi
exec "$VENV/bin/python" ci/compare_benchmarks.py runs/benchmark.json ci/benchmark_baseline.json
