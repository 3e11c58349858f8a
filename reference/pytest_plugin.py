"""Old path of :mod:`reference.testing.pytest_plugin`, kept for installs made before the move.

An environment installed earlier (editable installs included) still names this module in its ``pytest11`` entry
point metadata until the package is reinstalled; without it, every pytest run in that environment would stop at
startup on an ImportError. Remove once no such install is expected (the next release).
"""

from .testing.pytest_plugin import pytest_addoption, pytest_collection, pytest_configure

__all__ = ["pytest_addoption", "pytest_collection", "pytest_configure"]
