"""The command line: validate's exit codes, JSON and pictures; one-line errors with exit code 2."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from PIL import Image
from torch.utils.data import Subset

from reference.cli import main
from reference.data import PennFudanDataset
from reference.models import build_model
from reference.training.fit import FitConfig, fit, get_recipe
from reference.transforms import evaluation, tutorial

from spec_tests.conftest import FIXTURES, ROOT

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


def test_predict_draws_a_small_image_enlarged_a_whole_number_of_times_to_about_480_px(checkpoint, tmp_path, capsys):
    """A 160x128 scene is drawn 3 times as large (480x384, so that its labels are legible) under a caption band."""
    image = FIXTURES / "pennfudan" / "val" / "PNGImages" / "FudanPed00001.png"
    out = tmp_path / "pred.png"
    assert main(["predict", "--checkpoint", str(checkpoint), "--image", str(image), "--out", str(out),
                 "--score-threshold", "0.0"]) == 0
    with Image.open(image) as source, Image.open(out) as im:
        assert source.size == (160, 128)
        assert im.format == "PNG" and im.width == 160 * 3 and im.height > 128 * 3, im.size
    assert f"detections drawn to {out}" in capsys.readouterr().out


def _first_val_images(root, count):
    """A Penn-Fudan folder with a val/ split of the first ``count`` bundled validation scenes."""
    src = FIXTURES / "pennfudan" / "val"
    for image in sorted((src / "PNGImages").glob("*.png"))[:count]:
        mask = f"{image.stem}_mask.png"
        for sub, name in (("PNGImages", image.name), ("PedMasks", mask)):
            (root / "val" / sub).mkdir(parents=True, exist_ok=True)
            (root / "val" / sub / name).symlink_to(src / sub / name)
    return root


def test_evaluate_prints_the_table_and_writes_json(checkpoint, tmp_path, capsys):
    # two scenes, not the bundled split's 40 (the barely trained model pastes ~90 masks per scene, 10 s): both
    # tables and both stat sets appear whatever the count; the val/ subfolder is still the one found
    data = _first_val_images(tmp_path / "data", 2)
    assert main(["--quiet", "evaluate", "--checkpoint", str(checkpoint), "--data", str(data),
                 "--json", str(tmp_path / "e.json")]) == 0
    out = capsys.readouterr().out
    assert "IoU metric: bbox" in out and "IoU metric: segm" in out
    assert set(json.loads((tmp_path / "e.json").read_text())["stats"]) == {"bbox", "segm"}


def test_a_checkpoint_for_another_class_count_is_refused(checkpoint, capsys):
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(FIXTURES / "coco")]) == 2
    err = capsys.readouterr().err
    assert "3 classes, but the model in" in err and f"{checkpoint} has 2" in err


@pytest.mark.parametrize("argv,match", [
    (["evaluate", "--checkpoint", "{tmp}/x.pt", "--data", "{fix}"], "no such checkpoint"),
    (["train", "--data", "{fix}", "--out", "{tmp}/o", "--device", "cuda"], "CUDA is not available"),
    (["train", "--data", "{tmp}", "--out", "{tmp}/o"], "no known layout"),
    (["train", "--data", "{fix}", "--out", "{tmp}/o", "--weights", "DEFAULT"], "no COCO weights"),
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


# --- every bad input: one line naming the file, exit 2 ----------------------------------------------------------

def _labelme(tmp_path, doc, name="a.json", raw: bytes | None = None):
    root = tmp_path / "lm"
    root.mkdir(exist_ok=True)
    Image.new("RGB", (8, 8)).save(root / "a.png")
    (root / name).write_bytes(raw if raw is not None else json.dumps(doc).encode())
    return root


def _coco(tmp_path, edit):
    root = tmp_path / "coco"
    (root / "images").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / "images" / "a.png")
    doc = {"images": [{"id": 1, "file_name": "a.png", "height": 8, "width": 8}],
           "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4], "area": 16,
                            "iscrowd": 0, "segmentation": [[1, 1, 5, 1, 5, 5, 1, 5]]}],
           "categories": [{"id": 1, "name": "thing"}]}
    edit(doc)
    (root / "annotations.json").write_text(json.dumps(doc))
    return root


SHAPE = {"label": "card", "points": [[1, 1], [5, 1], [5, 5]], "shape_type": "polygon"}

# Files that cannot be read as their layout's document: the dataset cannot be built (validate exits 2).
UNREADABLE_FILES = {
    "labelme_list": (lambda t: _labelme(t, [SHAPE]), "a.json"),
    "labelme_not_utf8": (lambda t: _labelme(t, None, raw=b'{"imagePath": "a.png", "shapes": [], "x": "\xff\xfe"}'),
                         "a.json"),
    "labelme_malformed": (lambda t: _labelme(t, None, raw=b'{"imagePath": "a.png", "shapes": ['), "a.json"),
}
# Readable files holding a malformed annotation: left out and reported as ANNOTATION_INVALID (validate exits 1).
BROKEN_ANNOTATIONS = {
    "labelme_shape_not_a_dict": (lambda t: _labelme(t, {"imagePath": "a.png", "shapes": [5]}), "a.json"),
    "labelme_bad_points": (lambda t: _labelme(t, {"imagePath": "a.png", "shapes": [
        {**SHAPE, "points": [[1, 2, 3], [4, 5, 6], [7, 8, 9]]}]}), "a.json"),
    "coco_no_bbox": (lambda t: _coco(t, lambda d: d["annotations"][0].pop("bbox")), "annotations.json"),
    "coco_no_file_name": (lambda t: _coco(t, lambda d: d["images"][0].pop("file_name")), "annotations.json"),
    "coco_bbox_length": (lambda t: _coco(t, lambda d: d["annotations"][0].update(bbox=[1, 1, 4])),
                         "annotations.json"),
}
BAD_FOLDERS = {**UNREADABLE_FILES, **BROKEN_ANNOTATIONS}


@pytest.mark.parametrize("case", sorted(UNREADABLE_FILES))
def test_validate_exits_two_with_one_line_naming_an_unreadable_annotation_file(case, tmp_path, capsys):
    make, name = UNREADABLE_FILES[case]
    root = make(tmp_path)
    assert main(["--quiet", "validate", str(root)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and str(root / name) in lines[0] and "Traceback" not in lines[0], lines


@pytest.mark.parametrize("case", sorted(BROKEN_ANNOTATIONS))
def test_validate_exits_one_with_an_annotation_invalid_error_naming_the_file(case, tmp_path, capsys):
    make, name = BROKEN_ANNOTATIONS[case]
    root = make(tmp_path)
    assert main(["--quiet", "validate", str(root)]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    assert any("ERROR ANNOTATION_INVALID" in line and name in line for line in out.splitlines()), out


@pytest.mark.parametrize("case", sorted(BAD_FOLDERS))
def test_training_on_a_malformed_annotation_file_exits_two_with_one_line_naming_it(case, tmp_path, capsys):
    make, name = BAD_FOLDERS[case]
    root = make(tmp_path)
    assert main(["--quiet", "train", "--data", str(root), "--out", str(tmp_path / "out"), "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert str(root) in err[0] and name in err[0], err[0]


def _tiny_pennfudan(root, n=5):
    src = FIXTURES / "pennfudan" / "train"
    for sub in ("PNGImages", "PedMasks"):
        (root / sub).mkdir(parents=True)
    for image in sorted((src / "PNGImages").glob("*.png"))[:n]:
        (root / "PNGImages" / image.name).write_bytes(image.read_bytes())
        mask = image.stem + "_mask.png"
        (root / "PedMasks" / mask).write_bytes((src / "PedMasks" / mask).read_bytes())
    return root


def test_an_image_that_cannot_be_decoded_during_training_is_named_in_one_line(tmp_path, capsys):
    root = _tiny_pennfudan(tmp_path / "data")
    broken = sorted((root / "PNGImages").iterdir())[1]
    broken.write_bytes(broken.read_bytes()[:200])  # header intact, pixels cut off
    assert main(["--quiet", "train", "--data", str(root), "--out", str(tmp_path / "out"), "--epochs", "1"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if "Traceback" in ln or ln.startswith("error:")]
    assert len(err) == 1 and str(broken) in err[0], err  # (the one-batch warmup warning precedes it)


def test_a_raw_error_of_a_sample_during_training_names_the_sample(tmp_path, capsys, monkeypatch):
    from reference.data import PennFudanDataset

    original = PennFudanDataset.__getitem__

    def fails_at_2(self, idx):
        if idx == 2:
            raise KeyError("boxes")
        return original(self, idx)

    monkeypatch.setattr(PennFudanDataset, "__getitem__", fails_at_2)
    root = _tiny_pennfudan(tmp_path / "data")
    assert main(["--quiet", "train", "--data", str(root), "--out", str(tmp_path / "out"), "--epochs", "1"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if "Traceback" in ln or ln.startswith("error:")]
    assert len(err) == 1 and f"{root}: sample 2" in err[0] and "KeyError" in err[0], err


def test_a_single_image_folder_is_refused_for_training_in_one_line(tmp_path, capsys):
    root = _tiny_pennfudan(tmp_path / "data", n=1)
    assert main(["--quiet", "train", "--data", str(root), "--out", str(tmp_path / "out"), "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "training needs at least 2" in err[0], err


def test_a_dataset_whose_len_raises_exits_two_with_one_line(tmp_path, capsys):
    spec = tmp_path / "ds.py"
    spec.write_text("class D:\n    def __len__(self):\n        raise RuntimeError('index file missing')\n"
                    "    def __getitem__(self, i):\n        raise IndexError(i)\n")
    assert main(["validate", f"{spec}:D"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "len(dataset) raised RuntimeError: index file missing" in err[0], err


@pytest.mark.parametrize("value", ["-" * 100_000 + "1", "[" * 150 + "]" * 150, "x" * 1_000_000])
def test_a_huge_arg_exits_with_one_short_line(value, tmp_path, capsys):
    spec = tmp_path / "ds.py"
    spec.write_text("def make(v):\n    raise ValueError('not usable')\n")
    assert main(["validate", f"{spec}:make", "--arg", f"v={value}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and len(err[0]) < 400, err[0][:500]


def test_an_empty_checkpoint_exits_two_with_one_line(tmp_path, capsys):
    (tmp_path / "c.pt").write_bytes(b"")
    assert main(["evaluate", "--checkpoint", str(tmp_path / "c.pt"), "--data", str(FIXTURES / "pennfudan")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / "c.pt") in err[0] and "empty" in err[0], err


def test_verbose_shows_the_traceback(tmp_path):
    (tmp_path / "c.pt").write_bytes(b"")
    from reference.errors import JobError

    with pytest.raises(JobError, match="empty"):
        main(["--verbose", "evaluate", "--checkpoint", str(tmp_path / "c.pt"), "--data",
              str(FIXTURES / "pennfudan")])


# The timeout is the longest a clean sample may take, from a fresh worker process (forked from the test's) to its
# sample: 0.03-0.05 s measured in this suite's process, 100 times below it, so a loaded machine does not make a
# clean sample time out (with 1 s, a worker 1.5 s slow to start did). The hang outlasts the timeout by far but
# ends, so a timeout that is not enforced fails the test (sample 1 loads, nothing is reported) rather than
# stalling the run. The test waits TIMEOUT_S once, for the hanging sample.
TIMEOUT_S = 5
HANG_S = 120

HANGING = f"""
import time
import torch

class Hangs:
    def __len__(self):
        return 3

    def __getitem__(self, i):
        if i == 1:
            time.sleep({HANG_S})
        t = {{'boxes': torch.tensor([[0., 0., 4., 4.]]), 'labels': torch.tensor([1]), 'image_id': i,
             'area': torch.tensor([16.]), 'iscrowd': torch.tensor([0])}}
        return torch.zeros(3, 8, 8), t
"""


def test_validate_timeout_reports_a_hanging_sample_and_goes_on(tmp_path, capsys):
    spec = tmp_path / "hangs.py"
    spec.write_text(HANGING)
    code = main(["--quiet", "validate", f"{spec}:Hangs", "--timeout", str(TIMEOUT_S),
                 "--json", str(tmp_path / "r.json")])
    assert code == 1
    report = json.loads((tmp_path / "r.json").read_text())
    assert [(v["code"], v["index"]) for v in report["violations"]] == [("GETITEM_TIMEOUT", 1)]
    assert report["summary"]["samples"] == 3


def test_validate_shows_its_progress_bar_on_a_terminal_even_for_a_few_samples(monkeypatch, capsys):
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert main(["validate", str(FIXTURES / "pennfudan" / "val"), "--max-samples", "3"]) == 0
    assert "validating" in term.getvalue() and "3/3" in term.getvalue()


@pytest.mark.parametrize(("gate_lines", "gate_passed", "code"), [
    (["FAIL-safe task bbox AP: actual 0.61, expected 0.6 +/- 0.05"], True, 0),
    (["PASS bbox AP: actual 0.12, expected 0.6 +/- 0.05"], False, 1),
    (["not checked: FAILED to find rows for torch 9.9"], None, 0),
], ids=["passed-though-a-line-says-FAIL", "failed-though-a-line-says-PASS", "not-checked"])
def test_demo_exit_code_follows_the_gate_verdict_not_the_words_of_its_lines(gate_lines, gate_passed, code, tmp_path,
                                                                           monkeypatch, capsys):
    """The gate's lines are for people; the exit code comes from the run's recorded ``gate_passed``."""
    done = {"report": {"coco": {"bbox": {"AP": 0.6, "AP50": 0.9, "AP75": 0.6}}, "gate": gate_lines,
                       "gate_passed": gate_passed, "timings": {"train_seconds": 1.0}}, "paths": {}}
    monkeypatch.setattr("reference.app.demo.run_demo", lambda *args, **kwargs: done)
    assert main(["--quiet", "demo", "--out", str(tmp_path / "demo")]) == code
    assert f"gate: {gate_lines[0]}" in capsys.readouterr().out
