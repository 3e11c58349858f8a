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
(see :mod:`reference.engine.coco_eval`), keeps torch's thread count unless asked, on a CPU runs batches side by
side (see :func:`reference.engine.evaluator.predict`), and leaves each module's training flag as it found it.
``evaluate`` is :func:`reference.engine.evaluator.inference_on_dataset` with a
:class:`reference.engine.evaluator.COCOEvaluator`; ``predict``, ``predict_batches`` and
``default_inference_threads`` are that module's, and ``detections_to_coco`` :mod:`reference.engine.coco_eval`'s,
importable from here as before.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import torch
from torch import nn

from . import distributed
from .coco_eval import CocoResult, detections_to_coco, score
from ..contract import image_id_of
from .evaluator import COCOEvaluator, default_inference_threads, inference_on_dataset, predict, predict_batches
from .metric_logger import LINES, MeterAttributes, MetricLogger, SmoothedValue
from ..models import iou_types

__all__ = ["EpochLog", "NonFiniteLossError", "default_inference_threads", "detections_to_coco", "evaluate", "predict",
           "predict_batches", "to_device", "torch_threads", "train_one_epoch", "warmup_scheduler"]

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


def evaluate(model: nn.Module, data_loader: Iterable, device: torch.device | str, *,
             backend: str = "pycocotools", num_threads: int | None = None,
             inference_threads: int | None = None, print_freq: int = 100) -> CocoResult:
    """COCO stats per IoU type (bbox; segm for Mask R-CNN; keypoints for Keypoint R-CNN).

    :func:`~reference.engine.evaluator.inference_on_dataset` with a
    :class:`~reference.engine.evaluator.COCOEvaluator` of the model's IoU types. Under ``torchrun`` each process
    evaluates its shard; ground truth and detections are gathered and an image seen by two processes counts once
    (first wins). ``num_threads`` sets torch's thread count for the pass and restores the previous one
    afterwards, also on error. ``inference_threads`` is passed to :func:`predict_batches` (default:
    :func:`default_inference_threads`). Prints the references' ``Test:`` lines every ``print_freq`` batches,
    ``Averaged stats``, and the COCO tables (see the module docstring for where they go). ``model_time`` is the
    seconds each batch spent in the model, ``evaluator_time`` the seconds spent turning its outputs into COCO
    results. The model's training flags are as they were afterwards.
    """
    evaluator = COCOEvaluator(iou_types(model.module if hasattr(model, "module") else model), backend, score)
    with torch_threads(num_threads):
        return inference_on_dataset(model, data_loader, evaluator, device, threads=inference_threads,
                                    print_freq=print_freq, run_batches=predict_batches)


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """torch's thread count set to ``count`` inside the block (unchanged for None), the previous one restored."""
    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
