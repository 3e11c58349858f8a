"""The COCO loader's whole-file lane (``plainly_usable``) keeps exactly the annotations, and leaves exactly the
findings, that the annotation-by-annotation loop gives, on files mixing clean annotations with every kind of
damage the loop reports."""

from __future__ import annotations

import json
import math
from pathlib import Path
from unittest import mock

import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference.data import coco
from reference.data.coco import CocoInstancesDataset

SIZE = (48, 64)  # height, width of every image


def _polygon(x: float = 10, y: float = 8, s: float = 12) -> list:
    return [x, y, x + s, y, x + s, y + s, x, y + s]


# One annotation's fields as a clean exporter writes them, then each kind of damage the loader reports.
CLEAN = {"category_id": 1, "bbox": [10, 8, 12, 12], "area": 144.0, "iscrowd": 0, "segmentation": [_polygon()]}
VARIANTS: dict[str, dict] = {
    "clean": {},
    "float_coordinates": {"bbox": [10.5, 8.25, 11.5, 12.0], "segmentation": [_polygon(10.5, 8.25, 11.5)]},
    "two_polygons": {"segmentation": [_polygon(), _polygon(30, 20, 6)]},
    "no_segmentation": {"segmentation": []},
    "segmentation_missing": {"segmentation": None},
    "empty_dict_segmentation": {"segmentation": {}},
    "compressed_rle": {"segmentation": {"size": list(SIZE), "counts": "PPYo0"}},
    "uncompressed_rle": {"segmentation": {"size": list(SIZE), "counts": [100, 20, SIZE[0] * SIZE[1] - 120]}},
    "rle_wrong_size": {"segmentation": {"size": [10, 10], "counts": [100]}},
    "four_number_rectangle": {"segmentation": [[10, 8, 22, 20]]},
    "odd_polygon": {"segmentation": [_polygon()[:7]]},
    "short_polygon": {"segmentation": [[1, 2, 3, 4]]},
    "polygon_nan": {"segmentation": [[*_polygon()[:6], math.nan, 20]]},
    "polygon_string": {"segmentation": [[*_polygon()[:6], "9", 20]]},
    "polygon_bool": {"segmentation": [[*_polygon()[:6], True, 20]]},
    "polygon_far_outside": {"segmentation": [[*_polygon()[:6], 1e6, 20]]},
    "polygon_huge_int": {"segmentation": [[*_polygon()[:6], 10**30, 20]]},
    "polygon_not_a_list": {"segmentation": [_polygon(), "x"]},
    "segmentation_string": {"segmentation": "x"},
    "bbox_bool": {"bbox": [True, 8, 12, 12]},
    "bbox_string": {"bbox": [10, "8", 12, 12]},
    "bbox_three": {"bbox": [10, 8, 12]},
    "bbox_zero_width": {"bbox": [10, 8, 0, 12]},
    "bbox_negative_height": {"bbox": [10, 8, 12, -3]},
    "bbox_nan": {"bbox": [10, 8, math.nan, 12]},
    "bbox_inf": {"bbox": [10, 8, math.inf, 12]},
    "bbox_far_outside": {"bbox": [500, 8, 12, 12]},
    "bbox_just_over_the_edge": {"bbox": [60, 40, 12, 12]},
    "bbox_huge_int": {"bbox": [10, 8, 10**30, 12]},
    "area_missing": {"area": None},
    "area_string": {"area": "144"},
    "area_nan": {"area": math.nan},
    "iscrowd_missing": {"iscrowd": None},
    "iscrowd_bool": {"iscrowd": True},
    "crowd_polygon": {"iscrowd": 1},
    "datumaro_mask": {"iscrowd": 1, "attributes": {},
                      "segmentation": {"size": list(SIZE), "counts": [100, 20, SIZE[0] * SIZE[1] - 120]}},
    "unknown_category": {"category_id": 7},
    "background_category": {"category_id": 0},
    "bool_category": {"category_id": True},
    "image_missing": {"image_id": None},
    "unknown_image": {"image_id": 99},
    "no_bbox": {"bbox": None},
}


def _annotation(aid: int, image_id: int, variant: str) -> dict:
    ann = {"id": aid, "image_id": image_id, **CLEAN, **VARIANTS[variant]}
    return {k: v for k, v in ann.items() if v is not None}


def _write(folder: Path, annotations: list) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"images": [{"id": i, "file_name": f"{i}.jpg", "height": SIZE[0], "width": SIZE[1]} for i in range(3)],
           "categories": [{"id": 0, "name": "_background_"}, {"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
           "annotations": annotations}
    path = folder / "annotations.json"
    path.write_text(json.dumps(doc))  # NaN and Infinity as Python's json writes them
    return path


def _lane_of(tmp_path: Path, path: Path):
    """The dataset loaded from ``path``, and what ``plainly_usable`` returned while it loaded."""
    seen = []

    def spy(*args):
        seen.append(coco_lane(*args))
        return seen[-1]

    with mock.patch.object(coco, "plainly_usable", spy):
        ds = CocoInstancesDataset(tmp_path, path)
    return ds, seen[0]


coco_lane = coco.plainly_usable


def _loaded(path: Path, *, whole_file_lane: bool) -> tuple[str, str]:
    """The loader's findings and kept annotations, as text (NaN compares equal so), with or without the lane."""
    if whole_file_lane:
        ds = CocoInstancesDataset(path.parent, path)
    else:
        with mock.patch.object(coco, "plainly_usable", lambda *a: None):
            ds = CocoInstancesDataset(path.parent, path)
    return repr([v.to_dict() for v in ds.load_violations]), repr(ds.annotations)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 2), st.sampled_from(sorted(VARIANTS))), min_size=1, max_size=12),
       st.booleans())
def test_the_whole_file_lane_keeps_and_reports_what_the_annotation_loop_does(tmp_path, anns, not_a_dict):
    annotations: list = [_annotation(k + 1, image, variant) for k, (image, variant) in enumerate(anns)]
    if not_a_dict:
        annotations.insert(len(annotations) // 2, ["not", "an", "object"])
    path = _write(tmp_path / f"case{abs(hash(repr(anns))) % 10**9}", annotations)
    assert _loaded(path, whole_file_lane=True) == _loaded(path, whole_file_lane=False)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_whole_file_lane_takes_only_annotations_the_loop_keeps_without_a_word(tmp_path, variant):
    path = _write(tmp_path, [_annotation(1, 0, "clean"), _annotation(2, 1, variant)])
    _, plain = _lane_of(tmp_path, path)
    assert plain is not None and bool(plain[0])
    with mock.patch.object(coco, "plainly_usable", lambda *a: None):  # the annotation loop alone
        ds = CocoInstancesDataset(tmp_path, path)
    # what the loop says of annotation 2 (the note on a mask-less annotation among masked ones comes after it)
    said = [v for v in ds.load_violations if v.message.startswith("annotations.json annotation 2")
            and "while others do" not in v.message]
    rle = isinstance(VARIANTS[variant].get("segmentation"), dict) and bool(VARIANTS[variant]["segmentation"])
    kept_as_read = not said and len(ds.annotations[1]) == 1 and not rle  # an RLE takes the loop's way
    assert bool(plain[1]) == kept_as_read


def test_repeated_annotation_ids_send_the_whole_file_down_the_annotation_loop(tmp_path):
    path = _write(tmp_path, [_annotation(1, 0, "clean"), _annotation(1, 1, "clean")])
    ds, plain = _lane_of(tmp_path, path)
    assert plain is None
    assert [v.code for v in ds.load_violations] == ["ANNOTATION_ID_DUPLICATE"]


def test_a_summary_batch_measures_each_mask_as_pycocotools_measures_it_alone(tmp_path):
    """More masks than pycocotools' area() takes in one list (255), of one and of two polygons."""
    anns = [{**_annotation(k + 1, k % 3, "clean"), "segmentation": [_polygon(2 + k % 40, 3, 4 + k % 7)]}
            for k in range(300)]
    anns += [_annotation(301, 0, "two_polygons"), _annotation(302, 1, "uncompressed_rle")]
    path = _write(tmp_path, anns)
    ds = CocoInstancesDataset(tmp_path, path)
    for i in range(3):
        Image.new("RGB", SIZE[::-1]).save(tmp_path / f"{i}.jpg")
    batch, left_out = ds.sample_summaries([0, 1, 2], decode=False)
    assert left_out == [] and batch is not None and int(batch.counts.sum()) == 302
    want_area, want_box = [], []
    for i in range(3):
        for a in ds.annotations[i]:
            rle = coco.segmentation_rle(a["_segm"], *SIZE)
            want_area.append(int(mask_utils.area(rle)))
            x, y, w, h = mask_utils.toBbox(rle)
            want_box.append([x, y, x + w, y + h])
    assert batch.mask_area.tolist() == want_area
    assert batch.mask_box.tolist() == want_box


def test_the_pickling_probe_leaves_out_the_parsed_records_but_not_the_transforms(tmp_path):
    from reference.contract.traversal import check_picklable

    path = _write(tmp_path, [_annotation(1, 0, "clean")])
    ds = CocoInstancesDataset(tmp_path, path)
    assert check_picklable(ds) == []
    ds.annotations[0][0]["unpicklable"] = lambda: None  # never in a parsed file: shows the records are left out
    assert check_picklable(ds) == []
    ds.transforms = lambda image, target: (image, target)
    assert [v.code for v in check_picklable(ds)] == ["NOT_PICKLABLE"]
