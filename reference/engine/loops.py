"""``train_one_epoch`` and ``evaluate``, conformant with torchvision's ``references/detection/engine.py``.

Kept exactly: the epoch-0 ``LinearLR`` warmup (start factor 1/1000 over ``min(1000, len - 1)`` iterations,
stepped after each optimizer step), the unreduced backward, the loss dict averaged across processes for
logging, the meter order (``lr``, ``loss``, then the model's loss keys) and the log line format.

Printed as the references print (see :mod:`reference.engine.metric_logger`): training and ``Test:`` lines,
``Averaged stats``, pycocotools' indexing and accumulating lines and the COCO tables; to stdout when the
application configured no logging, else through ``logging`` (``reference.engine.loops.lines``; the tables on
``reference.engine.loops.lines.coco``). One order differs: pycocotools' ``creating index...`` lines come after the
pass, where the ground truth is indexed, not before it. The returned records also answer the references'
attribute paths: ``train_one_epoch(...).meters["loss"].global_avg`` and
``evaluate(...).coco_eval["bbox"].stats``.

Changed on purpose: a non-finite loss raises :class:`NonFiniteLossError` (naming the values and the batch's
image ids) instead of ``sys.exit``; evaluation builds its ground truth from the targets it already loads
(see :mod:`reference.engine.coco_eval`), keeps torch's thread count unless asked, and on a CPU runs batches side by
side (see :func:`predict`).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import torch
from torch import nn

from . import distributed
from .coco_eval import CocoResult, GroundTruth, detections_to_coco, score
from ..contract import image_id_of
from .metric_logger import COCO_LINES, LINES, MeterAttributes, MetricLogger, SmoothedValue, emit
from ..models import iou_types

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or inf; raised before any backward pass or optimizer step of that batch."""

    def __init__(self, epoch: int, iteration: int, losses: dict[str, float], image_ids: list):
        self.epoch, self.iteration, self.losses, self.image_ids = epoch, iteration, losses, image_ids
        values = ", ".join(f"{k}={v:.4g}" for k, v in losses.items())
        super().__init__(f"Loss is {sum(losses.values())}, stopping training (epoch {epoch}, iteration "
                         f"{iteration}, image ids {image_ids}): {values}")


@dataclass
class EpochLog(MeterAttributes):
    """What one epoch recorded: per-iteration losses and learning rates, and the meters' averages.

    It also answers as the references' ``MetricLogger`` does: ``meters["loss"].global_avg``, ``.loss``,
    ``str(log)`` (the meters' line).
    """

    iterations: list[dict[str, float]] = field(default_factory=list)
    averages: dict[str, float] = field(default_factory=dict)
    meters: dict[str, SmoothedValue] = field(default_factory=dict, repr=False, compare=False)
    delimiter: str = field(default="  ", repr=False, compare=False)


def to_device(images: Sequence[torch.Tensor], targets: Sequence[dict], device: torch.device):
    """Images and tensor-valued target fields to ``device``; other values (an int image_id) left alone."""
    images = [img.to(device) for img in images]
    targets = [{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in t.items()} for t in targets]
    return images, targets


def warmup_scheduler(optimizer: torch.optim.Optimizer, iterations: int):
    """The references' epoch-0 warmup: LinearLR from 1/1000 over ``min(1000, iterations - 1)`` steps.

    With one batch per epoch that length is 0, and ``LinearLR(total_iters=0)`` never leaves its start factor:
    the references' learning rate would stay at 1/1000 for the whole run. There the warmup lasts one step
    instead (it ends with epoch 0), with a warning; with two or more batches the schedule is the references'.
    """
    total = min(1000, iterations - 1)
    if total < 1:
        log.warning("epoch 0 has %d batch(es): the references' warmup (LinearLR over batches - 1 = %d steps) "
                    "would pin the learning rate at 1/1000; it ends with epoch 0 instead", iterations, total)
        total = 1
    return torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0 / 1000, total_iters=total)


def train_one_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, data_loader: Iterable,
                    device: torch.device | str, epoch: int, print_freq: int = 10,
                    scaler: torch.amp.GradScaler | None = None, *, warmup: bool = True,
                    iteration_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None) -> EpochLog:
    """One pass over ``data_loader``; see the module docstring for what matches the references.

    The keyword-only extras serve recipes the references do not have: ``warmup=False`` skips the epoch-0
    warmup, ``iteration_scheduler`` is stepped after every optimizer step (seed 002's OneCycleLR).
    """
    device = torch.device(device)
    model.train()
    meters = MetricLogger(logging.getLogger(LINES))
    meters.add_meter("lr", SmoothedValue(window_size=1, fmt="{value:.6f}"))
    header = f"Epoch: [{epoch}]"
    schedulers = [iteration_scheduler] if iteration_scheduler is not None else []
    if epoch == 0 and warmup:
        schedulers.append(warmup_scheduler(optimizer, len(data_loader)))  # type: ignore[arg-type]
    record = EpochLog()
    for it, (images, targets) in enumerate(meters.log_every(data_loader, print_freq, header)):
        images, targets = to_device(images, targets, device)
        with torch.autocast(device_type=device.type, enabled=scaler is not None):
            loss_dict = model(images, targets)
            losses = sum(loss for loss in loss_dict.values())
        reduced = distributed.reduce_dict(loss_dict)
        total = sum(v for v in reduced.values())
        loss_value = float(total.item())
        if not math.isfinite(loss_value):
            raise NonFiniteLossError(epoch, it, {k: float(v.detach()) for k, v in reduced.items()},
                                     [image_id_of(t) for t in targets])
        optimizer.zero_grad()
        if scaler is not None:
            scaler.scale(losses).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            losses.backward()
            optimizer.step()
        for sched in schedulers:
            sched.step()
        meters.update(loss=total, **reduced)
        lr = optimizer.param_groups[0]["lr"]
        meters.update(lr=lr)
        record.iterations.append({"loss": loss_value, **{k: float(v.detach()) for k, v in reduced.items()}, "lr": lr})
    record.averages = {k: m.global_avg for k, m in meters.meters.items()}
    record.meters = meters.meters
    return record


@torch.inference_mode()
def _infer(model: nn.Module, images: Sequence[torch.Tensor], device: torch.device) -> tuple[list[dict], float]:
    """The batch's outputs on the CPU, and the seconds the model took."""
    start = time.perf_counter()
    outputs = model([img.to(device) for img in images])
    outputs = [{k: v.to("cpu") for k, v in out.items()} for out in outputs]
    return outputs, time.perf_counter() - start


def _per_image(images, targets, outputs):
    for img, tgt, out in zip(images, targets, outputs):
        yield tgt, out, (int(img.shape[-2]), int(img.shape[-1]))


def default_inference_threads(device: torch.device | str) -> int:
    """Batches to run side by side: one on an accelerator; on a CPU up to 4, sharing torch's threads."""
    return 1 if torch.device(device).type != "cpu" else max(1, min(4, torch.get_num_threads()))


def predict(model: nn.Module, data_loader: Iterable, device: torch.device | str, *, threads: int = 1):
    """Yield ``(target, output, (H, W))`` per image in loader order, outputs on the CPU.

    ``threads > 1`` runs that many batches at once, each with ``torch.get_num_threads() // threads`` of
    torch's threads (restored when the generator ends). On a CPU, detection models spend much of their
    time in single-threaded operators (``roi_align``, mask pasting) and Python, so whole batches side by side
    use the cores better than torch's intra-op threads do (the evaluation benchmark in
    ``spec_tests/test_benchmarks.py`` measures the effect). Each batch's output does not depend on the others.
    The model is shared by the threads, so its eval-mode forward must not change its own state (torchvision's
    detectors do not).
    """
    for images, targets, outputs, _ in predict_batches(model, data_loader, device, threads=threads):
        yield from _per_image(images, targets, outputs)


def predict_batches(model: nn.Module, data_loader: Iterable, device: torch.device | str, *,
                    threads: int = 1) -> Iterator[tuple[Sequence, Sequence, list[dict], float]]:
    """Yield ``(images, targets, outputs, model_seconds)`` per batch in loader order (see :func:`predict`)."""
    device = torch.device(device)
    model.eval()
    if threads <= 1:
        for images, targets in data_loader:
            yield (images, targets, *_infer(model, images, device))
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, previous // threads))
    try:
        with ThreadPoolExecutor(threads) as pool:
            pending: deque = deque()
            for images, targets in data_loader:
                pending.append((images, targets, pool.submit(_infer, model, images, device)))
                if len(pending) > 2 * threads:  # bounded look-ahead: memory stays flat on long loaders
                    images, targets, job = pending.popleft()
                    yield (images, targets, *job.result())
            while pending:
                images, targets, job = pending.popleft()
                yield (images, targets, *job.result())
    finally:
        torch.set_num_threads(previous)


class _Sized:
    """An iterator with the length of the loader it walks (``MetricLogger.log_every`` needs one)."""

    def __init__(self, items: Iterator, length: int):
        self.items, self.length = items, length

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator:
        return self.items


def evaluate(model: nn.Module, data_loader: Iterable, device: torch.device | str, *,
             backend: str = "pycocotools", num_threads: int | None = None,
             inference_threads: int | None = None, print_freq: int = 100) -> CocoResult:
    """COCO stats per IoU type (bbox; segm for Mask R-CNN; keypoints for Keypoint R-CNN).

    Under ``torchrun`` each process evaluates its shard; ground truth and detections are gathered and an
    image seen by two processes counts once (first wins). ``num_threads`` sets torch's thread count for the
    pass and restores the previous one afterwards, also on error. ``inference_threads`` is passed to
    :func:`predict` (default: :func:`default_inference_threads`). Prints the references' ``Test:`` lines every
    ``print_freq`` batches, ``Averaged stats``, and the COCO tables (see the module docstring for where they go).
    ``model_time`` is the seconds each batch spent in the model, ``evaluator_time`` the seconds spent turning
    its outputs into COCO results.
    """
    types = iou_types(model.module if hasattr(model, "module") else model)
    previous = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    if inference_threads is None:
        inference_threads = default_inference_threads(device)
    try:
        gt = GroundTruth()
        dets: dict[str, list[dict]] = {t: [] for t in types}
        meters = MetricLogger(logging.getLogger(LINES))
        batches = _Sized(predict_batches(model, data_loader, device, threads=inference_threads),
                         len(data_loader))  # type: ignore[arg-type]
        for images, targets, outputs, model_time in meters.log_every(batches, print_freq, "Test:"):
            start = time.perf_counter()
            for target, output, (h, w) in _per_image(images, targets, outputs):
                image_id = image_id_of(target)
                gt.add(image_id, h, w, target)
                for t in types:
                    dets[t] += detections_to_coco(image_id, output, t)
            meters.update(model_time=model_time, evaluator_time=time.perf_counter() - start)
        meters.emit(f"Averaged stats: {meters}")
        parts = distributed.all_gather_objects((gt, dets))
        if len(parts) > 1:
            gt = parts[0][0].merge([p[0] for p in parts[1:]])
            dets = {t: _first_wins([p[0] for p in parts], [p[1][t] for p in parts]) for t in types}
        result = score(gt, dets, backend)
    finally:
        torch.set_num_threads(previous)
    lines = logging.getLogger(LINES)
    for line in result.log_lines:
        emit(lines, line)
    emit(logging.getLogger(COCO_LINES), result.text())
    return result


def _first_wins(gts: list[GroundTruth], per_rank: list[list[dict]]) -> list[dict]:
    """Detections of each image from the first process whose shard held it (padding duplicates dropped)."""
    owner: dict[int, int] = {}
    for rank, gt in enumerate(gts):
        for im in gt.images:
            owner.setdefault(im["id"], rank)
    return [d for rank, dets in enumerate(per_rank) for d in dets if owner.get(d["image_id"]) == rank]
