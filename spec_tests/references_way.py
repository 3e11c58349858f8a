"""The baseline for the evaluation benchmark: evaluation done the way torchvision's ``references/detection``
does it, written here from the behaviour described in ``shared/reference-behaviors.md`` (not their code).

The steps that cost time, in their order:

1. torch drops to one thread for the whole pass;
2. the ground truth is rebuilt by iterating the dataset with its transforms (a ``Subset`` is unwrapped, so
   the whole underlying dataset is decoded);
3. inference runs on the loader the references build for evaluation: one image per batch;
4. after every batch, the batch's detections are loaded with ``loadRes`` and ``COCOeval.evaluate`` runs on
   that batch's images; the per-image results are concatenated and accumulated once at the end.

Time is recorded per step so the benchmark can say where it goes and what the best possible speedup is.
"""

from __future__ import annotations

import contextlib
import copy
import io
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch.utils.data import DataLoader, Subset

from reference.engine.coco_eval import detections_to_coco, ground_truth_from_dataset
from reference.contract import image_id_of
from reference.training.fit import collate_fn


@dataclass
class StepTimes:
    """Seconds spent per step of the references' evaluation."""

    ground_truth: float = 0.0
    loading: float = 0.0
    inference: float = 0.0
    per_batch_cocoeval: float = 0.0
    accumulate: float = 0.0
    stats: dict[str, list[float]] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return self.ground_truth + self.loading + self.inference + self.per_batch_cocoeval + self.accumulate

    def best_possible_speedup(self, threads: int) -> float:
        """Amdahl's ceiling for any evaluator: it must still load every image once and run the same
        inference, at best both spread perfectly over ``threads``; everything else is assumed free."""
        return self.total / ((self.loading + self.inference) / threads)


def _quiet():
    return contextlib.redirect_stdout(io.StringIO())


def evaluate_batch(evaluators: dict, coco_gt: COCO, ids: list[int], outputs: list[dict], per_image: dict) -> None:
    """The references' per-batch step: load this batch's detections into each ``COCOeval`` and evaluate the
    batch's images right away, keeping their per-image results for the end (as ``CocoEvaluator.update`` does)."""
    for iou_type, ev in evaluators.items():
        results = [d for i, out in zip(ids, outputs) for d in detections_to_coco(i, out, iou_type)]
        with _quiet():
            ev.cocoDt = coco_gt.loadRes(results) if results else COCO()
            ev.params.imgIds = ids
            ev.evaluate()
        per_image[iou_type].append(np.asarray(ev.evalImgs).reshape(-1, len(ev.params.areaRng), len(ids)))


def _unwrap(dataset):
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return dataset


@torch.inference_mode()
def references_evaluate(model: torch.nn.Module, dataset, iou_types=("bbox", "segm")) -> StepTimes:
    """Evaluate ``model`` on ``dataset`` as the references do; returns step times and the 12 stats per type."""
    times = StepTimes()
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.perf_counter()
        coco_gt = COCO()
        coco_gt.dataset = ground_truth_from_dataset(_unwrap(dataset)).dataset()
        with _quiet():
            coco_gt.createIndex()
        times.ground_truth = time.perf_counter() - start

        evaluators = {t: COCOeval(coco_gt, iouType=t) for t in iou_types}
        per_image: dict[str, list[np.ndarray]] = {t: [] for t in iou_types}
        seen: list[int] = []
        model.eval()
        loader = iter(DataLoader(dataset, batch_size=1, collate_fn=collate_fn))
        while True:
            start = time.perf_counter()
            batch = next(loader, None)
            times.loading += time.perf_counter() - start
            if batch is None:
                break
            images, targets = batch
            start = time.perf_counter()
            outputs = [{k: v.to("cpu") for k, v in out.items()} for out in model(list(images))]
            middle = time.perf_counter()
            ids = [image_id_of(t) for t in targets]
            seen += ids
            evaluate_batch(evaluators, coco_gt, ids, outputs, per_image)
            times.inference += middle - start
            times.per_batch_cocoeval += time.perf_counter() - middle

        start = time.perf_counter()
        unique_ids, first = np.unique(seen, return_index=True)  # sorted, each image once, as the references
        for iou_type, ev in evaluators.items():
            ev.evalImgs = list(np.concatenate(per_image[iou_type], axis=2)[..., first].flatten())
            ev.params.imgIds = list(unique_ids)
            ev._paramsEval = copy.deepcopy(ev.params)
            with _quiet():
                ev.accumulate()
                ev.summarize()
            times.stats[iou_type] = [float(x) for x in ev.stats[:12]]
        times.accumulate = time.perf_counter() - start
    finally:
        torch.set_num_threads(previous)
    return times
