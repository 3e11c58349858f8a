"""The user-error base class the CLI catches, and the one-line helpers user errors are written with.

Imports nothing of torch: the CLI's parser imports this module.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input the user can fix: the CLI prints the message's first line and exits with code 2."""


class JobError(UserError, ValueError):
    """Bad input to a command (unknown names, unusable device, data of the wrong layout, an output that must not
    be written)."""


# what the dataset loaders let escape on a file they cannot read as their layout (DatasetError is a ValueError)
LOADER_ERRORS: tuple[type[BaseException], ...] = (KeyError, TypeError, AttributeError, IndexError, ValueError,
                                                  OSError, RecursionError)


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """The first line of ``str(exc)``, cut to ``limit`` characters; "" for an exception without a message."""
    line = (str(exc).splitlines() or [""])[0]
    return line if limit is None else line[:limit]
