#!/usr/bin/env bash
# Set up, then run the main job: validate the bundled data, train the small Mask R-CNN, evaluate, report.
# Runs never overwrite each other: without OUT, the first run goes to runs/demo, later ones to runs/demo-2, -3, ...
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/setup.sh
out="${OUT:-}"
if [ -z "$out" ]; then
    out=runs/demo
    n=2
    while [ -e "$out" ]; do out="runs/demo-$n"; n=$((n + 1)); done
fi
"${VENV:-.venv}/bin/python" -m reference demo --out "$out" "$@"
