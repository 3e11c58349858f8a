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
# the installed versions from the package metadata: importing torch here would cost seconds on every call
if ! "$VENV/bin/python" -c "import sys; from importlib.metadata import version
sys.exit(not (version('torch').startswith('$TORCH') and version('torchvision').startswith('$TORCHVISION')))" 2>/dev/null
then
    echo "installing torch==$TORCH torchvision==$TORCHVISION (a few minutes)"
    pip_install "torch==$TORCH" "torchvision==$TORCHVISION"
    rm -f "$VENV/.tvref-installed"
fi
# the project itself (editable) and its test extras: again only when pyproject.toml or this checkout's path
# changed since the last install (pip's resolver asks the registry each time: ~30 s for nothing)
stamp="$VENV/.tvref-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $(pwd)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    pip_install -e ".[test]"
    # after an install, the full check (versions, and pycocotools' compiled code against this numpy)
    "$VENV/bin/python" -m reference env
    echo "$want" > "$stamp"
else
    "$VENV/bin/python" -c "from importlib.metadata import version as v
print(f'$VENV: torch {v(\"torch\")}, torchvision {v(\"torchvision\")}, pycocotools {v(\"pycocotools\")} '
      '(checked at install; python -m reference env checks again)')"
fi
