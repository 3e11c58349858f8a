"""Crowd regions (``iscrowd`` 1) as torchvision's references handle them: left out of what the model trains on
(their ``ConvertCocoPolysToMask`` keeps ``iscrowd == 0``), kept in the evaluation's ground truth, where
COCOeval treats them as regions to ignore."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn
from torchvision import tv_tensors

from reference.engine.loops import evaluate
from reference.app.datasets import split_datasets
from reference.app.train import TrainOptions, run_train
from reference.errors import JobError
from reference.testing.synthetic import generate
from reference.training.fit import get_recipe, transforms_for, validation_loss
from reference.transforms import PRESETS, DropCrowd, drop_crowd


def _target(h: int = 40, w: int = 60) -> dict:
    """Three instances, the middle one a crowd region; every per-instance field filled."""
    boxes = torch.tensor([[2.0, 2.0, 20.0, 20.0], [22.0, 5.0, 40.0, 30.0], [41.0, 10.0, 58.0, 38.0]])
    masks = torch.zeros(3, h, w, dtype=torch.uint8)
    for k, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
        masks[k, y1:y2, x1:x2] = 1
    return {"boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(h, w)),
            "labels": torch.tensor([1, 2, 1]), "masks": tv_tensors.Mask(masks),
            "area": torch.tensor([324.0, 450.0, 476.0]), "iscrowd": torch.tensor([0, 1, 0]),
            "keypoints": torch.arange(3 * 2 * 3, dtype=torch.float32).reshape(3, 2, 3), "image_id": 7}


def test_drop_crowd_leaves_crowd_instances_out_of_every_per_instance_field():
    t = _target()
    out = drop_crowd(t)
    keep = [0, 2]
    for key in ("boxes", "labels", "masks", "area", "iscrowd", "keypoints"):
        assert torch.equal(out[key].as_subclass(torch.Tensor), t[key].as_subclass(torch.Tensor)[keep]), key
    assert isinstance(out["boxes"], tv_tensors.BoundingBoxes) and out["boxes"].canvas_size == (40, 60)
    assert isinstance(out["masks"], tv_tensors.Mask) and out["image_id"] == 7
    assert t["iscrowd"].tolist() == [0, 1, 0]  # the input is not changed


def test_drop_crowd_returns_a_target_without_crowd_as_it_is():
    t = drop_crowd(_target())
    assert drop_crowd(t) is t


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_training_pipeline_drops_crowd_regions_first(preset):
    recipe = replace(get_recipe("ci"), transforms=preset)
    pipeline = transforms_for(recipe, train=True)
    assert isinstance(pipeline.transforms[0], DropCrowd)  # before any augmentation sees them
    image = torch.randint(0, 256, (3, 40, 60), dtype=torch.uint8)
    image = Image.fromarray(image.permute(1, 2, 0).numpy()) if preset == "tutorial-legacy" else tv_tensors.Image(image)
    _, out = pipeline(image, _target())
    assert out["iscrowd"].tolist() == [0] * len(out["labels"]) and len(out["labels"]) == len(out["boxes"])


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_evaluation_pipelines_keep_crowd_regions(preset):
    recipe = replace(get_recipe("ci"), transforms=preset)
    image = torch.randint(0, 256, (3, 40, 60), dtype=torch.uint8)
    image = Image.fromarray(image.permute(1, 2, 0).numpy()) if preset == "tutorial-legacy" else tv_tensors.Image(image)
    _, out = transforms_for(recipe, train=False)(image, _target())
    assert out["iscrowd"].tolist() == [0, 1, 0]


class _Records(nn.Module):
    """A stand-in detector: records the targets it is given and returns one loss (train) or fixed outputs."""

    def __init__(self, outputs: list[dict] | None = None):
        super().__init__()
        self.seen: list[dict] = []
        self.outputs = outputs or []

    def forward(self, images, targets=None):
        if self.training:
            self.seen += targets
            return {"loss": torch.tensor(1.0)}
        return [dict(o) for o in self.outputs[:len(images)]]


def test_validation_loss_leaves_crowd_regions_out_as_training_does():
    model = _Records()
    validation_loss(model, [((torch.zeros(3, 40, 60),), (_target(),))], torch.device("cpu"))
    assert [t["iscrowd"].tolist() for t in model.seen] == [[0, 0]]
    assert [t["labels"].tolist() for t in model.seen] == [[1, 1]]


def _evaluate_one(outputs: list[dict]):
    """``engine.evaluate`` of one image holding ``_target()`` (evaluation transforms: crowd kept)."""
    target = transforms_for(get_recipe("ci"), train=False)(tv_tensors.Image(torch.zeros(3, 40, 60, dtype=torch.uint8)),
                                                           _target())[1]
    return evaluate(_Records(outputs), [((torch.zeros(3, 40, 60),), (target,))], "cpu", inference_threads=1)


def _detections(boxes: list[list[float]], scores: list[float], labels: list[int]) -> dict:
    return {"boxes": torch.tensor(boxes), "scores": torch.tensor(scores), "labels": torch.tensor(labels)}


def test_evaluation_ground_truth_keeps_crowd_regions_flagged():
    result = _evaluate_one([_detections([[2.0, 2.0, 20.0, 20.0]], [0.9], [1])])
    anns = result.coco_gt.dataset["annotations"]
    assert [a["iscrowd"] for a in anns] == [0, 1, 0] and [a["category_id"] for a in anns] == [1, 2, 1]


def test_a_detection_matching_only_a_crowd_region_is_neither_a_true_nor_a_false_positive():
    """Class 2's only object is the crowd region. A class-2 detection on it, ranked first: no false positive
    (class 1's AP stays 1), and no true positive (class 2 has no object to recall, so it counts in no mean)."""
    objects = [[2.0, 2.0, 20.0, 20.0], [41.0, 10.0, 58.0, 38.0]]
    alone = _evaluate_one([_detections(objects, [0.8, 0.7], [1, 1])])
    with_crowd_hit = _evaluate_one([_detections([[22.0, 5.0, 40.0, 30.0], *objects], [0.95, 0.8, 0.7], [2, 1, 1])])
    assert with_crowd_hit.stats["bbox"][0] == pytest.approx(alone.stats["bbox"][0]) == pytest.approx(1.0, abs=1e-12)
    precision = with_crowd_hit.coco_eval["bbox"].eval["precision"]  # [T, R, K, A, M]; -1 where nothing to find
    assert (precision[:, :, 1] == -1).all()


def _crowded_coco(root: Path) -> Path:
    """train/ (4 scenes) and val/ (2 scenes) COCO splits whose first two annotations are crowd regions."""
    for split, count, seed in (("train", 4, 0), ("val", 2, 1)):
        path = generate("coco", root / split, count, seed, size=(96, 72)) / "annotations.json"
        doc = json.loads(path.read_text())
        for ann in doc["annotations"][:2]:
            ann["iscrowd"] = 1
        path.write_text(json.dumps(doc))
    return root


def test_a_coco_training_split_has_no_crowd_regions_and_its_validation_split_keeps_them(tmp_path):
    train, val, _ = split_datasets(_crowded_coco(tmp_path / "data"), None, get_recipe("ci"), seed=0)
    assert all(train[i][1]["iscrowd"].sum() == 0 for i in range(len(train)))
    assert sum(int(val[i][1]["iscrowd"].sum()) for i in range(len(val))) == 2


def test_train_logs_in_one_line_how_many_crowd_regions_it_leaves_out(tmp_path, caplog, monkeypatch):
    def stop(*args, **kwargs):
        raise JobError("stopped before training")

    monkeypatch.setattr("reference.app.train.fit", stop)
    data = _crowded_coco(tmp_path / "data")
    with caplog.at_level(logging.INFO, logger="reference.app.train"), pytest.raises(JobError, match="stopped"):
        run_train(TrainOptions(data=data, out=tmp_path / "run", epochs=1))
    said = [r.getMessage() for r in caplog.records if "crowd" in r.getMessage()]
    assert said == [f"{data / 'train'}: 2 crowd region(s) (iscrowd 1) left out of training, as torchvision's "
                    "references leave them out; evaluation keeps them as regions to ignore"]


def test_cvat_masks_written_with_iscrowd_1_are_read_as_objects_with_one_finding():
    from reference.data import CocoInstancesDataset

    from spec_tests.conftest import FIXTURES

    ds = CocoInstancesDataset(None, FIXTURES / "exports" / "cvat" / "annotations" / "instances_default.json")
    assert all(int(ds[i][1]["iscrowd"].sum()) == 0 for i in range(len(ds)))
    found = [v for v in ds.load_violations if v.field == "iscrowd"]
    assert len(found) == 1 and "1 masks written by CVAT/Datumaro" in found[0].message


def test_an_explicit_is_crowd_attribute_keeps_a_cvat_mask_a_crowd_region(tmp_path):
    import json

    from reference.data import CocoInstancesDataset

    from spec_tests.conftest import FIXTURES

    src = FIXTURES / "exports" / "cvat"
    doc = json.loads((src / "annotations" / "instances_default.json").read_text())
    for a in doc["annotations"]:
        if a["iscrowd"] == 1:
            a["attributes"]["is_crowd"] = True
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_default.json").write_text(json.dumps(doc))
    ds = CocoInstancesDataset(src / "images" / "default", tmp_path / "annotations" / "instances_default.json")
    assert sum(int(ds[i][1]["iscrowd"].sum()) for i in range(len(ds))) == 1
    assert not [v for v in ds.load_violations if v.field == "iscrowd"]
