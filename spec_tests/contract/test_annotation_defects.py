"""Damaged COCO and LabelMe files: every defect is a violation naming file, annotation and field (or one line and
exit code 2 when the file cannot be read at all); nothing is dropped silently, nothing raises a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from reference.cli import main
from reference.contract import validate_dataset
from reference.data import CocoInstancesDataset, DatasetError, LabelMeDataset, open_dataset


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


# --- Records as users' files hold them: one file under two ids, one category name twice, keypoints, paths from
# another machine, byte-order marks (issue 24) ------------------------------------------------------------------

def _images(*records: tuple[int, str]) -> list[dict]:
    return [{"id": i, "file_name": name, "height": 20, "width": 30} for i, name in records]


def test_one_file_under_two_image_ids_is_one_image_with_the_annotations_of_both(tmp_path):
    anns = [_ann(7, image_id=5), _ann(8, image_id=1, bbox=[14, 4, 6, 6], segmentation=[[14, 4, 20, 4, 20, 10]])]
    ds = open_dataset(_coco(tmp_path / "c", anns, images=_images((5, "a.png"), (2, "b.png"), (1, "a.png"))))
    assert [im["id"] for im in ds.images] == [1, 2]
    _, target = ds[0]
    assert target["image_id"] == 1 and target["boxes"].tolist() == [[2.0, 3.0, 12.0, 11.0], [14.0, 4.0, 20.0, 10.0]]
    shared = _only(ds, "IMAGE_FILE_SHARED")
    assert shared.severity == "warning" and shared.index == 0
    assert "a.png is listed under image ids 1 and 5; read as one image (id 1)" in shared.message
    assert validate_dataset(ds).errors == []


def test_one_file_under_two_image_ids_of_other_sizes_keeps_the_lower_id_and_reports_the_other(tmp_path):
    images = _images((1, "a.png"), (2, "b.png"), (5, "a.png"))
    images[2].update(height=40, width=60)
    ds = open_dataset(_coco(tmp_path / "c", [_ann(7, image_id=1), _ann(8, image_id=5)], images=images))
    assert [im["id"] for im in ds.images] == [1, 2] and len(ds[0][1]["boxes"]) == 1
    entry = _only(ds, "IMAGE_ENTRY_INVALID")
    assert entry.severity == "error"
    assert "images 1 and 5 both name a.png, with height x width 20x30 and 40x60; image 5 is left out" in entry.message
    ann = _only(ds, "ANNOTATION_INVALID")
    assert "image_id 5 is an image left out (it names the file of image 1 with another size)" in ann.message


def test_two_categories_of_one_name_are_one_class_under_the_lower_id(tmp_path):
    cats = [{"id": 4, "name": "person"}, {"id": 2, "name": "car"}, {"id": 1, "name": "person"}]
    anns = [_ann(7, category_id=4), _ann(8, category_id=1), _ann(9, category_id=2)]
    ds = open_dataset(_coco(tmp_path / "c", anns, categories=cats))
    assert ds.classes == ["background", "person", "car"]
    assert ds.cat_id_to_label == {1: 1, 2: 2, 4: 1} and ds.label_to_cat_id == {1: 1, 2: 2}
    assert ds[0][1]["labels"].tolist() == [1, 1, 2]
    dup = _only(ds, "CATEGORY_NAME_DUPLICATE")
    assert dup.severity == "warning" and "categories 1, 4 are all named 'person'; read as one class (category 1)" \
        in dup.message


def test_two_categories_of_one_name_take_their_label_from_the_given_classes(tmp_path):
    cats = [{"id": 4, "name": "person"}, {"id": 2, "name": "car"}, {"id": 1, "name": "person"}]
    ds = open_dataset(_coco(tmp_path / "c", [_ann(7, category_id=4)], categories=cats), classes=["car", "person"])
    assert ds.cat_id_to_label == {1: 2, 2: 1, 4: 2} and ds.label_to_cat_id == {1: 2, 2: 1}
    assert ds[0][1]["labels"].tolist() == [2]


_PERSON_KP = {"id": 1, "name": "thing", "supercategory": "", "keypoints": ["head", "foot"], "skeleton": [[1, 2]]}


def test_coco_keypoints_are_an_n_k_3_float_target(tmp_path):
    anns = [_ann(7, keypoints=[4, 5, 2, 9, 10, 1], num_keypoints=2)]
    ds = open_dataset(_coco(tmp_path / "c", anns, categories=[_PERSON_KP]))
    _, target = ds[0]
    assert ds.num_keypoints == 2 and target["keypoints"].dtype == torch.float32
    assert target["keypoints"].tolist() == [[[4.0, 5.0, 2.0], [9.0, 10.0, 1.0]]]
    assert ds[1][1]["keypoints"].shape == (0, 2, 3)  # an image without annotations
    assert validate_dataset(ds, num_keypoints=2).errors == [] and ds.load_violations == []


def test_an_annotation_without_keypoints_in_a_keypoint_dataset_has_them_all_invisible(tmp_path):
    anns = [_ann(7, keypoints=[4, 5, 2, 9, 10, 1]), _ann(8), _ann(9, keypoints=[], num_keypoints=0)]
    _, target = open_dataset(_coco(tmp_path / "c", anns, categories=[_PERSON_KP]))[0]
    assert target["keypoints"][1:].tolist() == [[[0.0, 0.0, 0.0]] * 2] * 2


@pytest.mark.parametrize("keypoints,words", [
    ([4, 5, 2], "are 3 numbers; category 1 'thing' declares 2 keypoints, so 6"),
    ([4, 5, 2, 9, "10", 1], "are not a list of finite numbers"),
    ({"x": 4}, "are not a list of finite numbers"),
])
def test_malformed_keypoints_are_an_error_and_only_the_keypoints_are_left_out(tmp_path, keypoints, words):
    ds = open_dataset(_coco(tmp_path / "c", [_ann(7, keypoints=keypoints)], categories=[_PERSON_KP]))
    v = _only(ds, "ANNOTATION_INVALID")
    assert v.field == "keypoints" and words in v.message and "its box and mask are kept" in v.message
    _, target = ds[0]
    assert len(target["boxes"]) == 1 and target["keypoints"].tolist() == [[[0.0, 0.0, 0.0]] * 2]


@pytest.mark.parametrize("file_name", ["/data/upload/3/a.png", "C:\\Users\\ann\\Pictures\\a.png",
                                       "https://example.com/img/a.png"])
def test_a_file_name_from_another_machine_is_read_by_its_base_name_with_a_warning(tmp_path, file_name):
    ds = open_dataset(_coco(tmp_path / "c", [_ann()], images=_images((1, file_name), (2, "b.png"))))
    v = _only(ds, "IMAGE_PATH_RESOLVED")
    assert v.severity == "warning" and f"file_name {file_name!r} is a path on another machine; read as a.png" \
        in v.message
    assert ds.images_dir == tmp_path / "c" / "images" and len(ds[0][1]["boxes"]) == 1


def test_a_file_name_from_another_machine_not_in_the_image_root_leaves_out_that_image_alone(tmp_path):
    images = _images((1, "/home/bob/label-studio/media/upload/3/9f86d081-x.png"), (2, "b.png"))
    ds = open_dataset(_coco(tmp_path / "c", [_ann(), _ann(8, image_id=2)], images=images))
    entry = _only(ds, "IMAGE_ENTRY_INVALID")
    assert "no '9f86d081-x.png' is in the image root" in entry.message and "left out" in entry.message
    assert "--images DIR" in entry.hint
    assert [im["id"] for im in ds.images] == [2] and len(ds[0][1]["boxes"]) == 1
    assert _only(ds, "ANNOTATION_INVALID").message.endswith(
        "image_id 1 is an image left out (its file_name '/home/bob/label-studio/media/upload/3/9f86d081-x.png' is "
        "on another machine, not in the image root); it is left out")


def test_windows_separators_in_file_name_are_folders(tmp_path):
    root = _coco(tmp_path / "c", [_ann()], images=_images((1, "sub\\a.png")))
    (root / "images" / "sub").mkdir()
    (root / "images" / "a.png").rename(root / "images" / "sub" / "a.png")
    ds = open_dataset(root)
    assert ds.images[0]["file_name"] == "sub/a.png" and len(ds[0][1]["boxes"]) == 1 and ds.load_violations == []


@pytest.mark.parametrize("file_name", ["../a.png", "..\\..\\label-studio\\media\\upload\\4\\a.png"])
def test_a_file_name_leaving_the_image_root_is_still_refused(tmp_path, file_name):
    with pytest.raises(DatasetError, match="points outside the dataset root"):
        open_dataset(_coco(tmp_path / "c", [_ann()], images=_images((1, file_name))))


def test_a_byte_order_mark_at_the_start_of_a_coco_file_is_skipped(tmp_path):
    root = _coco(tmp_path / "c", [_ann()])
    text = (root / "annotations.json").read_text()
    (root / "annotations.json").write_text(text, encoding="utf-8-sig")
    assert len(open_dataset(root)[0][1]["boxes"]) == 1


def test_a_byte_order_mark_at_the_start_of_a_labelme_file_is_skipped(tmp_path):
    root = _labelme(tmp_path / "lm", [_shape()])
    (root / "a.json").write_text((root / "a.json").read_text(), encoding="utf-8-sig")
    ds = LabelMeDataset(root)
    assert ds.class_names == ["thing"] and len(ds[0][1]["boxes"]) == 1
