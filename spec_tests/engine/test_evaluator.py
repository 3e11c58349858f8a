"""The evaluator object: reset / process / evaluate, and inference_on_dataset around it."""

from __future__ import annotations

import logging

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from reference.data import PennFudanDataset
from reference.engine import loops
from reference.engine.coco_eval import CocoResult, GroundTruth, detections_to_coco, score
from reference.engine.evaluator import COCOEvaluator, DatasetEvaluator, inference_on_dataset, predict
from reference.models import iou_types, make_box_only
from reference.testing import golden
from reference.training.fit import collate_fn
from reference.transforms import evaluation

from spec_tests.conftest import FIXTURES


def _target(image_id: int) -> dict:
    return {"image_id": image_id, "boxes": torch.tensor([[2.0, 2.0, 12.0, 10.0]]), "labels": torch.tensor([1]),
            "area": torch.tensor([80.0]), "iscrowd": torch.tensor([0])}


def _batch(ids: list[int], height: int = 20, width: int = 30) -> tuple[tuple, tuple]:
    return tuple(torch.rand(3, height, width) for _ in ids), tuple(_target(i) for i in ids)


class BoxEcho(nn.Module):
    """Stands in for a box detector in eval mode: each image's first target box, as one detection; records the
    training flag and inference mode its forward ran under."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(1, 1)
        self.seen: list[tuple[bool, bool]] = []

    def forward(self, images):
        self.seen.append((self.training, torch.is_inference_mode_enabled()))
        return [{"boxes": torch.tensor([[2.0, 2.0, 12.0, 10.0]]), "scores": torch.tensor([0.9]),
                 "labels": torch.tensor([1])} for _ in images]


def _outputs(n: int) -> list[dict]:
    return [{"boxes": torch.tensor([[2.0, 2.0, 12.0, 10.0]]), "scores": torch.tensor([0.9]),
             "labels": torch.tensor([1])} for _ in range(n)]


def _val_loader(count: int = 6) -> DataLoader:
    ds = Subset(PennFudanDataset(FIXTURES / "pennfudan" / "val", evaluation()), range(count))
    return DataLoader(ds, batch_size=2, collate_fn=collate_fn)


def test_reset_forgets_the_images_processed_before_it():
    ev = COCOEvaluator(["bbox"], console=False)
    ev.process(_batch([1, 2]), _outputs(2))
    ev.reset()
    ev.process(_batch([3]), _outputs(1))
    assert [im["id"] for im in ev.ground_truth.images] == [3]
    assert [d["image_id"] for d in ev.detections["bbox"]] == [3]


def test_process_accumulates_ground_truth_and_detections_image_by_image():
    ev = COCOEvaluator(["bbox"], console=False)
    ev.process(_batch([5, 6], height=20, width=30), _outputs(2))
    ev.process(_batch([7], height=16, width=24), _outputs(1))
    assert ev.ground_truth.images == [{"id": 5, "height": 20, "width": 30}, {"id": 6, "height": 20, "width": 30},
                                      {"id": 7, "height": 16, "width": 24}]
    assert [a["image_id"] for a in ev.ground_truth.annotations] == [5, 6, 7]
    assert [d["image_id"] for d in ev.detections["bbox"]] == [5, 6, 7]


def _old_evaluate(model: nn.Module, loader: DataLoader) -> CocoResult:
    """The inference loop ``engine.loops.evaluate`` ran before the evaluator existed (one thread)."""
    types = iou_types(model)
    gt, dets = GroundTruth(), {t: [] for t in types}
    for target, output, (h, w) in predict(model, loader, "cpu"):
        gt.add(target["image_id"], h, w, target)
        for t in types:
            dets[t] += detections_to_coco(target["image_id"], output, t)
    return score(gt, dets)


def test_evaluate_gives_the_old_evaluates_stats_on_the_trained_model():
    model = golden.trained_model()
    old = _old_evaluate(model, _val_loader())
    new = inference_on_dataset(model, _val_loader(), COCOEvaluator(iou_types(model), console=False), threads=1)
    assert isinstance(new, CocoResult)
    assert old.stats["bbox"][0] > 0.3 and old.stats["segm"][0] > 0.3
    assert new.stats == old.stats
    assert loops.evaluate(model, _val_loader(), "cpu").stats == old.stats


def test_inference_on_dataset_restores_each_modules_training_flag():
    model = BoxEcho().train()
    model.head.eval()
    inference_on_dataset(model, [_batch([1, 2])], COCOEvaluator(["bbox"], console=False))
    assert model.training and not model.head.training


def test_the_model_runs_in_eval_mode_under_inference_mode():
    def plain(model, loader, device, threads):
        """Runs the model as it is: no eval mode, no inference mode of its own."""
        for images, targets in loader:
            yield images, targets, model(list(images)), 0.0

    model = BoxEcho().train()
    inference_on_dataset(model, [_batch([1])], COCOEvaluator(["bbox"], console=False), run_batches=plain)
    assert model.seen == [(False, True)]


def test_a_box_only_model_is_scored_on_boxes_with_the_mask_models_box_stats():
    masks = inference_on_dataset(golden.trained_model(), _val_loader(),
                                 COCOEvaluator(["bbox", "segm"], console=False), threads=1)
    model = make_box_only(golden.trained_model())
    boxes = inference_on_dataset(model, _val_loader(), COCOEvaluator(iou_types(model), console=False), threads=1)
    assert list(boxes.stats) == ["bbox"]
    assert boxes.stats["bbox"] == masks.stats["bbox"]


def test_without_console_no_line_is_written(caplog):
    caplog.set_level(logging.INFO, logger="reference.engine.loops")
    inference_on_dataset(BoxEcho(), [_batch([1])], COCOEvaluator(["bbox"], console=False), console=False)
    quiet = [r.getMessage() for r in caplog.records]
    caplog.clear()
    inference_on_dataset(BoxEcho(), [_batch([1])], COCOEvaluator(["bbox"]))
    written = "\n".join(r.getMessage() for r in caplog.records)
    assert quiet == []
    assert "Test:  [0/1]" in written and "Averaged stats: model_time" in written and "IoU metric: bbox" in written


def test_a_custom_evaluator_gets_every_batch_after_a_reset():
    class Counter(DatasetEvaluator):
        def __init__(self):
            self.count = -100  # reset must run first

        def reset(self):
            self.count = 0

        def process(self, inputs, outputs):
            self.count += len(outputs)

        def evaluate(self):
            return self.count

    assert inference_on_dataset(BoxEcho(), [_batch([1, 2]), _batch([3])], Counter()) == 3
