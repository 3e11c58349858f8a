"""Where the bundled files are: ``fixtures/`` in a checkout, ``reference/fixtures`` once installed."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def fixtures_dir() -> Path:
    """The bundled fixtures folder (default data, golden outputs, expected results)."""
    return Path(str(files("reference.fixtures")))
