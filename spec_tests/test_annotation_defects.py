"""Damaged COCO and LabelMe files: every defect is a violation naming file, annotation and field (or one line and
exit code 2 when the file cannot be read at all); nothing is dropped silently, nothing raises a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from reference.cli import main
from reference.contract import validate_dataset
from reference.datasets import CocoInstancesDataset, DatasetError, LabelMeDataset, open_dataset


def _coco(root: Path, annotations: list[dict], images: list[dict] | None = None,
          categories: list[dict] | None = None) -> Path:
    """A COCO folder: two 20 x 30 images and the given annotations."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((20, 30, 3), dtype=np.uint8)).save(root / "images" / name)
    doc = {"images": images if images is not None else [
               {"id": 1, "file_name": "a.png", "height": 20, "width": 30},
               {"id": 2, "file_name": "b.png", "height": 20, "width": 30}],
           "categories": categories or [{"id": 1, "name": "thing"}],
           "annotations": annotations}
    (root / "annotations.json").write_text(json.dumps(doc))
    return root


def _ann(i: int = 7, **kw) -> dict:
    return {"id": i, "image_id": 1, "category_id": 1, "bbox": [2, 3, 10, 8], "area": 80.0, "iscrowd": 0,
            "segmentation": [[2, 3, 12, 3, 12, 11, 2, 11]], **kw}


def _only(ds, code):
    found = [v for v in ds.load_violations if v.code == code]
    assert len(found) == 1, [str(v) for v in ds.load_violations]
    return found[0]


def _good_rle(h=20, w=30) -> dict:
    m = np.zeros((h, w), dtype=np.uint8)
    m[3:11, 2:12] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    return {"size": [h, w], "counts": rle["counts"].decode()}


@pytest.mark.parametrize("change,field,words", [
    ({"bbox": [2, 3, 10]}, "bbox", "is not 4 finite numbers"),
    ({"bbox": [2, 3, float("nan"), 8]}, "bbox", "is not 4 finite numbers"),
    ({"bbox": [12, 3, -10, 8]}, "bbox", "negative width (Datumaro: NegativeLength)"),
    ({"category_id": 9}, "category_id", "category_id 9 is not in 'categories'"),
    ({"image_id": 5}, "image_id", "image_id 5 is not in 'images'"),
    ({"segmentation": [[2, 3, 12, 3, 12]]}, "segmentation", "polygon 0 has 5 numbers"),
    ({"segmentation": {"size": [10, 30], "counts": "abc"}}, "segmentation", "RLE size [10, 30] differs"),
    ({"segmentation": {"size": [20, 30], "counts": [5, 10]}}, "segmentation", "runs summing to 15"),
    ({"segmentation": {"size": [20, 30], "counts": "\x7f\x7f"}}, "segmentation", "unreadable counts"),
    ({"area": "big"}, "area", "area 'big' is not a finite number"),
])
def test_a_malformed_annotation_is_an_error_naming_file_annotation_and_field(tmp_path, change, field, words):
    ds = open_dataset(_coco(tmp_path / "c", [_ann(), _ann(8, **change)]))
    v = _only(ds, "ANNOTATION_INVALID")
    assert v.severity == "error" and v.field == field
    assert v.message.startswith("annotations.json annotation 8") and words in v.message and "left out" in v.message
    assert sum(len(a) for a in ds.annotations) == 1  # the good one stays


@pytest.mark.parametrize("key", ["id", "image_id", "category_id", "bbox"])
def test_a_missing_key_is_named(tmp_path, key):
    bad = _ann(8)
    del bad[key]
    ds = open_dataset(_coco(tmp_path / "c", [bad]))
    v = _only(ds, "ANNOTATION_INVALID")
    assert v.field == key and repr(key) in v.message


def test_a_zero_size_box_is_a_dropped_annotation_warning_that_strict_fails(tmp_path, capsys):
    root = _coco(tmp_path / "c", [_ann(), _ann(8, bbox=[2, 3, 0, 8])])
    ds = open_dataset(root)
    v = _only(ds, "ANNOTATION_DROPPED")
    assert v.severity == "warning" and "zero width" in v.message and v.index == 0
    report = validate_dataset(ds)
    assert "ANNOTATION_DROPPED" in report.codes() and report.ok
    assert "ANNOTATION_DROPPED" in json.loads(report.to_json())["violations"][0]["code"]
    assert main(["--quiet", "validate", str(root)]) == 0
    assert main(["--quiet", "validate", str(root), "--strict"]) == 1
    assert "ANNOTATION_DROPPED [warning] x1" in capsys.readouterr().out


def test_duplicate_image_ids_use_neither_image_and_say_why(tmp_path):
    images = [{"id": 1, "file_name": "a.png", "height": 20, "width": 30},
              {"id": 1, "file_name": "b.png", "height": 20, "width": 30}]
    ds = open_dataset(_coco(tmp_path / "c", [_ann()], images=images))
    assert len(ds) == 0
    img = _only(ds, "IMAGE_ENTRY_INVALID")
    assert "image id 1 is used by 2 images (a.png, b.png)" in img.message
    ann = _only(ds, "ANNOTATION_INVALID")
    assert "image_id 1 is shared by a.png, b.png" in ann.message
    report = validate_dataset(ds)
    assert {"IMAGE_ENTRY_INVALID", "ANNOTATION_INVALID", "DATASET_EMPTY"} <= report.codes()


def test_duplicate_annotation_ids_are_an_error_and_both_stay(tmp_path):
    ds = open_dataset(_coco(tmp_path / "c", [_ann(7), _ann(7, bbox=[1, 1, 4, 4], segmentation=[])]))
    assert _only(ds, "ANNOTATION_ID_DUPLICATE").severity == "error"
    assert len(ds.annotations[0]) == 2


def test_a_good_compressed_rle_loads(tmp_path):
    ds = open_dataset(_coco(tmp_path / "c", [_ann(segmentation=_good_rle())]))
    assert ds.load_violations == []
    assert int(ds[0][1]["masks"][0].sum()) == 80


def test_background_category_annotations_are_dropped_with_a_warning(tmp_path):
    cats = [{"id": 0, "name": "_background_"}, {"id": 1, "name": "thing"}]
    ds = open_dataset(_coco(tmp_path / "c", [_ann(), _ann(8, category_id=0)], categories=cats))
    assert ds.classes == ["background", "thing"] and ds.cat_id_to_label == {1: 1}
    assert "is the background" in _only(ds, "ANNOTATION_DROPPED").message


def test_iscrowd_two_and_out_of_bounds_boxes_reach_the_contract(tmp_path):
    ds = open_dataset(_coco(tmp_path / "c", [_ann(iscrowd=2), _ann(8, bbox=[25, 3, 10, 8], segmentation=[])]))
    report = validate_dataset(ds)
    assert {"ISCROWD_VALUES", "BOX_OUT_OF_BOUNDS"} <= {v.code for v in report.errors}


def test_missing_area_and_iscrowd_are_filled_in_and_said(tmp_path):
    bad = _ann(8)
    del bad["area"], bad["iscrowd"]
    ds = open_dataset(_coco(tmp_path / "c", [bad]))
    repaired = [v.field for v in ds.load_violations if v.code == "ANNOTATION_REPAIRED"]
    assert repaired == ["iscrowd", "area"]
    _, t = ds[0]
    assert t["area"].tolist() == [float(t["masks"][0].sum())] and t["iscrowd"].tolist() == [0]


def test_an_empty_coco_dataset_fails_validation(tmp_path, capsys):
    root = _coco(tmp_path / "c", [], images=[])
    report = validate_dataset(open_dataset(root))
    assert [v.code for v in report.errors] == ["DATASET_EMPTY"]
    assert main(["--quiet", "validate", str(root)]) == 1


def test_an_unreadable_coco_file_is_one_line_and_exit_two(tmp_path, capsys):
    root = _coco(tmp_path / "c", [])
    (root / "annotations.json").write_text("{not json")
    assert main(["--quiet", "validate", str(root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "annotations.json: not a readable COCO JSON" in err[0]


def test_a_category_without_an_integer_id_is_one_line_and_exit_two(tmp_path, capsys):
    root = _coco(tmp_path / "c", [], categories=[{"id": "1", "name": "thing"}])
    assert main(["--quiet", "validate", str(root)]) == 2
    assert "categories[0]" in capsys.readouterr().err


def test_a_missing_image_file_names_the_file_and_the_root(tmp_path):
    root = _coco(tmp_path / "c", [_ann()])
    (root / "images" / "a.png").unlink()
    report = validate_dataset(open_dataset(root))
    failed = [v for v in report.errors if v.code == "GETITEM_FAILED"]
    assert len(failed) == 1 and "a.png is not under the image root" in failed[0].message



# --- Inputs that used to kill the interpreter inside pycocotools (found by the COCO fuzzer) -------------------

@pytest.mark.parametrize("polygon", [
    [2, 3, 1e30, 3, 12, 11],            # pycocotools' rleFrPoly allocates along the outline: segfault
    [2, 3, 12, 3, 1e308, 11],
    [2, 3, 12, -(10**30), 12, 11],       # a JSON integer beyond any C type
    [2, 3, 12, 3, 12, 11, 2, 4000],      # merely far: 200 image heights below
])
@pytest.mark.parametrize("with_area", [True, False], ids=["area-given", "area-computed-at-load"])
def test_a_polygon_vertex_far_outside_the_image_is_an_error_not_a_crash(tmp_path, polygon, with_area):
    bad = _ann(8, segmentation=[polygon])
    if not with_area:
        del bad["area"]
    ds = open_dataset(_coco(tmp_path / "c", [_ann(), bad]))
    v = _only(ds, "ANNOTATION_INVALID")
    assert v.field == "segmentation" and v.message.startswith("annotations.json annotation 8 on a.png")
    assert "polygon 0 has a vertex far outside the 30x20 image" in v.message and "left out" in v.message
    _, target = ds[0]  # decoding the image's masks no longer reaches pycocotools with the bad polygon
    assert target["masks"].shape == (1, 20, 30)


def test_a_polygon_slightly_over_the_edge_still_loads(tmp_path):
    ds = open_dataset(_coco(tmp_path / "c", [_ann(segmentation=[[-5, 3, 34, 3, 34, 24, -5, 24]])]))
    assert ds.load_violations == []
    assert ds[0][1]["masks"].shape == (1, 20, 30)


@pytest.mark.parametrize("bbox", [[2, 3, 1e308, 8], [-(10**30), 3, 10, 8], [2, 3, 10, 100]])
def test_a_box_far_outside_the_image_is_an_error_naming_the_annotation(tmp_path, bbox):
    ds = open_dataset(_coco(tmp_path / "c", [_ann(), _ann(8, bbox=bbox, segmentation=[])]))
    v = _only(ds, "ANNOTATION_INVALID")
    assert v.field == "bbox" and v.message.startswith("annotations.json annotation 8 on a.png")
    assert "lies far outside the 30x20 image" in v.message
    assert len(ds.annotations[0]) == 1


@pytest.mark.parametrize("height,width", [(10**9, 30), (20, 10**30), (10**5, 10**5)])
def test_an_image_entry_larger_than_pillow_opens_is_an_error_not_a_crash(tmp_path, height, width):
    """A declared size is where masks are allocated (and, for a missing area, rasterised at load time): one
    beyond Pillow's decompression-bomb limit is refused before pycocotools or numpy sees it."""
    images = [{"id": 1, "file_name": "a.png", "height": height, "width": width},
              {"id": 2, "file_name": "b.png", "height": 20, "width": 30}]
    bad = _ann(8)
    del bad["area"]
    ds = open_dataset(_coco(tmp_path / "c", [bad], images=images))
    entry = _only(ds, "IMAGE_ENTRY_INVALID")
    assert entry.field == "images" and "(id 1, a.png)" in entry.message
    assert f"height {height} and width {width}" in entry.message and "decompression bomb" in entry.message
    assert "image_id 1 is not in 'images'" in _only(ds, "ANNOTATION_INVALID").message
    assert len(ds) == 1


def test_an_rle_sized_for_a_huge_image_is_an_error_naming_the_annotation(tmp_path):
    ds = open_dataset(_coco(tmp_path / "c", [_ann(8, segmentation={"size": [10**30, 30], "counts": [600]})]))
    v = _only(ds, "ANNOTATION_INVALID")
    assert v.field == "segmentation" and f"RLE size [{10**30}, 30] differs" in v.message

# --- LabelMe -------------------------------------------------------------------------------------------------

def _labelme(root: Path, shapes: list[dict]) -> Path:
    root.mkdir(parents=True)
    Image.fromarray(np.zeros((20, 30, 3), dtype=np.uint8)).save(root / "a.png")
    doc = {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": "a.png", "imageData": None,
           "imageHeight": 20, "imageWidth": 30}
    (root / "a.json").write_text(json.dumps(doc))
    return root


def _shape(label="thing", points=((1, 1), (9, 1), (9, 9)), shape_type="polygon", **kw) -> dict:
    return {"label": label, "points": [list(p) for p in points], "group_id": None, "description": "",
            "shape_type": shape_type, "flags": {}, "mask": None, **kw}


@pytest.mark.parametrize("shape,field,words", [
    (_shape(points=((1, 1), (5, 5))), "points", "has 2 points; a polygon needs at least 3"),
    (_shape(points=((1, 1), (5, 5), (6, 6)), shape_type="circle"), "points", "circle with 3 points"),
    (_shape(points=((1, 1), (5, 5), (6, 6), (1, 6)), shape_type="rectangle"), "points", "rectangle with 4 points"),
    (_shape(points=((1, 1), (5, 5)), shape_type="mask", mask="not base64 png"), "mask", "base64-encoded"),
    (_shape(points=[]), "points", "not a non-empty list"),
    (_shape(shape_type="cuboid"), "shape_type", "unknown shape_type 'cuboid'"),
    (_shape(group_id="a"), "group_id", "group_id 'a' is not an integer"),
])
def test_a_malformed_labelme_shape_is_an_error_naming_file_and_shape(tmp_path, shape, field, words):
    ds = LabelMeDataset(_labelme(tmp_path / "lm", [_shape(), shape]), ["thing"])
    v = _only(ds, "ANNOTATION_INVALID")
    assert v.field == field and v.message.startswith("a.json shape 1") and words in v.message
    assert ds.entries[0].labels == (1,)


@pytest.mark.parametrize("point", [(1e30, 5), (5, 1e308), (-(10**30), 5), (5, 200)],
                         ids=["1e30", "1e308", "-10**30", "merely-far"])
@pytest.mark.parametrize("shape_type", ["polygon", "circle"])
def test_a_labelme_point_far_outside_the_image_is_an_error_naming_file_and_shape(tmp_path, point, shape_type):
    points = ((1, 1), (9, 1), point) if shape_type == "polygon" else ((5, 5), point)
    ds = LabelMeDataset(_labelme(tmp_path / "lm", [_shape(), _shape(points=points, shape_type=shape_type)]),
                        ["thing"])
    v = _only(ds, "ANNOTATION_INVALID")
    assert v.field == "points" and v.index == 0 and v.message.startswith("a.json shape 1")
    assert "far outside the 30x20 image" in v.message and "left out" in v.message
    assert ds.entries[0].labels == (1,)
    assert not validate_dataset(ds, num_classes=2).ok


def test_a_labelme_point_slightly_over_the_edge_still_loads(tmp_path):
    ds = LabelMeDataset(_labelme(tmp_path / "lm", [_shape(points=((-5, 1), (34, 1), (34, 24)))]), ["thing"])
    assert ds.load_violations == []
    assert ds[0][1]["masks"].shape == (1, 20, 30)


def test_a_labelme_coordinate_too_large_for_a_float_is_an_error_not_a_crash(tmp_path):
    ds = LabelMeDataset(_labelme(tmp_path / "lm", [_shape(), _shape(points=((1, 1), (9, 1), (10**400, 9)))]),
                        ["thing"])
    v = _only(ds, "ANNOTATION_INVALID")
    assert v.field == "points" and "not a non-empty list of finite [x, y] pairs" in v.message


@pytest.mark.parametrize("height,width", [(10**9, 30), (20, 10**30), (0, 30), ("20", 30), (True, 30)])
def test_a_labelme_image_size_that_cannot_be_used_is_an_image_entry_error_and_the_file_is_left_out(
        tmp_path, height, width):
    root = _labelme(tmp_path / "lm", [_shape()])
    doc = json.loads((root / "a.json").read_text())
    (root / "b.json").write_text(json.dumps({**doc, "imageHeight": height, "imageWidth": width}))
    ds = LabelMeDataset(root, ["thing"])
    entry = _only(ds, "IMAGE_ENTRY_INVALID")
    assert entry.field == "imageHeight" and entry.message.startswith("b.json has imageHeight")
    assert "left out" in entry.message
    assert len(ds) == 1 and ds.entries[0].json_path.name == "a.json"
    assert not validate_dataset(ds, num_classes=2).ok


def test_a_labelme_file_without_a_declared_size_is_checked_against_its_image(tmp_path):
    root = _labelme(tmp_path / "lm", [_shape(), _shape(points=((1, 1), (9, 1), (5, 1e30)))])
    doc = json.loads((root / "a.json").read_text())
    del doc["imageHeight"], doc["imageWidth"]
    (root / "a.json").write_text(json.dumps(doc))
    v = _only(LabelMeDataset(root, ["thing"]), "ANNOTATION_INVALID")
    assert "far outside the 30x20 image" in v.message


def test_a_labelme_image_path_outside_the_root_is_refused(tmp_path):
    root = _labelme(tmp_path / "lm", [_shape()])
    doc = json.loads((root / "a.json").read_text())
    doc["imagePath"] = "..\\..\\outside.png"  # Windows separators, as labelme on Windows writes them
    (root / "a.json").write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match="points outside the dataset root"):
        LabelMeDataset(root, ["thing"])


def test_a_labelme_json_without_shapes_is_one_line_and_exit_two(tmp_path, capsys):
    root = _labelme(tmp_path / "lm", [])
    (root / "a.json").write_text(json.dumps({"imagePath": "a.png"}))
    assert main(["--quiet", "validate", str(root), "--format", "labelme"]) == 2
    assert "a.json: a LabelMe file needs a 'shapes' list" in capsys.readouterr().err


def test_coco_dataset_class_takes_an_explicit_image_folder(tmp_path):
    root = _coco(tmp_path / "c", [_ann()])
    ds = CocoInstancesDataset(root / "images", root / "annotations.json")
    assert ds.images_dir == root / "images" and len(ds[0][1]["boxes"]) == 1
