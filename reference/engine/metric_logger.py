"""Smoothed meters and the references' console lines.

A meter prints ``median (global average)`` over a window of 20 (the lower median for an even count); the
log line is two-space separated: ``Epoch: [0]  [10/60]  eta: 0:00:20  lr: 0.000936  loss: 1.3007 (1.5313)
...  time: 0.4198  data: 0.0298``.

Where the lines go (:func:`emit`): to :mod:`logging` (logger ``reference.engine.loops.lines``) when the application
configured logging, else to stdout, as the references' ``print`` does. So a tutorial script that swaps its
``engine`` import for ours prints the same lines, and an application with logging set up gets each line once,
through its own handlers. Every iteration also sends a record with a :class:`Progress` payload to
``reference.engine.loops.progress`` at DEBUG, for live progress displays (the CLI's); nothing is formatted unless
a handler listens there.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch

from . import distributed

LINES = "reference.engine.loops.lines"
COCO_LINES = "reference.engine.loops.lines.coco"
PROGRESS = "reference.engine.loops.progress"


def _level_set_below_root(logger: logging.Logger) -> bool:
    node: logging.Logger | None = logger
    while node is not None and node is not logging.getLogger():
        if node.level != logging.NOTSET:
            return True
        node = node.parent if node.propagate else None  # type: ignore[assignment]
    return False


def emit(logger: logging.Logger, message: str) -> None:
    """One console line (or block) of the references, on the main process only.

    Logged at INFO when ``logger`` or an ancestor has a handler (the application configured logging: its
    handlers decide, and nothing is printed twice); printed to stdout otherwise, unless a level was set on
    one of the project's loggers to silence them.
    """
    if not distributed.info().is_main:
        return
    if logger.hasHandlers():
        logger.info(message)
    elif logger.isEnabledFor(logging.INFO) or not _level_set_below_root(logger):
        print(message, flush=True)


@dataclass
class Progress:
    """One finished iteration, for progress displays: its header, position and the meters' latest values."""

    header: str
    iteration: int
    total: int
    values: dict[str, float]


class SmoothedValue:
    """A series of values with a sliding window (median, average) and global totals."""

    def __init__(self, window_size: int = 20, fmt: str = "{median:.4f} ({global_avg:.4f})"):
        self.window: deque[float] = deque(maxlen=window_size)
        self.total = 0.0
        self.count = 0
        self.fmt = fmt

    @property
    def deque(self) -> deque[float]:
        """The window under the references' attribute name."""
        return self.window

    def update(self, value: float, n: int = 1) -> None:
        self.window.append(value)
        self.count += n
        self.total += value * n

    @property
    def median(self) -> float:
        return float(torch.tensor(list(self.window)).median().item())  # the lower median, as torch gives

    @property
    def avg(self) -> float:
        return float(torch.tensor(list(self.window), dtype=torch.float32).mean().item())  # float32, as the references

    @property
    def global_avg(self) -> float:
        return self.total / max(self.count, 1)

    @property
    def max(self) -> float:
        return max(self.window)

    @property
    def value(self) -> float:
        return self.window[-1]

    def __str__(self) -> str:
        return self.fmt.format(median=self.median, avg=self.avg, global_avg=self.global_avg, max=self.max,
                               value=self.value)


def format_meters(meters: dict[str, SmoothedValue], delimiter: str = "  ") -> str:
    """``name: meter`` for each meter, in insertion order: the body of a log line."""
    return delimiter.join(f"{name}: {meter}" for name, meter in meters.items())


class MeterAttributes:
    """What the references' ``MetricLogger`` answers, for any record holding ``meters`` and ``delimiter``:
    ``x.loss`` for ``x.meters["loss"]``, and ``str(x)`` as the meters' line."""

    def __getattr__(self, name: str) -> SmoothedValue:
        meters = self.__dict__.get("meters", {})
        if name in meters:
            return meters[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __str__(self) -> str:
        return format_meters(self.meters, self.delimiter)


class MetricLogger(MeterAttributes):
    """Named meters in insertion order, and :meth:`log_every` which writes the references' lines."""

    def __init__(self, logger: logging.Logger | None = None, delimiter: str = "  "):
        self.meters: dict[str, SmoothedValue] = {}
        self.delimiter = delimiter
        self.logger = logger if logger is not None else logging.getLogger(LINES)
        self.progress = logging.getLogger(PROGRESS)

    def add_meter(self, name: str, meter: SmoothedValue) -> None:
        self.meters[name] = meter

    def update(self, **values: float | torch.Tensor) -> None:
        for k, v in values.items():
            if isinstance(v, torch.Tensor):
                v = v.item()
            self.meters.setdefault(k, SmoothedValue()).update(float(v))

    def emit(self, message: str) -> None:
        emit(self.logger, message)

    def _tick(self, header: str, i: int, n: int) -> None:
        if self.progress.isEnabledFor(logging.DEBUG) and distributed.info().is_main:
            values = {k: m.value for k, m in self.meters.items() if m.count}
            self.progress.debug("%s [%d/%d]", header, i, n, extra={"progress": Progress(header, i, n, values)})

    def log_every(self, iterable: Iterable, print_freq: int, header: str = "") -> Iterator:
        n = len(iterable)  # type: ignore[arg-type]
        width = len(str(n))
        iter_time = SmoothedValue(fmt="{avg:.4f}")
        data_time = SmoothedValue(fmt="{avg:.4f}")
        start = end = time.time()
        for i, item in enumerate(iterable):
            data_time.update(time.time() - end)
            yield item
            iter_time.update(time.time() - end)
            self._tick(header, i, n)
            if i % print_freq == 0 or i == n - 1:
                eta = str(datetime.timedelta(seconds=int(iter_time.global_avg * (n - i))))
                parts = [header, f"[{i:>{width}d}/{n}]", f"eta: {eta}", str(self), f"time: {iter_time}",
                         f"data: {data_time}"]
                if torch.cuda.is_available() and torch.cuda.is_initialized():
                    parts.append(f"max mem: {torch.cuda.max_memory_allocated() / 2**20:.0f}")
                self.emit(self.delimiter.join(parts))
            end = time.time()
        total = time.time() - start
        self.emit(f"{header} Total time: {datetime.timedelta(seconds=int(total))} ({total / max(n, 1):.4f} s / it)")
