"""Turn a dataset SPEC from the command line into a dataset object.

SPEC is ``package.module:Name``, ``path/to/file.py:Name`` (a Dataset class or a factory, called with the
``--arg KEY=VALUE`` values, parsed as Python literals where possible), or a folder in one of the known
layouts (with ``--format`` or detected).

Errors come back as one line naming the file: :class:`SpecError` for what cannot be imported or built, and
:func:`loader_failure` for an exception a dataset loader raised that does not say which file it was reading.
:class:`TimedSamples` fetches samples in a DataLoader worker with a timeout (``validate --timeout``).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
import traceback
from pathlib import Path
from typing import Any, Sequence

from torch.utils.data import DataLoader

from ..errors import LOADER_ERRORS, UserError, first_line
from . import DatasetError, open_dataset

MAX_SHOWN = 120  # characters of a user value quoted in a message


class SpecError(UserError, ValueError):
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
        except (RecursionError, MemoryError) as exc:  # deeply nested or huge literals
            raise SpecError(f"--arg {key}: a value of {len(value)} characters is too deeply nested or too large to "
                            f"parse ({type(exc).__name__})") from None
    return out


def shorten(value: Any) -> str:
    """``repr(value)``, cut to :data:`MAX_SHOWN` characters, for quoting user input in one line."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else f"{text[:MAX_SHOWN]}... ({len(text)} characters)"


def _where_in_traceback(exc: BaseException, root: Path) -> str:
    """Best effort: the file (and annotation, image or shape) the innermost loader frame was reading.

    A fallback for loaders that let a raw ``KeyError``/``TypeError`` escape; loaders should name these
    themselves (:class:`DatasetError`).
    """
    root = root.resolve()
    for frame, _ in reversed(list(traceback.walk_tb(exc.__traceback__))):
        loc = frame.f_locals
        found = None
        for value in loc.values():
            if isinstance(value, Path) and value.suffix and value.is_file():
                try:
                    value.resolve().relative_to(root)
                except ValueError:
                    continue
                found = str(value)
                break
        if found is None:
            continue
        for name, label in (("ann", "annotation"), ("im", "image")):
            item = loc.get(name)
            if isinstance(item, dict) and "id" in item:
                return f"{found}: {label} {shorten(item['id'])}"
        if isinstance(loc.get("k"), int) and "shape" in loc:
            return f"{found}: shape {loc['k']}"
        return found
    return str(root)


def loader_failure(root: str | Path, exc: BaseException) -> str:
    """One line for an exception a dataset loader raised while reading ``root``, naming the file."""
    if isinstance(exc, DatasetError):
        return str(exc).splitlines()[0] if str(exc) else str(root)
    detail = first_line(exc, MAX_SHOWN)
    return f"{_where_in_traceback(exc, Path(root))}: cannot be read as this layout ({type(exc).__name__}: {detail})"


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
        except LOADER_ERRORS as exc:  # loaders' raw errors (DatasetError among them): named here
            raise SpecError(loader_failure(spec, exc)) from exc
    if ":" not in spec:
        raise SpecError(f"{spec!r} is neither a folder nor MODULE:NAME / FILE.py:NAME")
    factory = _import_target(spec)
    try:
        return factory(**args)
    except Exception as exc:  # noqa: BLE001
        detail = first_line(exc, MAX_SHOWN)
        raise SpecError(f"constructing {spec} with {shorten(args)} failed: {type(exc).__name__}: {detail}") from exc


def _identity(sample: Any) -> Any:
    return sample


class SampleTimeout(Exception):
    """A sample took longer than the timeout to load."""


class TimedSamples:
    """``dataset[i]`` for ``i = 0, 1, ...`` fetched by one DataLoader worker process with a timeout.

    A sample that takes longer than ``timeout`` seconds raises :class:`SampleTimeout` (its index is added to
    ``timed_out``); the hung worker is stopped and a new one carries on with the next index. A sample whose
    loading raises in the worker is loaded again here, so the caller sees the dataset's own exception.
    Other attributes (``get_height_and_width``, ``classes``, ...) are the dataset's.
    """

    sample_summaries = None  # every sample is loaded, under the timeout; the loader's quick summary is not used

    def __init__(self, dataset: Any, timeout: float, count: int):
        self.dataset, self.timeout, self.count = dataset, timeout, count
        self.timed_out: list[int] = []
        self._it: Any = None
        self._next = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def _start(self, first: int) -> None:
        loader = DataLoader(self.dataset, batch_size=None, sampler=range(first, self.count), num_workers=1,
                            timeout=self.timeout, collate_fn=_identity)
        self._it, self._next = iter(loader), first

    def close(self) -> None:
        """Stop the worker (a hung one too: terminated rather than waited for)."""
        if self._it is not None:
            for w in getattr(self._it, "_workers", []):  # DataLoader would wait 5 s for a hung worker first
                if w.is_alive():
                    w.terminate()
            self._it = None

    def __getitem__(self, i: int) -> Any:
        if not 0 <= i < self.count:
            raise IndexError(i)
        if self._it is None or i != self._next:
            self.close()
            self._start(i)
        try:
            sample = next(self._it)
        except RuntimeError as exc:
            if "DataLoader timed out" not in str(exc):
                self.close()
                self._next = i + 1
                return self.dataset[i]
            self.close()
            self._next = i + 1
            self.timed_out.append(i)
            raise SampleTimeout(f"took longer than {self.timeout:g} s to load (--timeout); skipped") from None
        except Exception:  # noqa: BLE001 - the worker re-raised the dataset's error: show it as the dataset raises it
            self.close()
            self._next = i + 1
            return self.dataset[i]
        self._next = i + 1
        return sample
