"""The command line's dataset options: ``validate --classes FILE|A,B``, ``--images DIR`` (a COCO image root),
``--val VAL`` (checks across two splits), ``--merge-similar-names`` and ``--strict`` failing on warnings, not on
infos."""

from __future__ import annotations

import json

from reference.cli import main

from spec_tests import tool_exports
from spec_tests.conftest import FIXTURES

EXPORTS = FIXTURES / "exports"


def test_validate_with_a_class_file_reports_a_label_outside_it(tmp_path, capsys):
    root = tool_exports.write_labelme(tmp_path / "lm")
    doc = json.loads((root / "scene_0.json").read_text())
    doc["shapes"][2]["label"] = "Person"
    (root / "scene_0.json").write_text(json.dumps(doc))
    code = main(["--quiet", "validate", str(root), "--classes", str(root / "labels.txt"),
                 "--json", str(tmp_path / "r.json")])
    assert code == 1
    report = json.loads((tmp_path / "r.json").read_text())
    unknown = [v for v in report["violations"] if v["code"] == "LABEL_UNKNOWN"]
    assert len(unknown) == 1 and unknown[0]["message"].startswith("scene_0.json shape 2: label 'Person'")
    assert report["statistics"]["classes"] == ["background", "person", "bottle"]


def test_validate_takes_a_coco_file_and_its_image_folder(capsys):
    ann = EXPORTS / "cvat" / "annotations" / "instances_default.json"
    assert main(["--quiet", "validate", str(ann), "--images", str(EXPORTS / "cvat" / "images" / "default"),
                 "--classes", "person,bottle"]) == 0
    assert "3 samples checked: 0 errors" in capsys.readouterr().out


def test_images_is_refused_for_a_spec_that_is_not_a_folder(capsys):
    assert main(["--quiet", "validate", "reference.data:PennFudanDataset", "--images", "x"]) == 2
    assert "--images apply to dataset folders" in capsys.readouterr().err


def test_validate_with_val_reports_the_second_split_and_across_them(tmp_path, capsys):
    code = main(["--quiet", "validate", str(EXPORTS / "roboflow" / "train"), "--val",
                 str(EXPORTS / "roboflow" / "valid"), "--json", str(tmp_path / "r.json"), "--workers", "0"])
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "r.json").read_text())
    assert set(report) == {"train", "val", "splits"}
    assert report["val"]["summary"]["samples"] == 1
    assert "validation split" in out and "across the splits" in out
    assert code == 0  # Roboflow's split has both classes and no shared picture: warnings at most


def test_validate_with_val_finds_a_shared_image_and_strict_fails_on_it(tmp_path, capsys):
    out = tool_exports.write_roboflow(tool_exports.write_labelme(tmp_path / "lm"), tmp_path / "rf",
                                      {"train": ["scene_0", "scene_2"], "valid": ["scene_2"]})
    code = main(["--quiet", "validate", str(out / "train"), "--val", str(out / "valid"), "--strict"])
    text = capsys.readouterr().out
    assert code == 1 and "SPLIT_DUPLICATE_IMAGE" in text and "the same pixels as training sample 1" in text


def test_a_roboflow_export_trains_on_train_and_validates_on_valid(tmp_path):
    """Roboflow writes train/, valid/ and test/; valid/ is the validation split (test/ is left alone)."""
    from reference.app.datasets import split_datasets
    from reference.training.fit import get_recipe

    out = tool_exports.write_roboflow(tool_exports.write_labelme(tmp_path / "lm"), tmp_path / "rf",
                                      {"train": ["scene_0", "scene_1"], "valid": ["scene_2"], "test": ["scene_1"]})
    train, val, num_classes = split_datasets(out, None, get_recipe("ci"), seed=0)
    assert (len(train), len(val), num_classes) == (2, 1, 3)
    assert val.root == out / "valid"


def test_both_val_and_valid_beside_train_are_refused_as_ambiguous(tmp_path, capsys):
    out = tool_exports.write_roboflow(tool_exports.write_labelme(tmp_path / "lm"), tmp_path / "rf",
                                      {"train": ["scene_0", "scene_1"], "valid": ["scene_2"], "val": ["scene_2"]})
    assert main(["--quiet", "train", "--data", str(out), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"--data {out}: both val/ and valid/ inside" in err and len(err.strip().splitlines()) == 1
    assert not any((tmp_path / "run").glob("*"))  # refused before training: nothing written


def test_train_classes_fix_the_class_ids_in_the_order_given(tmp_path):
    """labelme's labels.txt says person, bottle; without --classes the folder's labels are sorted (bottle first)."""
    from reference.app.datasets import dataset_classes, split_datasets
    from reference.training.fit import get_recipe

    root = tool_exports.write_labelme(tmp_path / "lm")
    named = {}
    for given in (None, str(root / "labels.txt")):
        train, _, num_classes = split_datasets(root, None, get_recipe("ci"), seed=0, classes=given)
        named[given is not None] = dataset_classes(train, num_classes)
    assert named == {False: ["background", "bottle", "person"], True: ["background", "person", "bottle"]}


def test_train_refuses_a_label_outside_classes_in_one_line_before_training(tmp_path, capsys):
    root = tool_exports.write_labelme(tmp_path / "lm")
    code = main(["--quiet", "train", "--data", str(root), "--classes", "person", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "label 'bottle' is not one of the classes ['person']" in err and "scene_" in err
    assert not any((tmp_path / "run").glob("*"))


def _relabelled(tmp_path, label: str = "Bottle"):
    root = tool_exports.write_labelme(tmp_path / "lm", no_area=False)  # no other warning
    doc = json.loads((root / "scene_0.json").read_text())
    doc["shapes"][2]["label"] = label
    (root / "scene_0.json").write_text(json.dumps(doc))
    return root


def test_validate_warns_about_labels_differing_only_in_case_and_strict_fails_on_it(tmp_path, capsys):
    root = _relabelled(tmp_path)
    assert main(["--quiet", "validate", str(root)]) == 0
    assert "CLASS_NAME_SIMILAR [warning] x1" in capsys.readouterr().out
    assert main(["--quiet", "validate", str(root), "--strict"]) == 1


def test_validate_merge_similar_names_reads_them_as_one_class(tmp_path, capsys):
    root = _relabelled(tmp_path)
    assert main(["--quiet", "validate", str(root), "--merge-similar-names", "case", "--strict",
                 "--json", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["statistics"]["classes"] == ["background", "bottle", "person"]
    assert [v["code"] for v in report["violations"]] == ["CLASS_NAMES_MERGED"]


def test_merge_similar_names_is_refused_for_a_spec_that_is_not_a_folder(capsys):
    assert main(["--quiet", "validate", "reference.data:PennFudanDataset", "--merge-similar-names", "case"]) == 2
    assert "--merge-similar-names and --images apply to dataset folders" in capsys.readouterr().err


def test_the_parsers_merge_modes_are_the_datasets():
    from reference import cli
    from reference.data import MERGE_MODES

    assert cli.MERGE_MODES == MERGE_MODES
