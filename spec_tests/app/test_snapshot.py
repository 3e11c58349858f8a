"""Snapshots: ``tvref snapshot record`` / ``check`` and ``pytest --snapshot`` say whether a model's results changed."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from reference.app import snapshot as snap
from reference.training.checkpoint import load_checkpoint, save_checkpoint
from reference.cli import main
from reference.models import build_model

from spec_tests.conftest import FIXTURES, ROOT

DATA = FIXTURES / "pennfudan"
TRAINED = FIXTURES / "golden" / "small_maskrcnn_ci.pt"
TOL = snap.Tolerances(match_iou=0.5, box_atol=1.0, score_atol=0.01, mask_iou_min=0.9, ap_atol=0.01)


# ------------------------------------------------------------------------------------------- hand-made records


def _mask(x: int, y: int, size: int = 20, shape: tuple[int, int] = (64, 64)) -> dict:
    m = np.zeros(shape, dtype=np.uint8)
    m[y:y + size, x:x + size] = 1
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(m))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _dets(boxes, scores, labels=None, masks=None) -> dict:
    d = {"boxes": [list(map(float, b)) for b in boxes], "scores": list(scores),
         "labels": list(labels) if labels is not None else [1] * len(scores)}
    if masks is not None:
        d["masks"] = masks
    return d


def _record(*per_image: dict, ap: float = 0.5, floor: float | None = 0.05) -> dict:
    return {"format": snap.FORMAT, "versions": {"torch": "x"}, "tolerances": TOL.to_dict(), "score_floor": floor,
            "images": [{"index": i, "image_id": 100 + i, "detections": d} for i, d in enumerate(per_image)],
            "coco": {"bbox": {"AP": ap, "AP50": 0.8}}}


BASE = _dets([[10, 10, 30, 30], [40, 10, 60, 40]], [0.9, 0.6])


def test_identical_records_compare_ok():
    diff = snap.compare(_record(BASE, BASE), _record(BASE, BASE), TOL)
    assert diff.ok and diff.failures() == []
    assert sum(im.matched for im in diff.images) == 4
    assert "PASS" in diff.summary() and "images compared   2" in diff.summary()


def test_a_box_moved_beyond_box_atol_is_reported_with_its_numbers():
    moved = _dets([[10, 10, 30, 30], [42.5, 10, 60, 40]], [0.9, 0.6])
    diff = snap.compare(_record(BASE), _record(moved), TOL)
    assert not diff.ok
    (line,) = diff.failures()
    assert line.startswith("image 0 (id 100) expected detection 1 (label 1, score 0.6000): box moved 2.500 px > "
                           "box_atol 1.0")
    assert "expected [40.0, 10.0, 60.0, 40.0], actual [42.5, 10.0, 60.0, 40.0]" in line
    assert diff.images[0].max_box_drift == pytest.approx(2.5)
    assert "FAIL" in diff.summary()


def test_a_score_drift_beyond_score_atol_fails():
    drifted = _dets(BASE["boxes"], [0.9, 0.63])
    (line,) = snap.compare(_record(BASE), _record(drifted), TOL).failures()
    assert line.startswith("image 0 (id 100) expected detection 1 (label 1, score 0.6000): score expected 0.60000, "
                           "actual 0.63000, drift 0.03000 > score_atol 0.01")


def test_a_small_drift_within_tolerance_passes():
    near = _dets([[10.5, 10, 30, 30], [40, 10, 60.4, 40]], [0.905, 0.596])
    diff = snap.compare(_record(BASE), _record(near), TOL)
    assert diff.ok
    assert diff.images[0].max_box_drift == pytest.approx(0.5)
    assert diff.images[0].max_score_drift == pytest.approx(0.005)


def test_a_lost_and_a_new_detection_are_both_named():
    # the second detection moves far away: it no longer pairs, so it is lost at its old place and new elsewhere
    actual = _dets([[10, 10, 30, 30], [100, 80, 120, 110]], [0.9, 0.6])
    diff = snap.compare(_record(BASE), _record(actual), TOL)
    lost, new = diff.failures()
    assert lost.startswith("image 0 (id 100) expected detection 1 (label 1, score 0.6000, box [40.0, 10.0, 60.0, "
                           "40.0]): lost: no actual detection with label 1 at box IoU >= 0.5")
    assert new.startswith("image 0 (id 100) actual detection 1 (label 1, score 0.6000, box [100.0, 80.0, 120.0, "
                          "110.0]): new: no expected detection with label 1 at box IoU >= 0.5")
    assert diff.images[0].count_delta == 0


def test_a_label_change_does_not_pair():
    relabelled = _dets(BASE["boxes"], BASE["scores"], labels=[1, 2])
    diff = snap.compare(_record(BASE), _record(relabelled), TOL)
    lost, new = diff.failures()
    assert "expected detection 1 (label 1, score 0.6000, box [40.0, 10.0, 60.0, 40.0]): lost: no actual " \
           "detection with label 1" in lost
    assert "actual detection 1 (label 2, score 0.6000, box [40.0, 10.0, 60.0, 40.0]): new: no expected " \
           "detection with label 2" in new


def test_a_lost_detection_at_the_score_floor_is_borderline_and_passes():
    expected = _dets([[10, 10, 30, 30], [40, 10, 60, 40]], [0.9, 0.055])  # floor 0.05 + score_atol 0.01 = 0.06
    actual = _dets([[10, 10, 30, 30]], [0.9])
    diff = snap.compare(_record(expected), _record(actual), TOL)
    assert diff.ok
    assert len(diff.images[0].borderline) == 1 and diff.images[0].count_delta == -1
    assert "borderline        1" in diff.summary()
    # the same detection above the floor's margin fails
    expected["scores"][1] = 0.07
    assert not snap.compare(_record(expected), _record(actual), TOL).ok


def test_a_mask_iou_below_the_minimum_fails():
    expected = _dets([[10, 10, 30, 30]], [0.9], masks=[_mask(10, 10)])
    actual = _dets([[10, 10, 30, 30]], [0.9], masks=[_mask(15, 10)])  # 15x20 overlap of 25x20 union: IoU 0.6
    diff = snap.compare(_record(expected), _record(actual), TOL)
    (line,) = diff.failures()
    assert "mask IoU expected vs actual 0.6000 < mask_iou_min 0.9" in line
    assert diff.images[0].min_mask_iou == pytest.approx(0.6)
    assert snap.compare(_record(expected), _record(expected), TOL).images[0].min_mask_iou == 1.0


def test_an_ap_delta_beyond_ap_atol_fails():
    diff = snap.compare(_record(BASE, ap=0.5), _record(BASE, ap=0.47), TOL)
    assert diff.failures() == ["coco bbox AP: expected 0.5000, actual 0.4700, delta -0.0300 beyond ap_atol 0.01"]
    assert "-0.0300 (bbox AP)" in diff.summary()
    assert snap.compare(_record(BASE, ap=0.5), _record(BASE, ap=0.505), TOL).ok


def _every_kind_of_change() -> tuple[dict, dict]:
    """Expected and actual records of one image with one change of each kind: a box moved 3 px, a score moved
    0.05, a mask at IoU 0.6, a detection lost, one new, and bbox AP down 0.1; plus a borderline lost one."""
    expected = _dets([[10, 10, 30, 30], [40, 10, 60, 40], [10, 40, 30, 60], [70, 70, 90, 90], [40, 40, 60, 60]],
                     [0.9, 0.8, 0.7, 0.6, 0.055],
                     masks=[_mask(10, 10), _mask(40, 10), _mask(10, 40), _mask(40, 40), _mask(0, 0)])
    actual = _dets([[13, 10, 30, 30], [40, 10, 60, 40], [10, 40, 30, 60], [5, 5, 8, 8]], [0.9, 0.85, 0.7, 0.6],
                   masks=[_mask(10, 10), _mask(40, 10), _mask(15, 40), _mask(0, 0)])
    return _record(expected, ap=0.5), _record(actual, ap=0.4)


def test_a_failed_comparison_ends_with_the_count_of_each_kind_of_change():
    diff = snap.compare(*_every_kind_of_change(), TOL)
    assert diff.digest()[0] == "changed: 1 boxes, 1 scores, 1 masks, 1 lost, 1 new, 1 stats moved"


def test_the_largest_drifts_are_listed_by_amount_with_their_image_and_detection():
    # image 0: boxes moved 2, 5 and 3 px; image 1: 4 px; masks at IoU 0.8 (image 0) and 0.6 (image 1)
    e0 = _dets([[10, 10, 30, 30], [40, 10, 60, 40], [70, 10, 90, 40]], [0.9, 0.8, 0.7],
               masks=[_mask(10, 10), _mask(40, 10), _mask(0, 40)])
    a0 = _dets([[12, 10, 30, 30], [45, 10, 60, 40], [73, 10, 90, 40]], [0.9, 0.8, 0.7],
               masks=[_mask(12, 10), _mask(40, 10), _mask(0, 40)])
    e1 = _dets([[10, 10, 30, 30]], [0.95], masks=[_mask(10, 10)])
    a1 = _dets([[14, 10, 30, 30]], [0.95], masks=[_mask(15, 10)])
    digest = snap.compare(_record(e0, e1), _record(a0, a1), TOL).digest(top=3)
    assert digest[1:] == [
        "largest drifts:",
        "  box moved 5.000 px: image 0 (id 100) expected detection 1 (label 1, score 0.8000)",
        "  box moved 4.000 px: image 1 (id 101) expected detection 0 (label 1, score 0.9500)",
        "  box moved 3.000 px: image 0 (id 100) expected detection 2 (label 1, score 0.7000)",
        "  mask IoU 0.6000: image 1 (id 101) expected detection 0 (label 1, score 0.9500)",
        "  mask IoU 0.8182: image 0 (id 100) expected detection 0 (label 1, score 0.9000)",
    ]


def test_the_largest_stat_changes_are_listed_by_size():
    expected = _record(BASE)
    expected["coco"] = {"bbox": {"AP": 0.5, "AP50": 0.8, "AP75": 0.4, "APs": 0.3}}
    actual = _record(BASE)
    actual["coco"] = {"bbox": {"AP": 0.45, "AP50": 0.9, "AP75": 0.2, "APs": 0.305}}
    assert snap.compare(expected, actual, TOL).digest(top=2)[1:] == [
        "largest drifts:", "  coco bbox AP75: 0.4000 -> 0.2000 (-0.2000)",
        "  coco bbox AP50: 0.8000 -> 0.9000 (+0.1000)"]


def test_a_passing_comparison_adds_no_counts_or_drifts():
    near = _dets([[10.5, 10, 30, 30], [40, 10, 60.4, 40]], [0.905, 0.596])
    assert snap.compare(_record(BASE), _record(near), TOL).digest() == []


def test_records_of_different_images_are_a_problem_not_a_pass():
    other = _record(BASE)
    other["images"][0]["image_id"] = 7
    assert snap.compare(_record(BASE), other, TOL).failures() == [
        "image 0: expected image id 100, actual 7 (a different dataset or order)"]
    assert not snap.compare(_record(BASE, BASE), _record(BASE), TOL).ok


def test_tolerances_round_trip_and_refuse_unknown_keys():
    t = snap.Tolerances(box_atol=2.0)
    assert snap.Tolerances.from_dict(t.to_dict()) == t
    with pytest.raises(ValueError, match="unknown tolerance"):
        snap.Tolerances.from_dict({"box_tol": 1.0})


def test_detections_record_rounds_and_encodes_masks():
    out = {"boxes": torch.tensor([[1.23456, 2.0, 30.0, 40.0]]), "scores": torch.tensor([0.123456789]),
           "labels": torch.tensor([1]), "masks": torch.zeros(1, 1, 8, 6)}
    out["masks"][0, 0, 2:4, 1:3] = 0.5  # exactly at the threshold: kept (>=)
    rec = snap.detections_record(out)
    assert rec["boxes"] == [[1.235, 2.0, 30.0, 40.0]] and rec["scores"] == [0.12346] and rec["labels"] == [1]
    from pycocotools import mask as mask_utils

    assert rec["masks"][0]["size"] == [8, 6] and isinstance(rec["masks"][0]["counts"], str)
    assert int(mask_utils.area(rec["masks"][0])) == 4


# ------------------------------------------------------------------------------------------- real checkpoints


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """The trained fixture checkpoint when present, else a seeded random small Mask R-CNN (same format)."""
    if TRAINED.is_file():
        return TRAINED
    torch.manual_seed(0)
    model = build_model("small_maskrcnn", 2)
    path = tmp_path_factory.mktemp("snapshot") / "random.pt"
    save_checkpoint(path, {"model_name": "small_maskrcnn", "num_classes": 2, "recipe": "ci",
                           "model": model.state_dict()})
    return path


@pytest.fixture(scope="module")
def drifted(checkpoint, tmp_path_factory) -> Path:
    """The same checkpoint with the person class's box regression bias moved (boxes shift by ~10% of size)."""
    state = load_checkpoint(checkpoint)
    state.pop("format")
    bias = state["model"]["roi_heads.box_predictor.bbox_pred.bias"]
    bias[4:8] += torch.tensor([1.0, 1.0, 0.5, 0.5], dtype=bias.dtype)
    path = tmp_path_factory.mktemp("snapshot") / "drifted.pt"
    save_checkpoint(path, state)
    return path


@pytest.fixture(scope="module")
def snapshot_file(checkpoint, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("snapshot") / "snap.json"
    assert main(["--quiet", "snapshot", "record", "--checkpoint", str(checkpoint), "--data", str(DATA),
                 "--images", "4", "--out", str(path)]) == 0
    return path


def test_record_save_load_round_trips(snapshot_file, tmp_path):
    loaded = snap.load(snapshot_file)
    assert loaded["format"] == snap.FORMAT and len(loaded["images"]) == 4
    assert set(loaded["coco"]) == {"bbox", "segm"} and "AP" in loaded["coco"]["segm"]
    assert loaded["versions"]["torch"] == torch.__version__ and loaded["score_floor"] == 0.05
    assert snap.Tolerances.from_dict(loaded["tolerances"]) == snap.Tolerances()
    assert sum(len(im["detections"]["scores"]) for im in loaded["images"]) > 0
    again = tmp_path / "again.json"
    snap.save(again, loaded)
    assert snap.load(again) == loaded == json.loads(snapshot_file.read_text())


def test_check_on_the_same_checkpoint_exits_zero(snapshot_file, checkpoint, capsys):
    code = main(["--quiet", "snapshot", "check", str(snapshot_file), "--checkpoint", str(checkpoint),
                 "--data", str(DATA)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.startswith("snapshot check: PASS") and "images compared   4" in out and "- " not in out
    assert "changed:" not in out and "largest drifts" not in out


def test_a_drifted_model_fails_check_with_exit_one_naming_the_change(snapshot_file, drifted, capsys):
    code = main(["--quiet", "snapshot", "check", str(snapshot_file), "--checkpoint", str(drifted),
                 "--data", str(DATA)])
    out = capsys.readouterr().out
    assert code == 1
    assert out.startswith("- image 0 (id ") and "\nsnapshot check: FAIL\n" in out
    assert "px > box_atol 1.0: expected [" in out  # a matched detection's box, with both coordinate lists


def _check_output(snapshot_file: Path, ckpt: Path, capsys) -> list[str]:
    assert main(["--quiet", "snapshot", "check", str(snapshot_file), "--checkpoint", str(ckpt),
                 "--data", str(DATA)]) == 1
    return capsys.readouterr().out.splitlines()


def test_check_output_ends_with_the_counts_and_the_largest_drifts(snapshot_file, drifted, capsys):
    out = _check_output(snapshot_file, drifted, capsys)
    table_end = next(i for i, line in enumerate(out) if line.startswith("  largest AP delta"))
    tail = out[table_end + 1:]
    assert re.fullmatch(r"changed: [1-9]\d* boxes, \d+ scores, \d+ masks, \d+ lost, \d+ new, [1-9]\d* stats moved",
                        tail[0])
    assert tail[1] == "largest drifts:"
    boxes = [float(m[1]) for line in tail[2:] if (m := re.match(r"  box moved ([\d.]+) px: image \d+ \(id \d+\) "
                                                               r"expected detection \d+ \(label 1, score", line))]
    assert len(boxes) == 3 and boxes == sorted(boxes, reverse=True)
    assert boxes[0] == max(float(m[1]) for line in out if (m := re.search(r"box moved ([\d.]+) px >", line)))


def test_check_of_a_missing_snapshot_names_the_record_command_that_makes_it(checkpoint, tmp_path, capsys):
    path = tmp_path / "snap.json"
    assert main(["snapshot", "check", str(path), "--checkpoint", str(checkpoint), "--data", str(DATA),
                 "--format", "pennfudan"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {path}: no such snapshot file; record it with: tvref snapshot record ")
    command = shlex.split(line.split("record it with: ", 1)[1])
    assert command == ["tvref", "snapshot", "record", "--checkpoint", str(checkpoint), "--data", str(DATA),
                       "--format", "pennfudan", "--out", str(path)]
    assert main(["--quiet", *command[1:], "--images", "1"]) == 0  # the line as given makes the file
    assert main(["--quiet", "snapshot", "check", str(path), "--checkpoint", str(checkpoint), "--data", str(DATA),
                 "--format", "pennfudan"]) == 0


def test_record_refuses_to_overwrite(snapshot_file, checkpoint, capsys):
    before = snapshot_file.read_bytes()
    code = main(["snapshot", "record", "--checkpoint", str(checkpoint), "--data", str(DATA), "--images", "1",
                 "--out", str(snapshot_file)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(snapshot_file) in err[0] and "--overwrite" in err[0]
    assert snapshot_file.read_bytes() == before


@pytest.mark.parametrize("content,match", [(None, "no such snapshot file"), ("{not json", "invalid JSON"),
                                           ('{"format": "other/1"}', "format tag 'other/1'")])
def test_a_missing_or_garbage_snapshot_exits_two_naming_it(content, match, checkpoint, tmp_path, capsys):
    path = tmp_path / "snap.json"
    if content is not None:
        path.write_text(content)
    code = main(["snapshot", "check", str(path), "--checkpoint", str(checkpoint), "--data", str(DATA)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(path) in err[0] and match in err[0]
    assert "Traceback" not in err[0]


COMMITTED = FIXTURES / "golden" / "small_maskrcnn_ci.snap.json"


def test_the_trained_checkpoint_still_gives_its_committed_snapshot():
    """The suite's own upgrade check, as a user runs it: the trained fixture checkpoint on the first 20 bundled
    validation images, against a snapshot recorded once (torch 2.14.1) and committed. Its tolerances are tight
    (box 0.01 px, score 1e-4, mask IoU 0.99, every COCO stat 0.001): torch 2.1.2 and 2.5.1 reproduce it with
    zero drift (measured), while evaluation changes (mask threshold, box convention, ground-truth areas and ids)
    move the stats by far more."""
    expected = snap.load(COMMITTED)
    tol = snap.Tolerances.from_dict(expected["tolerances"])
    actual = snap.record_checkpoint(TRAINED, DATA, max_images=len(expected["images"]), tolerances=tol,
                                    batch_size=expected["batch_size"], mask_threshold=expected["mask_threshold"])
    diff = snap.compare(expected, actual, tol)
    assert diff.ok, "\n".join(diff.failures())


def _plugin_args(snapshot_file: Path, ckpt: Path) -> list[str]:
    """Arguments for an inner pytest run in this interpreter (torch imported once); pytest-randomly off so that
    it does not reseed this process's random generators."""
    return ["-p", "no:randomly", "--snapshot", str(snapshot_file), "--snapshot-checkpoint", str(ckpt),
            "--snapshot-data", str(DATA)]


def test_pytest_snapshot_passes_for_an_unchanged_model(pytester, snapshot_file, checkpoint):
    result = pytester.runpytest_inprocess(*_plugin_args(snapshot_file, checkpoint), "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*snapshot?snap.json?*PASSED*"])


def test_pytest_snapshot_fails_for_a_drifted_model(pytester, snapshot_file, drifted):
    result = pytester.runpytest_inprocess(*_plugin_args(snapshot_file, drifted))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*snap.json: * changes beyond tolerance:*", "*box moved*", "*snapshot check: FAIL*"])


def _failure_message(result) -> list[str]:
    """The lines of the inner run's one failure message, as the item wrote them (pytest's 2-space indent off)."""
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if line.startswith("___")) + 1
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("="))  # warnings or the short summary
    return [line[2:] if line.startswith("  ") else line for line in lines[start:end]]


def test_pytest_snapshot_reports_what_tvref_snapshot_check_prints(pytester, snapshot_file, drifted, capsys):
    printed = _check_output(snapshot_file, drifted, capsys)
    result = pytester.runpytest_inprocess(*_plugin_args(snapshot_file, drifted))
    message = _failure_message(result)
    assert re.fullmatch(r"snap\.json: \d+ changes beyond tolerance:", message[0])
    table = printed.index("snapshot check: FAIL")
    assert message[-(len(printed) - table):] == printed[table:]  # the summary table, counts and largest drifts


def test_a_missing_snapshot_fails_the_test_in_one_line_with_the_pytest_command_that_creates_it(
        pytester, checkpoint, tmp_path):
    path = tmp_path / "snap.json"
    args = ["--snapshot", str(path), "--snapshot-checkpoint", str(checkpoint), "--snapshot-data", str(DATA),
            "--snapshot-format", "pennfudan"]
    result = pytester.runpytest_inprocess("-p", "no:randomly", *args)
    result.assert_outcomes(failed=1)
    (line,) = _failure_message(result)
    assert line.startswith(f"{path}: no such snapshot file; create it with: pytest ")
    command = shlex.split(line.split("create it with: ", 1)[1].split(" (or: ", 1)[0])
    assert command == ["pytest", *args, "--snapshot-update"]
    pytester.runpytest_inprocess("-p", "no:randomly", *command[1:]).assert_outcomes(passed=1)
    pytester.runpytest_inprocess("-p", "no:randomly", *args).assert_outcomes(passed=1)


def test_a_missing_snapshot_fails_the_test_naming_the_tvref_command_that_creates_it(pytester, checkpoint, tmp_path):
    path = tmp_path / "snap.json"
    args = ["--snapshot", str(path), "--snapshot-checkpoint", str(checkpoint), "--snapshot-data", str(DATA)]
    (line,) = _failure_message(pytester.runpytest_inprocess("-p", "no:randomly", *args))
    command = shlex.split(line.split(" (or: ", 1)[1].removesuffix(")"))
    assert command == ["tvref", "snapshot", "record", "--checkpoint", str(checkpoint), "--data", str(DATA), "--out",
                       str(path)]
    assert main(["--quiet", *command[1:], "--images", "1"]) == 0
    pytester.runpytest_inprocess("-p", "no:randomly", *args).assert_outcomes(passed=1)


@pytest.fixture
def own_snapshot(snapshot_file, tmp_path) -> Path:
    """A copy of the module's snapshot (of the undrifted checkpoint) for a test to overwrite."""
    path = tmp_path / "snap.json"
    shutil.copyfile(snapshot_file, path)
    return path


def test_snapshot_update_re_records_the_file_instead_of_checking_it(pytester, own_snapshot, checkpoint, drifted):
    pytester.runpytest_inprocess(*_plugin_args(own_snapshot, drifted), "--snapshot-update").assert_outcomes(passed=1)
    pytester.runpytest_inprocess(*_plugin_args(own_snapshot, drifted)).assert_outcomes(passed=1)
    pytester.runpytest_inprocess(*_plugin_args(own_snapshot, checkpoint)).assert_outcomes(failed=1)


def test_snapshot_update_keeps_the_files_tolerances_image_count_and_mask_threshold(pytester, checkpoint, drifted,
                                                                                  tmp_path):
    path = tmp_path / "snap.json"
    assert main(["--quiet", "snapshot", "record", "--checkpoint", str(checkpoint), "--data", str(DATA), "--images",
                 "2", "--box-atol", "3.5", "--mask-iou-min", "0.5", "--out", str(path)]) == 0
    before = snap.load(path)
    before["mask_threshold"] = 0.4
    snap.save(path, before)
    pytester.runpytest_inprocess(*_plugin_args(path, drifted), "--snapshot-update").assert_outcomes(passed=1)
    after = snap.load(path)
    assert after["tolerances"] == before["tolerances"] and after["tolerances"]["box_atol"] == 3.5
    assert len(after["images"]) == 2 and after["mask_threshold"] == 0.4
    assert after["images"] != before["images"]  # re-recorded from the drifted checkpoint


def test_snapshot_update_of_a_missing_file_records_it_with_the_defaults_of_tvref_snapshot_record(
        pytester, checkpoint, tmp_path):
    path = tmp_path / "snap.json"
    pytester.runpytest_inprocess(*_plugin_args(path, checkpoint), "--snapshot-update").assert_outcomes(passed=1)
    written = snap.load(path)
    assert len(written["images"]) == 20 and snap.Tolerances.from_dict(written["tolerances"]) == snap.Tolerances()


def test_snapshot_update_names_the_file_it_wrote_in_the_terminal_summary(pytester, own_snapshot, drifted):
    result = pytester.runpytest_inprocess(*_plugin_args(own_snapshot, drifted), "--snapshot-update")
    result.stdout.fnmatch_lines(["*= model snapshot =*",
                                 f"{own_snapshot}: snapshot written, 4 images, * detections (tolerances and image "
                                 "count kept from the previous snapshot: * changes beyond tolerance)"])


def test_an_interrupted_snapshot_update_leaves_the_old_file_intact(pytester, own_snapshot, drifted, monkeypatch):
    before = own_snapshot.read_bytes()

    def killed(src, dst):
        raise OSError("killed before the rename")

    monkeypatch.setattr("reference.atomic_io.os.replace", killed)
    result = pytester.runpytest_inprocess(*_plugin_args(own_snapshot, drifted), "--snapshot-update")
    result.assert_outcomes(failed=1)
    assert own_snapshot.read_bytes() == before and sorted(own_snapshot.parent.iterdir()) == [own_snapshot]


def test_snapshot_update_refuses_to_replace_a_file_that_is_not_a_snapshot(pytester, checkpoint, tmp_path):
    path = tmp_path / "snap.json"
    path.write_text('{"format": "someone-elses/1"}')
    result = pytester.runpytest_inprocess(*_plugin_args(path, checkpoint), "--snapshot-update")
    assert result.ret == 4  # pytest's exit code for usage errors
    result.stderr.fnmatch_lines(["*--snapshot: *format tag 'someone-elses/1'*--snapshot-update replaces only a "
                                 "snapshot*"])
    assert path.read_text() == '{"format": "someone-elses/1"}'


def test_update_snapshot_leaves_a_file_that_is_not_a_snapshot_as_it_is(checkpoint, tmp_path):
    path = tmp_path / "snap.json"
    path.write_text('{"format": "someone-elses/1"}')
    with pytest.raises(snap.SnapshotError, match="format tag 'someone-elses/1'"):
        snap.update_snapshot(path, checkpoint, DATA)
    assert path.read_text() == '{"format": "someone-elses/1"}'


def test_snapshot_update_without_a_snapshot_is_a_usage_error(pytester):
    result = pytester.runpytest_inprocess("-p", "no:randomly", "--snapshot-update")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--snapshot-update: also give --snapshot FILE*"])


def test_the_plugin_module_itself_imports_no_torch():
    # the plugin file alone, under a stand-in package (reference/__init__.py itself imports the contract)
    code = ("import sys, types; pkg = types.ModuleType('reference'); pkg.__path__ = [sys.argv[1]]; "
            "sys.modules['reference'] = pkg; import reference.testing.pytest_plugin; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code, str(ROOT / "reference")], timeout=60).returncode == 0
