"""Turn a dataset SPEC from the command line into a dataset object.

SPEC is ``package.module:Name``, ``path/to/file.py:Name`` (a Dataset class or a factory, called with the
``--arg KEY=VALUE`` values, parsed as Python literals where possible), or a folder in one of the known
layouts (with ``--format`` or detected).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any, Sequence

from .datasets import DatasetError, open_dataset


class SpecError(ValueError):
    """The dataset could not be imported or constructed; the message is one line."""


def parse_args(items: Sequence[str]) -> dict[str, Any]:
    """``["root=data", "transforms=None", "size=(3, 4)"]`` -> ``{"root": "data", "transforms": None, ...}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise SpecError(f"--arg {item!r} is not KEY=VALUE")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def _import_target(spec: str) -> Any:
    location, _, name = spec.rpartition(":")
    if location.endswith(".py"):
        path = Path(location)
        if not path.is_file():
            raise SpecError(f"{path}: no such file")
        module_name = f"_tvref_user_{path.stem}"
        loader_spec = importlib.util.spec_from_file_location(module_name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise SpecError(f"{path}: cannot be imported as a module")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[module_name] = module  # so that pickling the dataset (num_workers > 0) can find it
        sys.path.insert(0, str(path.parent.resolve()))
        try:
            loader_spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - user code: report, do not crash
            raise SpecError(f"{path}: importing failed: {type(exc).__name__}: {exc}") from exc
    else:
        try:
            module = importlib.import_module(location)
        except Exception as exc:  # noqa: BLE001
            raise SpecError(f"cannot import module {location!r}: {type(exc).__name__}: {exc}") from exc
    if not hasattr(module, name):
        raise SpecError(f"{location} has no attribute {name!r}")
    return getattr(module, name)


def load_dataset(spec: str, fmt: str | None = None, args: dict[str, Any] | None = None):
    """The dataset named by ``spec``; raises :class:`SpecError` with a one-line reason."""
    args = dict(args or {})
    if Path(spec).is_dir():
        try:
            return open_dataset(spec, fmt, transforms=args.pop("transforms", None), classes=args.pop("classes", None))
        except DatasetError as exc:
            raise SpecError(str(exc)) from exc
    if ":" not in spec:
        raise SpecError(f"{spec!r} is neither a folder nor MODULE:NAME / FILE.py:NAME")
    factory = _import_target(spec)
    try:
        return factory(**args)
    except Exception as exc:  # noqa: BLE001
        raise SpecError(f"constructing {spec} with {args} failed: {type(exc).__name__}: {exc}") from exc
