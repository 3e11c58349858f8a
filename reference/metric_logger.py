"""Smoothed meters and the references' training log lines.

A meter prints ``median (global average)`` over a window of 20 (the lower median for an even count); the
log line is two-space separated: ``Epoch: [0]  [10/60]  eta: 0:00:20  lr: 0.000936  loss: 1.3007 (1.5313)
...  time: 0.4198  data: 0.0298``. Lines go to :mod:`logging`, never to ``print``.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections import deque
from typing import Iterable, Iterator

import torch

from . import distributed


class SmoothedValue:
    """A series of values with a sliding window (median, average) and global totals."""

    def __init__(self, window_size: int = 20, fmt: str = "{median:.4f} ({global_avg:.4f})"):
        self.window: deque[float] = deque(maxlen=window_size)
        self.total = 0.0
        self.count = 0
        self.fmt = fmt

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


class MetricLogger:
    """Named meters in insertion order, and :meth:`log_every` which writes the references' lines."""

    def __init__(self, logger: logging.Logger, delimiter: str = "  "):
        self.meters: dict[str, SmoothedValue] = {}
        self.delimiter = delimiter
        self.logger = logger

    def add_meter(self, name: str, meter: SmoothedValue) -> None:
        self.meters[name] = meter

    def update(self, **values: float | torch.Tensor) -> None:
        for k, v in values.items():
            if isinstance(v, torch.Tensor):
                v = v.item()
            self.meters.setdefault(k, SmoothedValue()).update(float(v))

    def __str__(self) -> str:
        return self.delimiter.join(f"{name}: {meter}" for name, meter in self.meters.items())

    def _emit(self, message: str) -> None:
        if distributed.info().is_main:
            self.logger.info(message)

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
            if i % print_freq == 0 or i == n - 1:
                eta = str(datetime.timedelta(seconds=int(iter_time.global_avg * (n - i))))
                parts = [header, f"[{i:>{width}d}/{n}]", f"eta: {eta}", str(self), f"time: {iter_time}",
                         f"data: {data_time}"]
                if torch.cuda.is_available() and torch.cuda.is_initialized():
                    parts.append(f"max mem: {torch.cuda.max_memory_allocated() / 2**20:.0f}")
                self._emit(self.delimiter.join(parts))
            end = time.time()
        total = time.time() - start
        self._emit(f"{header} Total time: {datetime.timedelta(seconds=int(total))} ({total / max(n, 1):.4f} s / it)")
