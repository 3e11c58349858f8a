"""Evaluators in detectron2's shape, and the inference pass that feeds them.

A :class:`DatasetEvaluator` is reset, given each batch with the model's outputs (:meth:`~DatasetEvaluator.process`)
and asked for its result at the end (:meth:`~DatasetEvaluator.evaluate`). :func:`inference_on_dataset` runs a
model over a loader (eval mode, ``torch.inference_mode``, each module's training flag restored afterwards) and
feeds an evaluator, printing the references' ``Test:`` lines and ``Averaged stats``. :class:`COCOEvaluator`
collects ground truth and detections image by image, gathers them across processes and scores them with
:func:`reference.engine.coco_eval.score`, printing pycocotools' lines and the COCO tables.

    evaluator = COCOEvaluator(("bbox", "segm"))
    result = inference_on_dataset(model, loader, evaluator, "cpu")   # a CocoResult
    result.stats["bbox"][0]

:func:`predict_batches` and :func:`predict` run the model batch by batch; on a CPU several batches side by side.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import torch
from torch import nn

from . import coco_eval, distributed
from .coco_eval import CocoResult, GroundTruth, score
from .metric_logger import COCO_LINES, LINES, MetricLogger, emit
from ..contract import image_id_of

Batch = tuple[Sequence[torch.Tensor], Sequence[Mapping[str, Any]]]
"""A loader's batch: the images and their targets."""

Outputs = Sequence[Mapping[str, torch.Tensor]]
"""The model's outputs for one batch, one dict per image."""

Detections = dict[str, list[dict]]
"""Pycocotools result entries per IoU type."""

Scorer = Callable[[GroundTruth, Detections, str], CocoResult]


# ------------------------------------------------------------------------------------------- running the model


@torch.inference_mode()
def _infer(model: nn.Module, images: Sequence[torch.Tensor], device: torch.device) -> tuple[list[dict], float]:
    """The batch's outputs on the CPU, and the seconds the model took."""
    start = time.perf_counter()
    outputs = model([img.to(device) for img in images])
    outputs = [{k: v.to("cpu") for k, v in out.items()} for out in outputs]
    return outputs, time.perf_counter() - start


def per_image(images: Sequence[torch.Tensor], targets: Sequence[Mapping[str, Any]],
              outputs: Outputs) -> Iterator[tuple[Mapping[str, Any], Mapping[str, torch.Tensor], tuple[int, int]]]:
    """Yield ``(target, output, (H, W))`` for each image of a batch."""
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
        yield from per_image(images, targets, outputs)


def predict_batches(model: nn.Module, data_loader: Iterable, device: torch.device | str, *,
                    threads: int = 1) -> Iterator[tuple[Sequence, Sequence, list[dict], float]]:
    """Yield ``(images, targets, outputs, model_seconds)`` per batch in loader order (see :func:`predict`);
    puts the model in eval mode."""
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


BatchRunner = Callable[..., Iterator[tuple[Sequence, Sequence, list[dict], float]]]
"""What :func:`predict_batches` is: ``(model, data_loader, device, threads=...)`` to batches with outputs."""


# ------------------------------------------------------------------------------------------------ evaluators


class DatasetEvaluator:
    """Accumulates a pass's batches and the model's outputs, and turns them into a result."""

    def reset(self) -> None:
        """Forget everything processed so far."""
        raise NotImplementedError

    def process(self, inputs: Batch, outputs: Outputs) -> None:
        """Take one batch (images, targets) and the model's outputs for it."""
        raise NotImplementedError

    def evaluate(self) -> Any:
        """The result over everything processed since the last :meth:`reset`."""
        raise NotImplementedError


def first_wins(gts: Sequence[GroundTruth], per_rank: Sequence[list[dict]]) -> list[dict]:
    """Detections of each image from the first process whose shard held it (padding duplicates dropped)."""
    owner: dict[int, int] = {}
    for rank, gt in enumerate(gts):
        for im in gt.images:
            owner.setdefault(im["id"], rank)
    return [d for rank, dets in enumerate(per_rank) for d in dets if owner.get(d["image_id"]) == rank]


def gather(gt: GroundTruth, dets: Detections) -> tuple[GroundTruth, Detections]:
    """Every process's ground truth and detections in one; an image seen by two processes counts once (the
    first process's copy). Not distributed: ``(gt, dets)`` as given."""
    parts = distributed.all_gather_objects((gt, dets))
    if len(parts) == 1:
        return gt, dets
    gts = [p[0] for p in parts]
    merged = gts[0].merge(gts[1:])
    return merged, {t: first_wins(gts, [p[1][t] for p in parts]) for t in dets}


@dataclass
class COCOEvaluator(DatasetEvaluator):
    """COCO stats per IoU type (``bbox``, ``segm``, ``keypoints``) over the images processed.

    :meth:`process` adds each image's target to :attr:`ground_truth` and its output to :attr:`detections`
    (through ``coco_eval.detections_to_coco``, looked up on each call, so that a patched one is used);
    :meth:`evaluate` gathers them across processes (:func:`gather`), scores them with ``scorer`` and, with
    ``console``, prints pycocotools' lines and the COCO tables (see :mod:`reference.engine.metric_logger`).
    """

    iou_types: Sequence[str]
    backend: str = "pycocotools"
    scorer: Scorer = score
    console: bool = True
    ground_truth: GroundTruth = field(init=False, repr=False)
    detections: Detections = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.ground_truth = GroundTruth()
        self.detections = {t: [] for t in self.iou_types}

    def process(self, inputs: Batch, outputs: Outputs) -> None:
        images, targets = inputs
        for target, output, (h, w) in per_image(images, targets, outputs):
            image_id = image_id_of(target)
            self.ground_truth.add(image_id, h, w, target)
            for t in self.iou_types:
                self.detections[t] += coco_eval.detections_to_coco(image_id, output, t)

    def evaluate(self) -> CocoResult:
        gt, dets = gather(self.ground_truth, self.detections)
        result = self.scorer(gt, dets, self.backend)
        if self.console:
            lines = logging.getLogger(LINES)
            for line in result.log_lines:
                emit(lines, line)
            emit(logging.getLogger(COCO_LINES), result.text())
        return result


# ------------------------------------------------------------------------------------------- the inference pass


@contextlib.contextmanager
def inference_context(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode inside the block; each module's training flag as it was afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


class _Sized:
    """An iterator with the length of the loader it walks (``MetricLogger.log_every`` needs one)."""

    def __init__(self, items: Iterator, length: int):
        self.items, self.length = items, length

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator:
        return self.items


def inference_on_dataset(model: nn.Module, data_loader: Iterable, evaluator: DatasetEvaluator,
                         device: torch.device | str = "cpu", *, threads: int | None = None, print_freq: int = 100,
                         console: bool = True, run_batches: BatchRunner = predict_batches) -> Any:
    """Reset ``evaluator``, feed it every batch of ``data_loader`` with ``model``'s outputs, return its result.

    The model runs through ``run_batches`` (``threads`` batches side by side; default
    :func:`default_inference_threads`) in eval mode under ``torch.inference_mode``; each module's training
    flag is restored before the evaluator's :meth:`~DatasetEvaluator.evaluate`. With ``console``: the
    references' ``Test:`` lines every ``print_freq`` batches and ``Averaged stats`` (``model_time``: seconds
    in the model per batch, ``evaluator_time``: seconds in :meth:`~DatasetEvaluator.process`), and the
    per-iteration progress records; without it, nothing.
    """
    if threads is None:
        threads = default_inference_threads(device)
    evaluator.reset()
    meters = MetricLogger(logging.getLogger(LINES))
    with inference_context(model), torch.inference_mode():
        batches: Iterable = run_batches(model, data_loader, device, threads=threads)
        if console:
            batches = meters.log_every(_Sized(iter(batches), len(data_loader)), print_freq,  # type: ignore[arg-type]
                                       "Test:")
        for images, targets, outputs, model_time in batches:
            start = time.perf_counter()
            evaluator.process((images, targets), outputs)
            meters.update(model_time=model_time, evaluator_time=time.perf_counter() - start)
        if console:
            meters.emit(f"Averaged stats: {meters}")
    return evaluator.evaluate()
