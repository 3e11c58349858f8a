#!/usr/bin/env bash
# Set up, then run the main job: validate the bundled data, train the small Mask R-CNN, evaluate, report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/setup.sh
"${VENV:-.venv}/bin/python" -m reference demo --out "${OUT:-runs/demo}" "$@"
