#!/usr/bin/env bash
# Set up, then run a test tier:
#   bash ci/test.sh               the default tier: everything that needs neither a GPU, nor the real PennFudan
#                                 data, nor the long hypothesis profile, nor the machine to itself (benchmarks:
#                                 ci/bench.sh), nor a tier of its own below; the accuracy gate included
#   bash ci/test.sh --extended    the extended tier: robustness and integration (the input fuzzer, torchrun,
#                                 a fresh pytest interpreter); CI runs it after the default tier
# Tests run on all cores (pytest-xdist; WORKERS=1 runs them in one process) in random order (pytest-randomly;
# the seed is printed, --randomly-seed=N repeats an order). Other arguments go to pytest.
# pytest's "no tests collected" (exit 5) counts as a failure here, never as success.
set -uo pipefail
cd "$(dirname "$0")/.."
bash ci/setup.sh || exit 1
VENV="${VENV:-.venv}"
# pytest keeps its assertion-rewritten modules (the tests, and hypothesis: a pytest plugin's whole distribution
# is rewritten) only where Python may write bytecode; with PYTHONDONTWRITEBYTECODE set they are compiled again
# in every process: an empty pytest run took 2.1 s instead of 0.7 s here (measured)
unset PYTHONDONTWRITEBYTECODE
WORKERS="${WORKERS:-auto}"
tier=()
if [ "${1:-}" = "--extended" ]; then
    shift
    tier=(-m "extended and not slow and not requires_data and not benchmark_run")
fi
if [ "$WORKERS" = "1" ]; then parallel=(); else parallel=(-n "$WORKERS" --dist loadfile --no-loadscope-reorder); fi
"$VENV/bin/python" -m pytest "${parallel[@]}" "${tier[@]}" "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: failing on purpose" >&2
    exit 1
fi
exit "$rc"
