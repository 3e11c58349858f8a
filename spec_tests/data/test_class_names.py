"""Class names end to end: training records the dataset's ``classes`` in the checkpoint and checkpoint.json,
``tvref predict`` and the demo's pictures label boxes with the checkpoint's names, and a checkpoint from before
names were recorded still predicts, labelled with class ids. Names that differ only in case or surrounding
whitespace stay separate classes with a warning, or are one class where ``merge_similar_names`` asks."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reference.app import checkpoints, demo, predict
from reference.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from reference.cli import main
from reference.data import DatasetError, LabelMeDataset, PennFudanDataset, open_dataset
from reference.engine.loops import EpochLog
from reference.training.fit import FitConfig, check_resumable, fit, get_recipe
from reference.transforms import evaluation

from spec_tests.conftest import FIXTURES

NAMES = ["background", "cat", "dog"]


@pytest.fixture
def no_training(monkeypatch) -> list[int]:
    """Each epoch's training replaced by a constant loss (no model runs); the epochs started are recorded."""
    started: list[int] = []

    def fake_epoch(model, optimizer, loader, device, epoch, *args, **kwargs):
        started.append(epoch)
        return EpochLog([{"loss": 1.0}], {"loss": 1.0})

    monkeypatch.setattr("reference.training.fit.train_one_epoch", fake_epoch)
    return started


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(2))


def _tiny_cfg(classes: list[str] | None, num_classes: int = 3) -> FitConfig:
    return FitConfig("tiny", num_classes, replace(get_recipe("ci"), epochs=1), epochs=1, seed=0, classes=classes)


def test_fit_records_the_class_names_in_the_checkpoint_and_checkpoint_json(tmp_path, no_training):
    fit(_Tiny(), list(range(4)), None, _tiny_cfg(NAMES), tmp_path)
    assert load_checkpoint(tmp_path / "last.pt")["classes"] == NAMES
    assert json.loads((tmp_path / "checkpoint.json").read_text())["classes"] == NAMES


def test_fit_refuses_class_names_that_are_not_one_per_class(tmp_path, no_training):
    with pytest.raises(ValueError, match=r"2 class names \['background', 'cat'\] for 3 classes"):
        fit(_Tiny(), list(range(4)), None, _tiny_cfg(NAMES[:2]), tmp_path)
    assert no_training == []


def test_resuming_with_other_class_names_is_refused_naming_them(tmp_path, no_training):
    fit(_Tiny(), list(range(4)), None, _tiny_cfg(NAMES), tmp_path)
    state = load_checkpoint(tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match=r"classes \['background', 'cat', 'dog'\] in the checkpoint, "
                                              r"\['background', 'dog', 'cat'\] now"):
        check_resumable(state, _tiny_cfg(["background", "dog", "cat"]), tmp_path / "last.pt")
    check_resumable(state, _tiny_cfg(None), tmp_path / "last.pt")  # names unknown now: nothing to compare


def test_tvref_train_records_the_datasets_class_names_in_checkpoint_and_report(tmp_path, no_training):
    data = tmp_path / "labelme"
    shutil.copytree(FIXTURES / "labelme", data)
    out = tmp_path / "run"
    assert main(["--quiet", "train", "--data", str(data), "--out", str(out), "--epochs", "1"]) == 0
    expected = ["background", "bottle", "person"]  # the LabelMe loader's classes for this folder
    assert load_checkpoint(out / "last.pt")["classes"] == expected
    assert json.loads((out / "checkpoint.json").read_text())["classes"] == expected
    assert json.loads((out / "report.json").read_text())["classes"] == expected


def test_tvref_train_merge_similar_names_trains_them_as_one_class(tmp_path, no_training):
    data = tmp_path / "labelme"
    shutil.copytree(FIXTURES / "labelme", data)
    doc = json.loads((data / "card_0000.json").read_text())
    doc["shapes"][0]["label"] = doc["shapes"][0]["label"].upper()  # "PERSON" beside "person"
    (data / "card_0000.json").write_text(json.dumps(doc))
    plain, merged = tmp_path / "plain", tmp_path / "merged"
    assert main(["--quiet", "train", "--data", str(data), "--out", str(plain), "--epochs", "1"]) == 0
    assert main(["--quiet", "train", "--data", str(data), "--out", str(merged), "--epochs", "1",
                 "--merge-similar-names", "case"]) == 0
    assert len(load_checkpoint(plain / "last.pt")["classes"]) == 4
    assert load_checkpoint(merged / "last.pt")["classes"] == ["background", "bottle", "person"]


# --- predictions ---------------------------------------------------------------------------------------------

def _checkpoint(path: Path, classes: list[str] | None, favoured: int = 2) -> Path:
    """An untrained small Mask R-CNN whose classifier always picks class ``favoured`` with a score of ~1, so
    every proposal is a detection of that class."""
    from reference.models import build_model

    torch.manual_seed(0)
    weights = build_model("small_maskrcnn", 3).state_dict()
    weights["roi_heads.box_predictor.cls_score.bias"][favoured] = 100.0
    state = {"model_name": "small_maskrcnn", "num_classes": 3, "recipe": "ci", "epoch": 1, "model": weights}
    if classes is not None:
        state["classes"] = classes
    save_checkpoint(path, state)
    return path


@pytest.fixture
def drawn_labels(monkeypatch) -> list[list[str]]:
    """The label texts ``tvref predict`` hands to the renderer, one list per picture drawn."""
    from reference.reporting import render

    seen: list[list[str]] = []
    original = render.draw_instances

    def recording(image, boxes, masks=None, labels=None, *args, **kwargs):
        seen.append(list(labels or []))
        return original(image, boxes, masks, labels, *args, **kwargs)

    monkeypatch.setattr(render, "draw_instances", recording)
    return seen


def _predict(tmp_path: Path, checkpoint: Path) -> int:
    image = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(image)
    return main(["--quiet", "predict", "--checkpoint", str(checkpoint), "--image", str(image),
                 "--out", str(tmp_path / "out.png")])


def test_predict_labels_boxes_with_the_checkpoints_class_names(tmp_path, drawn_labels):
    assert _predict(tmp_path, _checkpoint(tmp_path / "c.pt", NAMES)) == 0
    [labels] = drawn_labels
    assert labels and all(text.startswith("dog ") for text in labels), labels


def test_predict_labels_boxes_with_class_ids_for_a_checkpoint_without_names(tmp_path, drawn_labels):
    assert _predict(tmp_path, _checkpoint(tmp_path / "c.pt", None)) == 0
    [labels] = drawn_labels
    assert labels and all(text.startswith("2 ") for text in labels), labels


@pytest.mark.parametrize("classes", [["background", "cat"], "cat,dog", [1, 2, 3]])
def test_a_checkpoint_whose_names_do_not_fit_its_classes_is_labelled_with_ids(classes, caplog):
    state = {"num_classes": 3, "classes": classes}
    assert checkpoints.checkpoint_classes(state) is None
    assert "is not one name for each of its 3 classes" in caplog.text


def test_detection_labels_are_name_and_score():
    labels = predict.detection_labels(torch.tensor([2, 1]), torch.tensor([0.876, 0.5]), NAMES)
    assert labels == ["dog 0.88", "cat 0.50"]
    assert predict.detection_labels(torch.tensor([2]), torch.tensor([0.876]), None) == ["2 0.88"]


def test_demo_pictures_label_boxes_with_the_checkpoints_class_names(tmp_path, monkeypatch):
    seen: list[list[str] | None] = []
    original = demo.side_by_side

    def recording(image, target, output, *args, class_names=None, **kwargs):
        seen.append(class_names)
        return original(image, target, output, *args, class_names=class_names, **kwargs)

    monkeypatch.setattr(demo, "side_by_side", recording)
    checkpoint = _checkpoint(tmp_path / "c.pt", ["background", "pedestrian", "cyclist"])
    val = PennFudanDataset(FIXTURES / "pennfudan" / "val", evaluation())  # its own names: background, person
    [picture] = demo.write_prediction_pictures(checkpoint, val, tmp_path, count=1)
    assert seen == [["background", "pedestrian", "cyclist"]] and picture.is_file()


# --- names that differ only in case or surrounding whitespace (issue 24) -------------------------------------

def _near_duplicates(tmp_path: Path) -> Path:
    """The bundled LabelMe export with two bottles relabelled 'Bottle' and 'bottle ', as typed by hand."""
    from spec_tests import tool_exports

    root = tool_exports.write_labelme(tmp_path / "lm")
    for stem, k, label in (("scene_0", 2, "Bottle"), ("scene_2", 0, "bottle ")):
        doc = json.loads((root / f"{stem}.json").read_text())
        doc["shapes"][k]["label"] = label
        (root / f"{stem}.json").write_text(json.dumps(doc))
    return root


def _found(ds, code: str) -> list:
    return [v for v in ds.load_violations if v.code == code]


def test_labelme_labels_differing_in_case_or_whitespace_stay_classes_with_a_warning_naming_them(tmp_path):
    ds = LabelMeDataset(_near_duplicates(tmp_path))
    assert ds.class_names == ["Bottle", "bottle", "bottle ", "person"]
    (similar,) = _found(ds, "CLASS_NAME_SIMILAR")
    assert similar.severity == "warning"
    assert ("labels 'Bottle' (scene_0.json), 'bottle' (scene_0.json, scene_1.json, scene_2.json), 'bottle ' "
            "(scene_2.json) differ only in case or surrounding whitespace; they are 3 separate classes"
            in similar.message)
    assert "--merge-similar-names case" in similar.hint


def test_merge_similar_names_case_reads_them_as_one_class_named_by_the_most_used_spelling(tmp_path):
    ds = LabelMeDataset(_near_duplicates(tmp_path), merge_similar_names="case")
    assert ds.class_names == ["bottle", "person"]
    assert [len(e.labels) for e in ds.entries] == [3, 2, 3]  # as the untouched export
    (merged,) = _found(ds, "CLASS_NAMES_MERGED")
    assert merged.severity == "info" and "are read as one class 'bottle'" in merged.message
    assert _found(ds, "CLASS_NAME_SIMILAR") == []


def test_merge_similar_names_whitespace_keeps_names_differing_in_case_apart(tmp_path):
    ds = LabelMeDataset(_near_duplicates(tmp_path), merge_similar_names="whitespace")
    assert ds.class_names == ["Bottle", "bottle", "person"]
    assert "2 separate classes" in _found(ds, "CLASS_NAME_SIMILAR")[0].message


def test_a_given_class_list_matches_labels_after_merging(tmp_path):
    root = _near_duplicates(tmp_path)
    ds = open_dataset(root, classes=root / "labels.txt", merge_similar_names=True)
    assert ds.classes == ["background", "person", "bottle"] and not _found(ds, "LABEL_UNKNOWN")
    strict = open_dataset(root, classes=root / "labels.txt")
    unknown = _found(strict, "LABEL_UNKNOWN")
    assert len(unknown) == 2 and "differs from the class 'bottle' only in case" in unknown[0].hint


def test_a_class_list_naming_one_class_twice_once_merged_is_refused(tmp_path):
    with pytest.raises(DatasetError, match=r"'person' and 'Person ' are one class with merge_similar_names='case'"):
        LabelMeDataset(_near_duplicates(tmp_path), ["person", "Person "], merge_similar_names="case")


def _coco_categories(tmp_path: Path, names: list[str]) -> Path:
    root = tmp_path / "coco"
    (root / "images").mkdir(parents=True)
    Image.fromarray(np.zeros((20, 30, 3), dtype=np.uint8)).save(root / "images" / "a.png")
    anns = [{"id": k + 1, "image_id": 1, "category_id": k + 1, "bbox": [2 + k, 3, 10, 8], "area": 80.0,
             "iscrowd": 0} for k in range(len(names))]
    (root / "annotations.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "height": 20, "width": 30}],
        "categories": [{"id": k + 1, "name": n, "supercategory": ""} for k, n in enumerate(names)],
        "annotations": anns}))
    return root


def test_coco_categories_differing_in_case_or_whitespace_stay_classes_with_a_warning(tmp_path):
    ds = open_dataset(_coco_categories(tmp_path, ["person", "Person ", "car"]))
    assert ds.classes == ["background", "person", "Person ", "car"]
    (similar,) = _found(ds, "CLASS_NAME_SIMILAR")
    assert "categories 1 'person', 2 'Person ' differ only in case or surrounding whitespace" in similar.message


def test_coco_categories_merged_as_asked_are_one_class_under_the_lower_id(tmp_path):
    ds = open_dataset(_coco_categories(tmp_path, ["Person ", "person", "car"]), merge_similar_names="case")
    assert ds.classes == ["background", "Person", "car"]
    assert ds.cat_id_to_label == {1: 1, 2: 1, 3: 2} and ds.label_to_cat_id == {1: 1, 2: 3}
    assert ds[0][1]["labels"].tolist() == [1, 1, 2]
    assert [v.code for v in ds.load_violations] == ["CLASS_NAMES_MERGED"]
