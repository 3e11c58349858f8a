"""The engine pins the references' documented behaviour: warmup, logged learning rates, meters, log lines."""

from __future__ import annotations

import logging
import math
import re

import pytest
import torch
from torch import nn

from reference.engine.loops import NonFiniteLossError, train_one_epoch
from reference.engine.metric_logger import SmoothedValue

MASK_RCNN_KEYS = ("loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg")


class LossModel(nn.Module):
    """Stands in for a detector in training mode: returns Mask R-CNN's loss keys from one parameter."""

    def __init__(self, nan_at: int | None = None):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))
        self.calls = 0
        self.nan_at = nan_at

    def forward(self, images, targets):
        self.calls += 1
        scale = float("nan") if self.calls - 1 == self.nan_at else 1.0
        x = torch.stack([img.mean() for img in images]).mean()
        return {k: (self.w * x * (i + 1)).sum() ** 2 * scale for i, k in enumerate(MASK_RCNN_KEYS)}


def batches(n: int, batch_size: int = 2):
    return [(tuple(torch.rand(3, 4, 4) for _ in range(batch_size)),
             tuple({"image_id": i * batch_size + j, "boxes": torch.zeros((0, 4))} for j in range(batch_size)))
            for i in range(n)]


def sgd(model, lr=0.005):
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)


def test_tutorial_warmup_logs_the_documented_learning_rates():
    model = LossModel()
    log = train_one_epoch(model, sgd(model), batches(60), "cpu", epoch=0, print_freq=10)
    lrs = [f"{it['lr']:.6f}" for it in log.iterations]
    assert lrs[0] == "0.000090"
    assert lrs[10] == "0.000936"
    assert all(lr == "0.005000" for lr in lrs[58:])
    assert lrs[57] != "0.005000"


def test_the_logged_and_backpropagated_loss_is_the_sum_of_the_loss_dict():
    """The references sum the loss dict; a mean trains identically under Adam (scale-invariant) and would only
    show in the logged numbers and under SGD."""
    model = LossModel()
    log = train_one_epoch(model, sgd(model), batches(3), "cpu", epoch=1, print_freq=10)
    for it in log.iterations:
        assert it["loss"] == pytest.approx(sum(it[k] for k in MASK_RCNN_KEYS), rel=1e-6)
        assert it["loss"] > max(it[k] for k in MASK_RCNN_KEYS)


def test_first_step_runs_at_the_warmup_start_factor():
    model = LossModel()
    opt = sgd(model)
    seen = []
    opt.register_step_pre_hook(lambda o, args, kwargs: seen.append(o.param_groups[0]["lr"]))
    train_one_epoch(model, opt, batches(5), "cpu", epoch=0)
    assert seen[0] == pytest.approx(5e-6)


def test_warmup_happens_in_epoch_zero_only():
    model = LossModel()
    log = train_one_epoch(model, sgd(model), batches(8), "cpu", epoch=1)
    assert {it["lr"] for it in log.iterations} == {0.005}


def test_warmup_length_is_capped_at_1000_iterations():
    from reference.engine.loops import warmup_scheduler

    opt = sgd(LossModel())
    assert warmup_scheduler(opt, 5000).total_iters == 1000
    assert warmup_scheduler(sgd(LossModel()), 60).total_iters == 59


def test_log_lines_have_the_references_format_and_meter_order(caplog):
    model = LossModel()
    with caplog.at_level(logging.INFO, logger="reference.engine.loops"):
        train_one_epoch(model, sgd(model), batches(12), "cpu", epoch=0, print_freq=10)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4  # iterations 0 and 10, the last one (11), then the total
    num = r"\d+\.\d{4} \(\d+\.\d{4}\)"
    meters = "  ".join(f"{k}: {num}" for k in ("loss",) + MASK_RCNN_KEYS)
    pattern = (r"Epoch: \[0\]  \[ 0/12\]  eta: \d+:\d{2}:\d{2}  lr: 0\.\d{6}  " + meters
               + r"  time: \d+\.\d{4}  data: \d+\.\d{4}$")
    assert re.match(pattern, lines[0]), lines[0]
    assert lines[1].startswith("Epoch: [0]  [10/12]")
    assert lines[2].startswith("Epoch: [0]  [11/12]")
    assert re.match(r"Epoch: \[0\] Total time: \d+:\d{2}:\d{2} \(\d+\.\d{4} s / it\)$", lines[3])


def test_meter_prints_lower_median_and_global_average():
    meter = SmoothedValue(window_size=3)
    for v in (10.0, 1.0, 2.0, 3.0, 4.0):
        meter.update(v)
    assert meter.median == 3.0 and meter.global_avg == 4.0
    even = SmoothedValue()
    for v in (1.0, 2.0, 3.0, 4.0):
        even.update(v)
    assert str(even) == "2.0000 (2.5000)"


def test_non_finite_loss_stops_before_any_update_and_names_the_batch():
    model = LossModel(nan_at=3)
    opt = sgd(model)
    snapshots = []
    opt.register_step_post_hook(lambda o, args, kwargs: snapshots.append(model.w.detach().clone()))
    with pytest.raises(NonFiniteLossError) as info:
        train_one_epoch(model, opt, batches(6), "cpu", epoch=0)
    err = info.value
    assert err.iteration == 3 and err.image_ids == [6, 7]
    assert "image ids [6, 7]" in str(err) and "loss_classifier=nan" in str(err)
    assert len(snapshots) == 3 and torch.equal(model.w.detach(), snapshots[-1])
    assert math.isfinite(float(model.w.detach()))


def test_integer_image_ids_stay_python_ints_on_the_way_to_the_model():
    seen = []

    class Spy(LossModel):
        def forward(self, images, targets):
            seen.extend(type(t["image_id"]) for t in targets)
            return super().forward(images, targets)

    model = Spy()
    train_one_epoch(model, sgd(model), batches(2), "cpu", epoch=0)
    assert seen == [int] * 4


# --- side-by-side inference -------------------------------------------------------------------------------------

class EchoDetector(nn.Module):
    """Stands in for a detector in eval mode: one detection per image, scored by the image's mean."""

    def forward(self, images):
        return [{"boxes": torch.zeros((1, 4)), "scores": img.mean().reshape(1), "labels": torch.ones(1)}
                for img in images]


def test_side_by_side_inference_keeps_loader_order_and_a_bounded_look_ahead_on_a_long_loader():
    """Twelve batches on two threads: every batch yielded in loader order with the one-thread outputs, and
    never more than ``2 * threads + 1`` batches fetched ahead of the one yielded (memory stays flat)."""
    from reference.engine.loops import predict_batches

    data = batches(12)
    fetched = []

    def loader():
        for i, batch in enumerate(data):
            fetched.append(i)
            yield batch

    plain = [outputs for _, _, outputs, _ in predict_batches(EchoDetector(), data, "cpu", threads=1)]
    ahead, side_by_side = [], []
    for yielded, (_, targets, outputs, _) in enumerate(predict_batches(EchoDetector(), loader(), "cpu", threads=2)):
        ahead.append(len(fetched) - yielded)
        side_by_side.append((targets[0]["image_id"], outputs))
    assert [i for i, _ in side_by_side] == [2 * b for b in range(12)]
    assert all(torch.equal(a[0]["scores"], b[0]["scores"]) for (_, a), b in zip(side_by_side, plain))
    assert max(ahead) == 2 * 2 + 1  # the bound is reached on a loader this long, and kept
