"""The old home of :class:`reference.errors.JobError`, kept while ``reference.testing.pytest_plugin`` imports it
from here; the commands are the other modules of :mod:`reference.app`."""

from __future__ import annotations

from ..errors import JobError

__all__ = ["JobError"]
