"""Dataset-level rules (unused classes, imbalance, box-size outliers, an empty dataset), checks across two splits,
area consistency that accepts both common rasterisations, class names in the statistics, and loading in
DataLoader workers."""

from __future__ import annotations

import json
import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import torch
from pycocotools import mask as mask_utils
from torchvision import tv_tensors

from reference.contract import compare_splits, validate_dataset, validate_sample
from reference.contract.dataset_rules import Stats, dataset_checks
from reference.contract.rules import FAR_FROM_MEAN_STD
from reference.data import open_dataset
from reference.data.labelme import rasterise_polygon

from spec_tests.conftest import FIXTURES

EXPORTS = FIXTURES / "exports"


class Boxes:
    """A tiny in-memory dataset: one sample per entry of ``rows``, each a list of (label, x, y, w, h)."""

    def __init__(self, rows, classes=("background", "a", "b"), pixels=None):
        self.rows, self.classes, self.pixels = rows, list(classes), pixels

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        img = self.pixels[i] if self.pixels is not None else torch.full((3, 64, 64), i % 250, dtype=torch.uint8)
        boxes = torch.tensor([[x, y, x + w, y + h] for _, x, y, w, h in self.rows[i]], dtype=torch.float32)
        boxes = boxes.reshape(-1, 4)
        return tv_tensors.Image(img), {
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(64, 64)),
            "labels": torch.tensor([r[0] for r in self.rows[i]], dtype=torch.int64),
            "image_id": i, "area": (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]),
            "iscrowd": torch.zeros(len(self.rows[i]), dtype=torch.int64)}


def _codes(report, code):
    return [v for v in report.violations if v.code == code]


# --- area consistency ----------------------------------------------------------------------------------------

THIN = [[10, 5], [14, 5], [15, 60], [10, 60]]  # 4-5 px wide, like a bottle seen from the side
SMALL = [[3, 3], [6, 3], [6, 6], [3, 6]]
# the bottle of labelme's own example (data_annotated/2011_000003.json), shifted to the origin: 873 px as labelme
# draws it, 815 px as pycocotools decodes its polygon; 6.6 % apart
BOTTLE = [[5.8, 0.0], [0.8, 11.0], [0.8, 51.0], [6.8, 53.0], [18.8, 50.0], [16.8, 26.0], [16.8, 9.0], [16.8, 6.0],
          [13.8, 0.0]]


def _area_sample(poly, area, h=70, w=40):
    rle = mask_utils.merge(mask_utils.frPyObjects([[float(v) for p in poly for v in p]], h, w))
    mask = torch.from_numpy(mask_utils.decode(rle)).to(torch.uint8)
    ys, xs = torch.nonzero(mask, as_tuple=True)
    box = [float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1]
    target = {"boxes": torch.tensor([box]), "labels": torch.tensor([1]), "masks": mask[None], "image_id": 0,
              "area": torch.tensor([float(area)]), "iscrowd": torch.tensor([0])}
    return torch.zeros((3, h, w), dtype=torch.uint8), target


@pytest.mark.parametrize("poly", [THIN, SMALL, BOTTLE], ids=["thin", "small", "labelme-bottle"])
def test_area_drawn_as_labelme_draws_it_is_consistent_with_the_pycocotools_mask(poly):
    labelme_area = int(rasterise_polygon(poly, 70, 40).sum())
    image, target = _area_sample(poly, labelme_area)
    mask_area = int(target["masks"].sum())
    assert labelme_area != mask_area  # the two rasterisations differ
    assert [v.code for v in validate_sample(image, target)] == []


def test_the_labelme_bottle_differs_by_more_than_five_percent():
    labelme_area = int(rasterise_polygon(BOTTLE, 70, 40).sum())
    _, target = _area_sample(BOTTLE, labelme_area)
    assert abs(labelme_area - int(target["masks"].sum())) / int(target["masks"].sum()) > 0.05


@pytest.mark.parametrize("poly", [THIN, BOTTLE], ids=["thin", "labelme-bottle"])
def test_an_area_left_unscaled_after_a_resize_is_still_inconsistent(poly):
    image, target = _area_sample(poly, 4 * int(rasterise_polygon(poly, 70, 40).sum()))
    assert "AREA_INCONSISTENT" in [v.code for v in validate_sample(image, target)]


# --- dataset-level rules ---------------------------------------------------------------------------------------

def test_a_declared_class_without_instances_is_a_warning():
    report = validate_dataset(Boxes([[(1, 5, 5, 10, 10)]] * 3))
    (v,) = _codes(report, "CLASS_UNUSED")
    assert v.severity == "warning" and "'b'" in v.message


def test_unused_classes_are_not_claimed_from_a_partial_check():
    report = validate_dataset(Boxes([[(1, 5, 5, 10, 10)]] * 3), max_samples=2)
    assert _codes(report, "CLASS_UNUSED") == []


def test_class_imbalance_beyond_datumaro_ratio_is_an_info():
    rows = [[(1, 5, 5, 10, 10)]] * 51 + [[(2, 5, 5, 10, 10)]]
    (v,) = _codes(validate_dataset(Boxes(rows)), "CLASS_IMBALANCE")
    assert v.severity == "info" and "ratio 51.0" in v.message
    assert _codes(validate_dataset(Boxes(rows[1:])), "CLASS_IMBALANCE") == []  # 50:1 is within


def test_a_box_far_from_its_class_size_is_an_info_naming_sample_and_instance():
    rows = [[(1, 5, 5, 10 + i % 3, 10)] for i in range(40)] + [[(1, 5, 5, 10, 10), (1, 0, 0, 60, 60)]]
    found = _codes(validate_dataset(Boxes(rows)), "BOX_SIZE_OUTLIER")
    assert {(v.index, v.instance) for v in found} == {(40, 1)} and found[0].severity == "info"


def test_an_empty_dataset_is_an_error():
    report = validate_dataset(Boxes([]))
    assert [v.code for v in report.errors] == ["DATASET_EMPTY"]


def test_statistics_name_the_classes():
    report = validate_dataset(open_dataset(EXPORTS / "labelme", classes=EXPORTS / "labelme" / "labels.txt"))
    st = json.loads(report.to_json())["statistics"]
    assert st["classes"] == ["background", "person", "bottle"]
    assert st["instances_per_class"] == {"person": 3, "bottle": 5}
    assert "instances per class: {'person': 3, 'bottle': 5}" in report.render_text()


def test_two_workers_give_the_same_report_as_one_process():
    ds = open_dataset(EXPORTS / "labelme", classes=EXPORTS / "labelme" / "labels.txt")
    a, b = validate_dataset(ds), validate_dataset(ds, workers=2)
    assert a.to_dict() == b.to_dict()


# --- across splits ----------------------------------------------------------------------------------------------

def _pictures(n, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 255, (3, 64, 64), generator=g, dtype=torch.uint8) for _ in range(n)]


def test_an_image_in_both_splits_is_found_exactly_and_as_a_near_duplicate():
    train_px = _pictures(4, 0)
    val_px = _pictures(3, 1)
    val_px[0] = train_px[2].clone()  # the same picture
    val_px[1] = (train_px[3].float() * 0.97 + 2).to(torch.uint8)  # a re-encoded / slightly darker copy
    rows = [[(1, 5, 5, 10, 10), (2, 20, 20, 10, 10)]]
    train = validate_dataset(Boxes(rows * 4, pixels=train_px), fingerprint=True)
    val = validate_dataset(Boxes(rows * 3, pixels=val_px), fingerprint=True)
    dups = _codes_list(compare_splits(train, val, ["background", "a", "b"], ["background", "a", "b"]))
    exact, near = dups["SPLIT_DUPLICATE_IMAGE"]
    assert (exact.index, exact.message) == (0, "validation sample 0 is the same pixels as training sample 2")
    assert near.index == 1 and "a near-duplicate" in near.message and near.message.endswith("training sample 3")


def _codes_list(violations):
    out: dict = {}
    for v in violations:
        out.setdefault(v.code, []).append(v)
    return out


def test_a_class_missing_from_a_split_and_a_name_with_two_ids_are_found():
    train = validate_dataset(Boxes([[(1, 5, 5, 10, 10), (2, 20, 20, 10, 10)]] * 2))
    val = validate_dataset(Boxes([[(1, 5, 5, 10, 10)]] * 2, classes=("background", "b", "a")))
    found = _codes_list(compare_splits(train, val, ["background", "a", "b"], ["background", "b", "a"]))
    assert len(found["SPLIT_CLASS_ID_MISMATCH"]) == 2 and found["SPLIT_CLASS_ID_MISMATCH"][0].severity == "error"
    assert [v.message for v in found["SPLIT_CLASS_MISSING"]] == [
        "class 'a' has instances in the training split but none in the validation split"]


def _outliers_box_by_box(stats: Stats) -> list[tuple]:
    """BOX_SIZE_OUTLIER as a plain loop over the boxes finds it, class by class, area then aspect ratio: the
    rule's definition, to hold the vectorised one to."""
    found = []
    for label in sorted(set(stats.box_label)):
        rows = [j for j, lab in enumerate(stats.box_label) if lab == label]
        for values in ([stats.box_w[j] * stats.box_h[j] for j in rows], [stats.box_w[j] / stats.box_h[j] for j in rows]):
            mean = sum(values) / len(values)
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
            found += [(stats.box_index[j], stats.box_k[j], f"{v:.3g}", f"{abs(v - mean) / std:.1f}", f"{mean:.3g}")
                      for j, v in zip(rows, values) if std and abs(v - mean) > FAR_FROM_MEAN_STD * std]
    return found


# many boxes of two classes alike (10-12 px wide), then a few of any size: beyond 5 deviations in most examples
ODD_BOX = st.tuples(st.sampled_from([1, 2]), st.sampled_from([0.05, 300.0]) | st.floats(0.01, 1e4),
                    st.sampled_from([10.0]) | st.floats(0.01, 1e4))
BOXES = st.builds(lambda n, odd: [(1 + k % 2, 10.0 + k % 3, 10.0) for k in range(n)] + odd,
                  st.integers(0, 120), st.lists(ODD_BOX, max_size=4))


@settings(max_examples=150, deadline=None)
@given(BOXES)
def test_box_size_outliers_are_those_a_box_by_box_loop_finds(boxes):
    stats = Stats()
    for i, (label, w, h) in enumerate(boxes):
        stats.box_index.append(i), stats.box_k.append(i % 3), stats.box_label.append(label)
        stats.box_w.append(w), stats.box_h.append(h)
    found = [v for v in dataset_checks(stats, None, complete=True) if v.code == "BOX_SIZE_OUTLIER"]
    words = [re.match(r"box .* (\S+) is (\S+) standard deviations from the mean (\S+) of", v.message).groups()
             for v in found]
    assert [(v.index, v.instance, *w) for v, w in zip(found, words)] == _outliers_box_by_box(stats)
