#!/usr/bin/env bash
# Set up, then run the default test tier (everything that needs neither a GPU, nor the real PennFudan data,
# nor the long hypothesis profile). Extra arguments go to pytest. pytest's "no tests collected" (exit 5)
# counts as a failure here, never as success.
set -uo pipefail
cd "$(dirname "$0")/.."
bash ci/setup.sh || exit 1
VENV="${VENV:-.venv}"
mkdir -p runs
"$VENV/bin/python" -m pytest --benchmark-json=runs/benchmark.json "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: failing on purpose" >&2
    exit 1
fi
exit "$rc"
