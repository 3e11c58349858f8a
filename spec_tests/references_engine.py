"""What torchvision's ``references/detection`` ``train_one_epoch`` and ``evaluate`` print, written here from the
behaviour described in ``shared/reference-behaviors.md`` and the tutorial's log (seed 001), not from their code.

The drop-in test (``test_tutorial_drop_in.py``) runs the tutorial's loop with these and with
``reference.engine.loops`` and compares what each prints. Everything goes to ``print``, as in the references.
"""

from __future__ import annotations

import copy
import datetime
import math
import sys
import time
from collections import defaultdict, deque

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from reference.engine.coco_eval import ground_truth_from_dataset
from reference.models import iou_types

from spec_tests.references_way import _unwrap, evaluate_batch


class SmoothedValue:
    def __init__(self, window_size=20, fmt="{median:.4f} ({global_avg:.4f})"):
        self.deque, self.total, self.count, self.fmt = deque(maxlen=window_size), 0.0, 0, fmt

    def update(self, value, n=1):
        self.deque.append(value)
        self.count += n
        self.total += value * n

    @property
    def global_avg(self):
        return self.total / self.count

    def __str__(self):
        window = torch.tensor(list(self.deque))
        return self.fmt.format(median=window.median().item(), avg=window.float().mean().item(),
                               global_avg=self.global_avg, max=max(self.deque), value=self.deque[-1])


class MetricLogger:
    def __init__(self, delimiter="  "):
        self.meters, self.delimiter = defaultdict(SmoothedValue), delimiter

    def update(self, **kwargs):
        for k, v in kwargs.items():
            self.meters[k].update(v.item() if isinstance(v, torch.Tensor) else float(v))

    def __str__(self):
        return self.delimiter.join(f"{name}: {meter}" for name, meter in self.meters.items())

    def log_every(self, iterable, print_freq, header):
        start = end = time.time()
        iter_time, data_time = SmoothedValue(fmt="{avg:.4f}"), SmoothedValue(fmt="{avg:.4f}")
        width = len(str(len(iterable)))
        for i, obj in enumerate(iterable):
            data_time.update(time.time() - end)
            yield obj
            iter_time.update(time.time() - end)
            if i % print_freq == 0 or i == len(iterable) - 1:
                eta = datetime.timedelta(seconds=int(iter_time.global_avg * (len(iterable) - i)))
                print(self.delimiter.join([header, f"[{i:{width}d}/{len(iterable)}]", f"eta: {eta}", str(self),
                                           f"time: {iter_time}", f"data: {data_time}"]))
            end = time.time()
        total = time.time() - start
        print(f"{header} Total time: {datetime.timedelta(seconds=int(total))} "
              f"({total / len(iterable):.4f} s / it)")


def train_one_epoch(model, optimizer, data_loader, device, epoch, print_freq, scaler=None):
    model.train()
    metric_logger = MetricLogger(delimiter="  ")
    metric_logger.meters["lr"] = SmoothedValue(window_size=1, fmt="{value:.6f}")
    warmup = None
    if epoch == 0:
        warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0 / 1000,
                                                   total_iters=min(1000, len(data_loader) - 1))
    for images, targets in metric_logger.log_every(data_loader, print_freq, f"Epoch: [{epoch}]"):
        images = [image.to(device) for image in images]
        targets = [{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in t.items()} for t in targets]
        loss_dict = model(images, targets)
        losses = sum(loss for loss in loss_dict.values())
        loss_value = losses.item()
        if not math.isfinite(loss_value):
            print(f"Loss is {loss_value}, stopping training")
            print(loss_dict)
            sys.exit(1)
        optimizer.zero_grad()
        losses.backward()
        optimizer.step()
        if warmup is not None:
            warmup.step()
        metric_logger.update(loss=losses, **loss_dict)
        metric_logger.update(lr=optimizer.param_groups[0]["lr"])
    return metric_logger


@torch.inference_mode()
def evaluate(model, data_loader, device):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model.eval()
    metric_logger = MetricLogger(delimiter="  ")
    coco_gt = COCO()
    coco_gt.dataset = ground_truth_from_dataset(_unwrap(data_loader.dataset)).dataset()
    coco_gt.createIndex()  # prints "creating index..." and "index created!"
    types = iou_types(model)
    evaluators = {t: COCOeval(coco_gt, iouType=t) for t in types}
    per_batch: dict[str, list[np.ndarray]] = {t: [] for t in types}
    seen: list[int] = []
    for images, targets in metric_logger.log_every(data_loader, 100, "Test:"):
        images = [img.to(device) for img in images]
        model_time = time.time()
        outputs = [{k: v.to("cpu") for k, v in out.items()} for out in model(images)]
        model_time = time.time() - model_time
        evaluator_time = time.time()
        ids = [t["image_id"] for t in targets]
        seen += ids
        evaluate_batch(evaluators, coco_gt, ids, outputs, per_batch)
        evaluator_time = time.time() - evaluator_time
        metric_logger.update(model_time=model_time, evaluator_time=evaluator_time)
    print("Averaged stats:", metric_logger)
    unique_ids, first = np.unique(seen, return_index=True)
    for t, ev in evaluators.items():
        ev.evalImgs = list(np.concatenate(per_batch[t], axis=2)[..., first].flatten())
        ev.params.imgIds = list(unique_ids)
        ev._paramsEval = copy.deepcopy(ev.params)
        ev.accumulate()  # prints "Accumulating evaluation results..." and "DONE (t=...)"
    for t, ev in evaluators.items():
        print(f"IoU metric: {t}")
        ev.summarize()
    torch.set_num_threads(threads)
    return evaluators
