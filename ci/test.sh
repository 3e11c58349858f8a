#!/usr/bin/env bash
# Set up, then run the default test tier: everything that needs neither a GPU, nor the real PennFudan data,
# nor the long hypothesis profile, nor the machine to itself (benchmarks have their own tier: ci/bench.sh).
# Tests run on all cores (pytest-xdist; WORKERS=1 runs them in one process) in random order
# (pytest-randomly; the seed is printed, --randomly-seed=N repeats an order). Extra arguments go to pytest.
# pytest's "no tests collected" (exit 5) counts as a failure here, never as success.
set -uo pipefail
cd "$(dirname "$0")/.."
bash ci/setup.sh || exit 1
VENV="${VENV:-.venv}"
WORKERS="${WORKERS:-auto}"
if [ "$WORKERS" = "1" ]; then parallel=(); else parallel=(-n "$WORKERS" --dist loadfile); fi
"$VENV/bin/python" -m pytest "${parallel[@]}" "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: failing on purpose" >&2
    exit 1
fi
exit "$rc"
