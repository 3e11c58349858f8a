#!/usr/bin/env bash
# Create (or reuse) the virtual environment and install the pinned torch pair plus this project.
# TORCH / TORCHVISION choose the pair (default: the newest pair these machines carry on disk).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
TORCH="${TORCH:-2.14.1}"
TORCHVISION="${TORCHVISION:-0.29.1}"
if [ ! -x "$VENV/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$VENV"
fi
# pip's exit status is kept; only the noise about this machine's missing local index folders is dropped
pip_install() { "$VENV/bin/pip" install --quiet "$@" 2> >(grep -v "^WARNING: Location" >&2); }
if ! "$VENV/bin/python" -c "import sys, torch, torchvision
sys.exit(not (torch.__version__.startswith('$TORCH') and torchvision.__version__.startswith('$TORCHVISION')))" 2>/dev/null
then
    echo "installing torch==$TORCH torchvision==$TORCHVISION (a few minutes)"
    pip_install "torch==$TORCH" "torchvision==$TORCHVISION"
fi
pip_install -e ".[test]"
"$VENV/bin/python" -m reference env
