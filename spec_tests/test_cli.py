"""The command line: validate's exit codes, JSON and pictures; one-line errors with exit code 2."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from PIL import Image
from torch.utils.data import Subset

from reference.cli import main
from reference.datasets import PennFudanDataset
from reference.models import build_model
from reference.training import FitConfig, fit, get_recipe
from reference.transforms import evaluation, tutorial

from .conftest import FIXTURES, ROOT

TUTORIAL_V2 = f"{ROOT / 'spec_tests' / 'tutorial_datasets.py'}:TutorialPennFudanV2"


def test_validate_a_clean_folder_exits_zero(capsys):
    assert main(["--quiet", "validate", str(FIXTURES / "pennfudan" / "val"), "--num-classes", "2"]) == 0
    assert "40 samples checked: 0 errors, 0 warnings" in capsys.readouterr().out


def test_validate_a_broken_dataset_exits_one_and_writes_json_and_pictures(tmp_path, capsys):
    code = main(["--quiet", "validate", TUTORIAL_V2, "--arg", f"root={FIXTURES / 'pennfudan' / 'val'}",
                 "--arg", "alter='label0'", "--max-samples", "3", "--json", str(tmp_path / "r.json"),
                 "--render", str(tmp_path / "png")])
    assert code == 1
    out = capsys.readouterr().out
    assert "LABEL_BACKGROUND [error]" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["summary"]["samples"] == 3 and report["summary"]["errors"] >= 3
    v = report["violations"][0]
    assert set(v) >= {"code", "severity", "index", "field", "instance", "message"}
    assert v["code"] == "LABEL_BACKGROUND" and v["field"] == "labels" and v["index"] == 0
    assert set(report["statistics"]) >= {"instances_per_class", "boxes_per_image", "box_size_buckets", "empty_images"}
    pictures = sorted((tmp_path / "png").glob("*.png"))
    assert [p.name for p in pictures] == ["sample_00000.png", "sample_00001.png", "sample_00002.png"]
    with Image.open(pictures[0]) as im:
        assert im.width >= 320


def test_model_ready_mode_rejects_uint8_images(capsys):
    args = ["--quiet", "validate", str(FIXTURES / "pennfudan" / "val"), "--max-samples", "2"]
    assert main(args) == 0
    assert main(args + ["--model-ready"]) == 1
    assert "IMAGE_DTYPE" in capsys.readouterr().out
    assert main(args + ["--model-ready", "--transforms", "eval"]) == 0


def test_strict_makes_warnings_fail(tmp_path, capsys):
    spec = tmp_path / "ds.py"
    spec.write_text(
        "import torch\n"
        "def make():\n"
        "    t = {'boxes': torch.tensor([[0., 0., 4., 4.]]), 'labels': torch.tensor([1]), 'image_id': 0,\n"
        "         'area': torch.tensor([16.]), 'iscrowd': torch.tensor([0]), 'score': torch.tensor([1.])}\n"
        "    return [(torch.zeros(3, 8, 8), t)]\n")
    assert main(["--quiet", "validate", f"{spec}:make"]) == 0
    assert main(["--quiet", "validate", f"{spec}:make", "--strict"]) == 1


@pytest.mark.parametrize("spec,match", [("no/such/file.py:X", "no such file"), ("json:nothing", "no attribute"),
                                        ("not_a_module_xyz:X", "cannot import module")])
def test_a_dataset_that_cannot_be_loaded_exits_two_with_one_line(spec, match, capsys):
    assert main(["validate", spec]) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and "\n" not in err and "Traceback" not in err


def test_label_out_of_range_uses_num_classes(capsys):
    args = ["--quiet", "validate", str(FIXTURES / "coco"), "--num-classes", "2"]
    assert main(args) == 1
    assert "LABEL_OUT_OF_RANGE" in capsys.readouterr().out


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt")
    train = Subset(PennFudanDataset(FIXTURES / "pennfudan" / "train", tutorial(True)), range(4))
    val = Subset(PennFudanDataset(FIXTURES / "pennfudan" / "val", evaluation()), range(2))
    torch.manual_seed(0)
    fit(build_model("small_maskrcnn", 2), train, val,
        FitConfig("small_maskrcnn", 2, replace(get_recipe("ci"), epochs=1), 1, print_freq=100), out)
    return out / "last.pt"


def test_predict_draws_a_png_at_the_source_resolution(checkpoint, tmp_path, capsys):
    image = FIXTURES / "pennfudan" / "val" / "PNGImages" / "FudanPed00001.png"
    out = tmp_path / "pred.png"
    assert main(["predict", "--checkpoint", str(checkpoint), "--image", str(image), "--out", str(out),
                 "--score-threshold", "0.0"]) == 0
    with Image.open(out) as im:
        assert im.width == 160 * 3
    assert "detections drawn" in capsys.readouterr().out


def test_evaluate_prints_the_table_and_writes_json(checkpoint, tmp_path, capsys):
    assert main(["--quiet", "evaluate", "--checkpoint", str(checkpoint), "--data", str(FIXTURES / "pennfudan"),
                 "--json", str(tmp_path / "e.json")]) == 0
    out = capsys.readouterr().out
    assert "IoU metric: bbox" in out and "IoU metric: segm" in out
    assert set(json.loads((tmp_path / "e.json").read_text())["stats"]) == {"bbox", "segm"}


def test_a_checkpoint_for_another_class_count_is_refused(checkpoint, capsys):
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(FIXTURES / "coco")]) == 2
    assert "3 classes, the checkpoint's model has 2" in capsys.readouterr().err


@pytest.mark.parametrize("argv,match", [
    (["evaluate", "--checkpoint", "{tmp}/x.pt", "--data", "{fix}"], "no such checkpoint"),
    (["train", "--data", "{fix}", "--out", "{tmp}/o", "--device", "cuda"], "CUDA is not available"),
    (["train", "--data", "{tmp}", "--out", "{tmp}/o"], "no known layout"),
    (["train", "--data", "{fix}", "--out", "{tmp}/o", "--weights", "DEFAULT"], "no pretrained weights"),
])
def test_bad_input_exits_two_with_a_one_line_error(argv, match, tmp_path, capsys):
    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("this machine has CUDA, so --device cuda is valid")
    argv = [a.format(tmp=tmp_path, fix=FIXTURES / "pennfudan") for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0]


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path, capsys):
    (tmp_path / "x.pt").write_bytes(b"\x80\x04garbage")
    assert main(["evaluate", "--checkpoint", str(tmp_path / "x.pt"), "--data", str(FIXTURES / "pennfudan")]) == 2
    assert "not a checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["train", "--data", "x", "--out", "y", "--model", "yolo"],
                                  ["train", "--data", "x", "--out", "y", "--recipe", "fast"]])
def test_unknown_model_or_recipe_names_exit_two(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_env_reports_versions(capsys):
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    assert f"torch: {torch.__version__}" in out and "pycocotools: works" in out
