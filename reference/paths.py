"""Where the bundled files are: ``reference/fixtures`` once installed, ``fixtures/`` in a checkout."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def fixtures_dir() -> Path:
    """The bundled fixtures folder (default data, golden outputs, expected results)."""
    try:
        return Path(str(files("reference.fixtures")))
    except ModuleNotFoundError:  # imported from a source checkout that is not installed
        return Path(__file__).resolve().parent.parent / "fixtures"
