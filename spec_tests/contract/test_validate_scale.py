"""Validation at scale (#13): the header-only fast path gives the report decoding gives and decodes no image, and
steps aside where it cannot stand in; the damaged COCO folders of ``ci/datumaro_table.py`` get the codes its
README table shows; ``ci/validate_scale.py`` generates its folder deterministically."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference.cli import main
from reference.contract import headers_only_refusal, validate_dataset
from reference.data import PennFudanDataset, open_dataset
from reference.testing.synthetic import generate
from reference.transforms import get_preset

from spec_tests import tool_exports
from spec_tests.conftest import FIXTURES, ROOT


def _script(name: str):
    sys.path.insert(0, str(ROOT / "ci"))
    try:
        spec = importlib.util.spec_from_file_location(name, ROOT / "ci" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(ROOT / "ci"))


table = _script("datumaro_table")
scale = _script("validate_scale")


@pytest.fixture(scope="module")
def damaged(tmp_path_factory) -> dict[str, Path]:
    return table.build_cases(tmp_path_factory.mktemp("cases"))


def _no_decoding(monkeypatch, dataset) -> None:
    """From here on, ``dataset[i]`` (the only way a loader decodes an image) fails the test."""
    def decoded(self, idx):
        raise AssertionError(f"sample {idx} was decoded on the header-only path")
    monkeypatch.setattr(type(dataset), "__getitem__", decoded)


def _decoding_and_headers_reports(monkeypatch, dataset, **kw) -> tuple[dict, dict]:
    """The report decoding every image gives, then the header-only one, with decoding made to fail the test."""
    full = validate_dataset(dataset, **kw).to_dict()
    _no_decoding(monkeypatch, dataset)
    return full, validate_dataset(dataset, headers_only=True, **kw).to_dict()


@pytest.mark.parametrize("case", ["clean", *(c.name for c in table.CASES)])
def test_headers_only_gives_the_decoding_report_on_each_damaged_coco_folder(damaged, case, monkeypatch):
    full, fast = _decoding_and_headers_reports(monkeypatch, open_dataset(damaged[case]))
    assert fast == full


@pytest.mark.parametrize("export", ["labelme", "labelme2coco", "cvat", "roboflow/train"])
def test_headers_only_gives_the_decoding_report_on_each_tool_export(export, monkeypatch):
    # the labelme export has a file with inline imageData and no image file: its header is read from the JSON
    classes = FIXTURES / "exports" / "labelme" / "labels.txt"
    report, fast = _decoding_and_headers_reports(monkeypatch, open_dataset(FIXTURES / "exports" / export,
                                                                            classes=classes))
    assert fast == report and report["summary"]["samples"] >= 1


def _full_way(dataset):
    """The same dataset with no ``sample_summaries``: every sample built and checked in full (a local class: the
    callers skip the pickling check)."""
    class FullWay(type(dataset)):
        sample_summaries = None

    dataset.__class__ = FullWay
    return dataset


QUICK_CASES = ["clean", *(c.name for c in table.CASES)]


@pytest.mark.parametrize("headers_only", [False, True], ids=["decoding", "headers"])
@pytest.mark.parametrize("case", QUICK_CASES)
def test_the_quick_check_gives_the_full_checks_report_on_each_damaged_coco_folder(damaged, case, headers_only):
    quick = validate_dataset(open_dataset(damaged[case]), headers_only=headers_only, check_pickle=False).to_dict()
    full = validate_dataset(_full_way(open_dataset(damaged[case])), headers_only=headers_only,
                            check_pickle=False).to_dict()
    assert quick == full


@pytest.mark.parametrize("export", ["labelme2coco", "cvat", "roboflow/train"])
def test_the_quick_check_gives_the_full_checks_report_on_each_coco_tool_export(export):
    quick = validate_dataset(open_dataset(FIXTURES / "exports" / export), num_classes=3, check_pickle=False)
    full = validate_dataset(_full_way(open_dataset(FIXTURES / "exports" / export)), num_classes=3,
                            check_pickle=False)
    assert quick.to_dict() == full.to_dict()


@pytest.mark.parametrize("visibility", [2, 3], ids=["clean", "visibility-3"])
def test_the_quick_check_gives_the_full_checks_report_on_a_keypoints_export(tmp_path, visibility, monkeypatch):
    from reference.contract import traversal

    root = tool_exports.write_cvat_keypoints(tmp_path / "cvat")
    path = root / "annotations" / "person_keypoints_default.json"
    doc = json.loads(path.read_text())
    doc["annotations"][0]["keypoints"][2] = visibility
    path.write_text(json.dumps(doc))
    built = []
    real = traversal.check_sample
    monkeypatch.setattr(traversal, "check_sample", lambda *a, **k: built.append(1) or real(*a, **k))
    quick = validate_dataset(open_dataset(root), num_keypoints=3, check_pickle=False).to_dict()
    assert built == ([] if visibility == 2 else [1])  # a clean sample goes the quick way, a damaged one in full
    full = validate_dataset(_full_way(open_dataset(root)), num_keypoints=3, check_pickle=False).to_dict()
    assert quick == full


def test_the_quick_check_proves_clean_samples_and_leaves_damaged_ones_to_the_full_check(damaged, monkeypatch):
    from reference.contract import traversal

    built = []
    real = traversal.check_sample
    monkeypatch.setattr(traversal, "check_sample", lambda *a, **k: built.append(1) or real(*a, **k))
    validate_dataset(open_dataset(damaged["clean"]))
    assert built == []  # every clean sample went the quick way
    validate_dataset(open_dataset(damaged["area-x4"]))
    assert len(built) == 1  # the one sample whose area is 4 times its mask's went the full way


def test_the_quick_check_in_two_workers_gives_the_same_report(damaged):
    for case in ("clean", "area-x4", "box-out-of-bounds"):
        one = validate_dataset(open_dataset(damaged[case])).to_dict()
        assert validate_dataset(open_dataset(damaged[case]), workers=2).to_dict() == one


@pytest.mark.parametrize("flavour", ["v2", "legacy"])
def test_headers_only_gives_the_decoding_report_on_pennfudan(tmp_path, flavour, monkeypatch):
    root = generate("pennfudan", tmp_path / "pf", 3, seed=0, defect="mask-size")
    report, fast = _decoding_and_headers_reports(monkeypatch, PennFudanDataset(root, flavour=flavour))
    assert fast == report
    assert [v["code"] for v in report["violations"]] == ["GETITEM_FAILED"]  # the mask's size, found either way


def test_headers_only_in_worker_processes_gives_the_same_report(damaged):
    dataset = open_dataset(damaged["image-size-differs"])
    full = validate_dataset(dataset).to_dict()
    fast = validate_dataset(dataset, headers_only=True, workers=2).to_dict()
    assert fast == full and fast["summary"]["errors"] == 1


def test_headers_only_steps_aside_where_pixels_are_the_question(damaged, monkeypatch):
    plain = open_dataset(damaged["clean"])
    assert headers_only_refusal(plain) is None
    assert "model-ready" in headers_only_refusal(plain, model_ready=True)
    assert "duplicate images" in headers_only_refusal(plain, fingerprint=True)
    with_transforms = open_dataset(damaged["clean"], transforms=get_preset("eval", train=False))
    assert headers_only_refusal(with_transforms) == "transforms need the pixels"

    def no_headers(self, idx):
        raise AssertionError("header_sample used although the transforms need the pixels")
    monkeypatch.setattr(type(with_transforms), "header_sample", no_headers)
    assert validate_dataset(with_transforms, headers_only=True).ok


def test_a_corrupt_image_body_is_found_only_by_decoding(tmp_path):
    # the fast path's stated limit: a readable header over a truncated body
    folder = table.write_folder(tmp_path / "cut", *table.clean_doc(count=2))
    image = folder / "images" / table.SUBSET / "img_000.jpg"
    data = image.read_bytes()
    image.write_bytes(data[:len(data) // 2])
    dataset = open_dataset(folder)
    assert [v.code for v in validate_dataset(dataset).violations] == ["GETITEM_FAILED"]
    assert validate_dataset(dataset, headers_only=True).violations == []


def test_validate_headers_only_writes_the_json_report_decoding_writes(damaged, tmp_path):
    folder = str(damaged["box-out-of-bounds"])
    assert main(["--quiet", "validate", folder, "--json", str(tmp_path / "full.json")]) == 1
    assert main(["--quiet", "validate", folder, "--headers-only", "--json", str(tmp_path / "fast.json")]) == 1
    full = json.loads((tmp_path / "full.json").read_text())
    assert json.loads((tmp_path / "fast.json").read_text()) == full
    assert "BOX_OUT_OF_BOUNDS" in {v["code"] for v in full["violations"]}


# What each damaged folder of the Datumaro table must get from our validator (the table's "ours" column).
EXPECTED = {
    "duplicate-image-id": {"IMAGE_ENTRY_INVALID"},
    "bbox-length-3": {"ANNOTATION_INVALID"},
    "negative-width": {"ANNOTATION_INVALID"},
    "negative-height": {"ANNOTATION_INVALID"},
    "zero-size-box": {"ANNOTATION_DROPPED"},
    "nan-bbox": {"ANNOTATION_INVALID"},
    "nan-area": {"ANNOTATION_INVALID"},
    "box-out-of-bounds": {"BOX_OUT_OF_BOUNDS"},
    "iscrowd-2": {"ISCROWD_VALUES"},
    "missing-bbox": {"ANNOTATION_INVALID"},
    "missing-category": {"ANNOTATION_INVALID"},
    "missing-image-height": {"IMAGE_ENTRY_INVALID"},
    "rle-size-mismatch": {"ANNOTATION_INVALID"},
    "rle-bad-runs": {"ANNOTATION_INVALID"},
    "rle-garbage": {"ANNOTATION_INVALID"},
    "short-polygon": {"ANNOTATION_INVALID"},
    "area-x4": {"AREA_INCONSISTENT"},
    "unknown-category": {"ANNOTATION_INVALID"},
    "orphan-annotation": {"ANNOTATION_INVALID"},
    "duplicate-annotation-id": {"ANNOTATION_ID_DUPLICATE"},
    "image-size-differs": {"DECLARED_SIZE_MISMATCH"},
    "missing-image-file": {"GETITEM_FAILED"},
    "no-images": {"DATASET_EMPTY"},
}


def test_the_clean_folder_of_the_datumaro_table_is_clean(damaged):
    assert table.our_codes(table.run_ours(damaged["clean"])) == {}


@pytest.mark.parametrize("case", [c.name for c in table.CASES])
def test_each_damaged_folder_of_the_datumaro_table_gets_its_code(damaged, case):
    assert set(EXPECTED) == {c.name for c in table.CASES}
    codes = table.our_codes(table.run_ours(damaged[case]))
    assert EXPECTED[case] <= set(codes), codes


def test_datumaro_cells_show_what_a_case_adds_to_the_clean_folder():
    baseline = {"anomalies": ["UndefinedAttribute", "UndefinedAttribute"]}
    assert table.datumaro_cell({"anomalies": ["UndefinedAttribute"] * 2 + ["NegativeLength"]}, baseline) == \
        "NegativeLength"
    assert table.datumaro_cell({"anomalies": ["UndefinedAttribute"] * 2}, baseline) == "nothing"
    assert table.datumaro_cell({"crash": "DatasetImportError"}, baseline) == "crash (DatasetImportError)"


def test_the_scale_folder_is_the_same_bytes_for_the_same_seed_and_loads_with_masks(tmp_path):
    a = scale.generate(tmp_path / "a", 3, seed=5, size=(64, 48))
    b = scale.generate(tmp_path / "b", 3, seed=5, size=(64, 48))
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files and all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    dataset = open_dataset(a)
    assert dataset.has_masks and len(dataset) == 3
    assert validate_dataset(dataset).ok


# One defect at a time, at and around each threshold the quick check mirrors: the image's edges (with
# BOUNDS_EPS_PX), tiny and zero sizes, areas against the box and mask areas (AREA_REL_TOLERANCE + 1), masks off
# their box by about MASK_BOX_TOLERANCE_PX, empty masks, iscrowd values, labels past the head; the rest of the
# annotation clean, so that the defect alone decides which way the sample goes.
_NEAR = st.sampled_from([0.0, 0.0005, 0.002, 0.5, 1.0, 1.9, 2.1, 3.0])


@st.composite
def _annotation(draw, w: int, h: int) -> dict:
    x, y, bw, bh = 4.0, 3.0, 12.0, 9.0
    area_scale, shift, segm_kind, iscrowd, category = 1.0, 0.0, "polygon", 0, 1
    defect = draw(st.sampled_from(["none", "none", "none", "left", "top", "right", "bottom", "tiny", "area",
                                   "shift", "empty", "no-segmentation", "rle-empty", "iscrowd", "category"]))
    near = draw(_NEAR)
    if defect == "left":
        x = -near
    elif defect == "top":
        y = -near
    elif defect == "right":
        x, bw = w - bw + near, bw
    elif defect == "bottom":
        y, bh = h - bh + near, bh
    elif defect == "tiny":
        bw = draw(st.sampled_from([1e-7, 1e-3, 0.5]))
        segm_kind = draw(st.sampled_from(["polygon", "none"]))
    elif defect == "area":
        area_scale = draw(st.sampled_from([0.95, 0.94, 1.05, 1.06, 0.5, 4.0, 0.0, -1.0]))
    elif defect == "shift":
        shift = near * draw(st.sampled_from([1, -1]))
    elif defect == "empty":
        segm_kind = "point"
    elif defect == "no-segmentation":  # a box-only annotation, its area against its box alone
        segm_kind = "none"
        area_scale = draw(st.sampled_from([1.0, 0.95, 0.94, 1.05, 1.06, 4.0]))
    elif defect == "rle-empty":
        segm_kind = "rle"
    elif defect == "iscrowd":
        iscrowd = draw(st.sampled_from([1, 2]))
    elif defect == "category":
        category = 2
    if segm_kind == "polygon":  # the box, shifted
        segm = [[x + shift, y, x + bw + shift, y, x + bw + shift, y + bh, x + shift, y + bh]]
    elif segm_kind == "point":  # a polygon with no area: an empty mask
        segm = [[x, y, x, y, x, y]]
    elif segm_kind == "rle":
        segm = {"size": [h, w], "counts": [h * w]}  # all background
    else:
        segm = None
    ann = {"bbox": [x, y, bw, bh], "area": bw * bh * area_scale, "iscrowd": iscrowd, "category_id": category}
    if segm is not None:
        ann["segmentation"] = segm
    return ann


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_quick_check_agrees_with_the_full_check_at_every_threshold(damaged, tmp_path_factory, data):
    src = damaged["clean"]
    doc = json.loads(next((src / "annotations").glob("*.json")).read_text())
    image = doc["images"][0]
    anns = data.draw(st.lists(_annotation(image["width"], image["height"]), min_size=1, max_size=2))
    for k, a in enumerate(anns):
        a.update(id=k + 1, image_id=image["id"])
    root = tmp_path_factory.mktemp("quick")
    (root / "annotations").mkdir()
    (root / "images").symlink_to(src / "images")
    (root / "annotations" / "instances_default.json").write_text(json.dumps(
        {**doc, "images": [image], "annotations": anns}))
    num_classes = data.draw(st.sampled_from([None, 2, 3]))
    for headers_only in (False, True):
        quick = validate_dataset(open_dataset(root), headers_only=headers_only, num_classes=num_classes,
                                 check_pickle=False).to_dict()
        full = validate_dataset(_full_way(open_dataset(root)), headers_only=headers_only, num_classes=num_classes,
                                check_pickle=False).to_dict()
        assert quick == full


# --- ci/validate_scale.py's baselines, table and large mode (#22) -------------------------------------------------

baselines = _script("scale_baselines")


@pytest.fixture(scope="module")
def small_scale(tmp_path_factory) -> Path:
    return scale.generate(tmp_path_factory.mktemp("scale"), 20, seed=1, size=(64, 48))


def test_the_plain_decode_loop_decodes_every_image_of_the_folder(small_scale):
    done, seen, loop = scale.run_plain(small_scale, workers=1)  # its own process, one DataLoader worker
    assert seen == 20 and done.peak_mb > 0
    assert loop == json.loads(done.stdout.splitlines()[-1])["loop_seconds"]  # the loop's own timing, as printed
    paths = baselines.image_paths(scale.annotation_file(small_scale), small_scale / "images" / scale.SUBSET)
    decoded = baselines.decode(paths, workers=0)
    assert (decoded["samples"], decoded["pixels"]) == (20, 20 * 64 * 48) and type(decoded["loop_seconds"]) is float


def test_tvref_logs_its_sample_loop_and_the_script_reads_it(small_scale, tmp_path):
    done, loop = scale.run_tvref(small_scale, 1, False, tmp_path / "report.json")
    logged = re.search(r"checked 20 samples in (\S+) s \(1 workers\)", done.stderr)
    assert logged is not None and loop == float(logged.group(1))  # the logged loop, not the command's time
    assert json.loads((tmp_path / "report.json").read_text())["summary"]["errors"] == 0


def test_pycocotools_load_is_timed_in_its_own_process(small_scale):
    done, seconds = scale.run_coco(small_scale)
    doc = json.loads(scale.annotation_file(small_scale).read_text())
    reported = json.loads(done.stdout.splitlines()[-1])
    assert reported["annotations"] == len(doc["annotations"])
    assert seconds == reported["seconds"]  # the child's own timing of the COCO() call, not the command's


def _fake_runs(monkeypatch) -> list[tuple]:
    """The runners replaced by fixed times (tvref 10 s, the plain loop 8 s, 2 s of each outside the sample loop,
    COCO() 3 s): the table's assembly without starting a process."""
    calls = []

    def done(seconds: float) -> scale.Done:
        return scale.Done(seconds, 0, "", "", 50.0)

    def tvref(folder, workers, headers_only, report):
        calls.append(("tvref", workers, headers_only))
        report.write_text(json.dumps({"summary": {"errors": 0}}))
        seconds = (6.0 if headers_only else 10.0) / workers
        return done(seconds), seconds - 2.0

    def plain(folder, workers):
        calls.append(("plain", workers))
        return done(8.0 / workers), 20, 8.0 / workers - 2.0

    monkeypatch.setattr(scale, "run_tvref", tvref)
    monkeypatch.setattr(scale, "run_plain", plain)
    monkeypatch.setattr(scale, "run_coco", lambda folder: (calls.append(("coco",)) or done(5.0), 3.0))
    return calls


def test_the_table_has_the_plain_loop_the_coco_load_and_their_speedups(tmp_path, monkeypatch, capsys):
    calls = _fake_runs(monkeypatch)
    assert scale.main(["--count", "20", "--size", "64x48", "--out", str(tmp_path), "--skip-datumaro"]) == 0
    result = json.loads(next(tmp_path.glob("results-*.json")).read_text())
    rows = {(r["tool"], r["workers"]): r for r in result["runs"]}
    assert set(rows) == {(t, w) for t in (scale.DECODING, scale.HEADERS, scale.PLAIN) for w in (1, 2)} | {
        (scale.COCO_ROW, None)}
    assert rows[(scale.PLAIN, 2)]["startup_seconds"] == 2.0 and rows[(scale.COCO_ROW, None)]["seconds"] == 3.0
    assert rows[(scale.COCO_ROW, None)]["command_seconds"] == 5.0
    s = result["speedups"]
    assert s["decoding path over the plain decode loop, 1 worker(s)"] == pytest.approx(6.0 / 8.0)
    assert s["decoding path over the plain decode loop, 2 worker(s)"] == pytest.approx(2.0 / 3.0)
    assert s[f"{scale.PLAIN}: 2 workers over 1"] == pytest.approx(3.0)
    assert result["meta"]["cpu"] and ("plain", 2) in calls and rows[(scale.PLAIN, 2)]["loop_samples_per_s"] == 10.0
    text = capsys.readouterr().out
    assert f"| {scale.COCO_ROW} | - | 3.00 |" in text and "decoding path over the plain decode loop, 2" in text


def test_large_mode_measures_headers_only_and_the_coco_load_only(tmp_path, monkeypatch):
    calls = _fake_runs(monkeypatch)
    argv = ["--images", "30", "--instances", "200", "--size", "64x48", "--out", str(tmp_path)]
    assert scale.main(argv) == 0  # no Datumaro asked for: it is skipped in this mode
    result = json.loads(next(tmp_path.glob("results-*.json")).read_text())
    assert [(r["tool"], r["workers"]) for r in result["runs"]] == [(scale.HEADERS, 2), (scale.COCO_ROW, None)]
    assert result["runs"][0]["peak_rss_mb"] == 50.0
    assert result["meta"]["count"] == 30 and result["meta"]["instances"] == 200
    assert all(c[0] != "plain" and (c[0] != "tvref" or c[2]) for c in calls)
    assert result["speedups"] == {
        "pycocotools' COCO() load over the whole tvref --headers-only run, 2 worker(s)": pytest.approx(3.0 / 3.0)}


def test_the_large_generator_writes_the_declared_sizes_and_pycocotools_areas(tmp_path):
    from PIL import Image
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    folder = scale.generate_large(tmp_path / "a", 30, 200, seed=4, size=(64, 48), chunk=7)
    doc = json.loads(scale.annotation_file(folder).read_text())
    assert len(doc["images"]) == 30 and len(doc["annotations"]) == 200
    assert sorted(a["id"] for a in doc["annotations"]) == list(range(1, 201))
    for im in doc["images"]:
        with Image.open(folder / "images" / scale.SUBSET / im["file_name"]) as f:
            assert f.size == (im["width"], im["height"]) and f.format == "JPEG"
        assert max(im["width"], im["height"]) == 64 and min(im["width"], im["height"]) >= 36
    assert len({(im["width"], im["height"]) for im in doc["images"]}) > 1  # the sizes vary
    coco = COCO(str(scale.annotation_file(folder)))
    for ann in coco.anns.values():
        rle = coco.annToRLE(ann)
        assert 8 <= len(ann["segmentation"][0]) <= 16 and ann["area"] == float(mask_utils.area(rle)) > 0
        assert ann["bbox"] == [round(float(v), 2) for v in mask_utils.toBbox(rle)]
    report = validate_dataset(open_dataset(folder), headers_only=True, check_pickle=False)
    assert report.samples == 30 and report.to_dict()["summary"]["errors"] == 0


def test_the_large_generator_is_the_same_bytes_for_the_same_seed_and_reused(tmp_path):
    def files(folder: Path) -> dict[str, bytes]:
        return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}

    a = files(scale.generate_large(tmp_path / "a", 30, 200, seed=4, size=(64, 48), chunk=7))
    assert files(scale.generate_large(tmp_path / "b", 30, 200, seed=4, size=(64, 48), chunk=7)) == a
    assert files(scale.generate_large(tmp_path / "c", 30, 200, seed=5, size=(64, 48))) != a
    folder = scale.large_folder(tmp_path, 30, 200, 4, (64, 48))
    stamp = scale.annotation_file(folder).stat().st_mtime_ns
    assert scale.large_folder(tmp_path, 30, 200, 4, (64, 48)) == folder
    assert scale.annotation_file(folder).stat().st_mtime_ns == stamp  # found complete, not written again
