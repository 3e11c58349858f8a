"""A COCO set of boxes only (no segmentation) trains a box model: never a traceback, or a one-line refusal."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch

from reference.training.checkpoint import load_checkpoint, save_checkpoint
from reference.cli import main
from reference.app.checkpoints import load_model
from reference.models import build_model, iou_types, make_box_only, predicts_masks
from reference.testing.synthetic import generate

TRAIN_IMAGES, VAL_IMAGES, SIZE = 4, 2, (96, 72)


def write_coco(root: Path, count: int, seed: int, *, masks: bool) -> Path:
    """``count`` generated scenes as a COCO folder; without ``masks`` every annotation loses its segmentation
    (a box-only export)."""
    generate("coco", root, count, seed, size=SIZE)
    if not masks:
        path = root / "annotations.json"
        doc = json.loads(path.read_text())
        for ann in doc["annotations"]:
            del ann["segmentation"]
        path.write_text(json.dumps(doc))
    return root


def write_splits(root: Path, *, train_masks: bool, val_masks: bool) -> Path:
    """train/ and val/ COCO splits (seeds 0 and 1), each with or without masks."""
    write_coco(root / "train", TRAIN_IMAGES, 0, masks=train_masks)
    write_coco(root / "val", VAL_IMAGES, 1, masks=val_masks)
    return root


def train(argv: list[str]) -> tuple[int, str]:
    """``tvref train`` with ``argv`` for 1 epoch; exit code and what it wrote to stderr."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["train", *argv, "--epochs", "1"])
    return code, err.getvalue()


@pytest.fixture(scope="module")
def box_run(tmp_path_factory) -> dict:
    """One epoch of the default model (small_maskrcnn) on a box-only COCO set: data, run folder, exit code and
    stderr."""
    tmp = tmp_path_factory.mktemp("box_only")
    data = write_splits(tmp / "data", train_masks=False, val_masks=False)
    code, err = train(["--data", str(data), "--out", str(tmp / "run")])
    return {"data": data, "out": tmp / "run", "code": code, "err": err}


def test_train_on_box_only_coco_trains_a_box_model(box_run):
    assert box_run["code"] == 0, box_run["err"]
    state = load_checkpoint(box_run["out"] / "last.pt")
    assert state["box_only"] is True
    assert not any(k.startswith("roi_heads.mask_") for k in state["model"])
    assert any(k.startswith("roi_heads.box_predictor.") for k in state["model"])


def test_train_on_box_only_coco_says_so_in_one_log_line(box_run):
    said = [ln for ln in box_run["err"].splitlines() if "no masks" in ln]
    assert len(said) == 1 and str(box_run["data"] / "train") in said[0] and "box model" in said[0], said
    assert "Traceback" not in box_run["err"]


def test_a_box_only_run_reports_bbox_only(box_run):
    report = json.loads((box_run["out"] / "report.json").read_text())
    assert set(report["coco"]) == {"bbox"}


def test_box_only_checkpoint_loads_again_as_a_box_model(box_run):
    model, _ = load_model(box_run["out"] / "last.pt", torch.device("cpu"))
    assert not predicts_masks(model) and iou_types(model) == ["bbox"]


def test_box_only_checkpoint_evaluates_bbox_only(box_run, tmp_path, capsys):
    args = ["--quiet", "evaluate", "--checkpoint", str(box_run["out"] / "last.pt"), "--data", str(box_run["data"]),
            "--json", str(tmp_path / "e.json")]
    assert main(args) == 0
    assert "IoU metric: bbox" in capsys.readouterr().out
    assert set(json.loads((tmp_path / "e.json").read_text())["stats"]) == {"bbox"}


def test_box_only_checkpoint_predicts_boxes_without_masks(box_run, tmp_path, capsys):
    image = sorted((box_run["data"] / "val" / "images").glob("*.png"))[0]
    out = tmp_path / "pred.png"
    assert main(["predict", "--checkpoint", str(box_run["out"] / "last.pt"), "--image", str(image), "--out",
                 str(out), "--score-threshold", "0.0"]) == 0
    assert out.is_file() and "detections drawn" in capsys.readouterr().out
    model, _ = load_model(box_run["out"] / "last.pt", torch.device("cpu"))
    with torch.inference_mode():
        output = model([torch.rand(3, *SIZE[::-1])])[0]
    assert "masks" not in output and "boxes" in output


def test_resuming_a_box_only_run_on_data_with_masks_is_refused_in_one_line(box_run, tmp_path):
    data = write_splits(tmp_path / "masked", train_masks=True, val_masks=True)  # the same scenes, with masks
    code, err = train(["--quiet", "--data", str(data), "--out", str(tmp_path / "run"),
                       "--resume", str(box_run["out"] / "last.pt")])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert "box_only True in the checkpoint, False now" in lines[0]


def test_a_mask_checkpoint_evaluates_bbox_only_on_box_only_data(tmp_path, capsys):
    """A Mask R-CNN's checkpoint on data without masks: the boxes are evaluated (there is nothing to score
    masks against), said in one line."""
    data = write_coco(tmp_path / "data", VAL_IMAGES, 1, masks=False)
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "mask.pt", {"model_name": "small_maskrcnn", "num_classes": 2,
                                           "model": build_model("small_maskrcnn", 2).state_dict()})
    args = ["evaluate", "--checkpoint", str(tmp_path / "mask.pt"), "--data", str(data),
            "--json", str(tmp_path / "e.json")]
    assert main(args) == 0
    assert "no masks: evaluating the boxes" in capsys.readouterr().err
    assert set(json.loads((tmp_path / "e.json").read_text())["stats"]) == {"bbox"}


def test_a_validation_split_without_masks_is_refused_for_a_mask_model_before_training(tmp_path):
    data = write_splits(tmp_path / "data", train_masks=True, val_masks=False)
    code, err = train(["--quiet", "--data", str(data), "--out", str(tmp_path / "run")])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"error: {data / 'val'}: the annotations have no masks") and "Traceback" not in err
    assert not any((tmp_path / "run").glob("*"))  # refused before training: nothing written


def test_a_keypoint_model_on_targets_without_keypoints_is_refused_before_training(tmp_path):
    data = write_splits(tmp_path / "data", train_masks=False, val_masks=False)
    code, err = train(["--quiet", "--data", str(data), "--out", str(tmp_path / "run"),
                       "--model", "keypointrcnn_resnet50_fpn"])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert "no keypoints" in lines[0] and str(data / "train") in lines[0]
    assert not any((tmp_path / "run").glob("*"))


def test_make_box_only_after_standin_weights_trains_on_boxes_alone():
    """The bundled stand-in loaded first, then the mask branch removed: targets without masks train the box
    part, and no mask loss is computed."""
    model = make_box_only(build_model("small_maskrcnn", 2, "standin")).train()
    target = {"boxes": torch.tensor([[10.0, 10.0, 50.0, 60.0]]), "labels": torch.tensor([1])}
    losses = model([torch.rand(3, 72, 96)], [target])
    assert "loss_mask" not in losses and {"loss_classifier", "loss_box_reg"} <= set(losses)
    assert not any(k.startswith("roi_heads.mask_") for k in model.state_dict())


def test_a_mask_rcnn_made_box_only_is_evaluated_on_bbox_only():
    model = build_model("small_maskrcnn", 2)
    assert iou_types(model) == ["bbox", "segm"]
    assert iou_types(make_box_only(model)) == ["bbox"]
