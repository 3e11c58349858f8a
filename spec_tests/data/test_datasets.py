"""The on-disk datasets: tutorial parity, the contract on generated data, and bad input named by file."""

from __future__ import annotations

import json
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from torchvision import tv_tensors

from reference.engine.coco_eval import GroundTruth
from reference.contract import validate_dataset
from reference.data import CocoInstancesDataset, DatasetError, LabelMeDataset, PennFudanDataset, open_dataset
from reference.data import pennfudan
from reference.testing.synthetic import coco_category_ids, generate

from spec_tests.tutorial_datasets import ALTERATIONS, TutorialPennFudanLegacy, TutorialPennFudanV2


@pytest.fixture(scope="module")
def pf_root(tmp_path_factory) -> Path:
    return generate("pennfudan", tmp_path_factory.mktemp("pf"), count=6, seed=11)


@pytest.fixture(scope="module")
def labelme_root(tmp_path_factory) -> Path:
    return generate("labelme", tmp_path_factory.mktemp("lm"), count=5, seed=12, classes=["person", "bottle"])


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory) -> Path:
    return generate("coco", tmp_path_factory.mktemp("coco"), count=8, seed=13, classes=["person", "bottle"])


def _errors(report):
    return [v for v in report.violations if v.severity == "error"]


# --- PennFudan: the contract and tutorial parity -----------------------------------------------------------

@pytest.mark.parametrize("flavour", ["v2", "legacy"])
def test_pennfudan_passes_the_contract_in_both_flavours(pf_root, flavour):
    report = validate_dataset(PennFudanDataset(pf_root, flavour=flavour), num_classes=2)
    assert report.violations == [], report.render_text()


def test_pennfudan_v2_returns_what_the_seed_001_class_returns(pf_root):
    ours, theirs = PennFudanDataset(pf_root), TutorialPennFudanV2(pf_root)
    assert len(ours) == len(theirs) == 6
    for i in range(len(ours)):
        (img_a, a), (img_b, b) = ours[i], theirs[i]
        assert type(img_a) is tv_tensors.Image and torch.equal(img_a, img_b)
        assert type(a["boxes"]) is tv_tensors.BoundingBoxes
        assert tuple(a["boxes"].canvas_size) == tuple(b["boxes"].canvas_size)
        for key in ("boxes", "labels", "masks", "area", "iscrowd"):
            assert torch.equal(a[key], b[key]), key
            assert a[key].dtype == b[key].dtype, key
        assert a["image_id"] == b["image_id"] == i


def test_pennfudan_v2_masks_move_with_the_image_under_a_v2_flip(pf_root):
    """The masks are typed (tv_tensors.Mask), so a v2 transform moves them with the image and the boxes; as plain
    tensors v2 would pass them through untouched and every flipped box would leave its mask behind."""
    from torchvision.transforms import v2

    plain, flipped = PennFudanDataset(pf_root), PennFudanDataset(pf_root, transforms=v2.RandomHorizontalFlip(p=1.0))
    for i in range(len(plain)):
        (_, before), (_, after) = plain[i], flipped[i]
        assert torch.equal(after["masks"], before["masks"].flip(-1)), f"sample {i}: masks not flipped"
    report = validate_dataset(flipped, num_classes=2)
    assert report.violations == [], report.render_text()


def test_pennfudan_legacy_returns_what_the_seed_000_class_returns(pf_root):
    ours, theirs = PennFudanDataset(pf_root, flavour="legacy"), TutorialPennFudanLegacy(pf_root)
    for i in range(len(ours)):
        (img_a, a), (img_b, b) = ours[i], theirs[i]
        assert isinstance(img_a, Image.Image) and img_a.mode == "RGB"
        assert np.array_equal(np.asarray(img_a), np.asarray(img_b))
        for key in ("boxes", "labels", "masks", "area", "iscrowd", "image_id"):
            assert torch.equal(a[key], b[key]), key


def test_tutorial_conventions_are_inclusive_boxes_and_instances_in_mask_id_order(tmp_path):
    root = tmp_path / "pf"
    (root / "PNGImages").mkdir(parents=True)
    (root / "PedMasks").mkdir()
    ids = np.zeros((10, 12), dtype=np.uint8)
    ids[1:4, 2:5] = 2  # id 2 listed second although it is drawn first
    ids[5:9, 6:11] = 1
    Image.fromarray(np.zeros((10, 12, 3), dtype=np.uint8)).save(root / "PNGImages" / "b.png")
    Image.fromarray(ids, mode="L").save(root / "PedMasks" / "b_mask.png")
    _, t = PennFudanDataset(root)[0]
    assert t["boxes"].tolist() == [[6.0, 5.0, 10.0, 8.0], [2.0, 1.0, 4.0, 3.0]]  # x2, y2 = last pixel index
    assert t["area"].tolist() == [12.0, 4.0]


def test_tutorial_datasets_validate_clean(pf_root):
    assert _errors(validate_dataset(TutorialPennFudanV2(pf_root), num_classes=2)) == []
    assert _errors(validate_dataset(TutorialPennFudanLegacy(pf_root), num_classes=2)) == []


@pytest.mark.parametrize("alter,code", list(zip(ALTERATIONS, ["LABEL_BACKGROUND", "BOX_DEGENERATE", "MASKS_DTYPE",
                                                          "IMAGE_CHANNELS", "IMAGE_ID_DUPLICATE"])))
def test_altered_tutorial_dataset_fails_with_the_matching_code(pf_root, alter, code):
    report = validate_dataset(TutorialPennFudanV2(pf_root, alter=alter), num_classes=2)
    assert code in {v.code for v in _errors(report)}, report.render_text()


def test_xywh_boxes_get_a_hint(pf_root):
    report = validate_dataset(TutorialPennFudanV2(pf_root, alter="xywh"), num_classes=2)
    hints = [v.hint for v in report.violations if v.code == "BOX_DEGENERATE"]
    assert hints and all("[x, y, w, h]" in h for h in hints if h)


def test_get_height_and_width_matches_the_decoded_image(pf_root):
    ds = PennFudanDataset(pf_root)
    for i in range(len(ds)):
        assert ds.get_height_and_width(i) == tuple(ds[i][0].shape[-2:])


def _one_pixel_folder(root: Path) -> Path:
    (root / "PNGImages").mkdir(parents=True)
    (root / "PedMasks").mkdir()
    ids = np.zeros((20, 20), dtype=np.uint8)
    ids[2:15, 7] = 1  # one pixel wide
    ids[10, 10:18] = 2  # one pixel tall
    Image.fromarray(np.zeros((20, 20, 3), dtype=np.uint8)).save(root / "PNGImages" / "a.png")
    Image.fromarray(ids, mode="L").save(root / "PedMasks" / "a_mask.png")
    return root


def test_one_pixel_instances_are_widened_and_recorded_by_default(tmp_path, caplog):
    ds = PennFudanDataset(_one_pixel_folder(tmp_path / "pf"))
    _, t = ds[0]
    assert t["boxes"].tolist() == [[7.0, 2.0, 8.0, 14.0], [10.0, 10.0, 17.0, 11.0]]
    assert ds.widened == {0: (0, 1)}
    assert "one pixel wide or tall" in caplog.text
    assert _errors(validate_dataset(ds, num_classes=2)) == []


def test_the_widened_record_keeps_one_entry_per_sample_however_often_it_is_loaded(tmp_path):
    ds = PennFudanDataset(_one_pixel_folder(tmp_path / "pf"))
    for _ in range(5):
        ds[0]
    assert ds.widened == {0: (0, 1)}


def test_exclusive_boxes_end_one_past_the_last_pixel(tmp_path):
    ds = PennFudanDataset(_one_pixel_folder(tmp_path / "pf"), exclusive_boxes=True)
    _, t = ds[0]
    assert t["boxes"].tolist() == [[7.0, 2.0, 8.0, 15.0], [10.0, 10.0, 18.0, 11.0]]
    assert ds.widened == {}


# --- PennFudan: bad input ----------------------------------------------------------------------------------

def _broken(tmp_path, defect) -> Path:
    return generate("pennfudan", tmp_path / defect, count=3, seed=5, defect=defect)


def test_missing_mask_names_the_image(tmp_path):
    with pytest.raises(DatasetError, match=r"no mask for \['FudanPed00001.png'\]"):
        PennFudanDataset(_broken(tmp_path, "missing-mask"))


def test_image_without_mask_names_the_extra_file(tmp_path):
    with pytest.raises(DatasetError, match="FudanPed99999.png"):
        PennFudanDataset(_broken(tmp_path, "extra-image"))


def test_truncated_png_is_reported_per_index_and_the_rest_is_checked(tmp_path):
    ds = PennFudanDataset(_broken(tmp_path, "truncated-png"))
    report = validate_dataset(ds, num_classes=2)
    failed = [v for v in report.violations if v.code == "GETITEM_FAILED"]
    assert [v.index for v in failed] == [0]
    assert "FudanPed00001.png" in failed[0].message
    assert report.samples == 3 and len(report.errors) == 1


def test_mask_of_another_size_names_both_files(tmp_path):
    ds = PennFudanDataset(_broken(tmp_path, "mask-size"))
    with pytest.raises(DatasetError, match=r"FudanPed00001_mask.png.*differs from its image FudanPed00001.png"):
        ds[0]


def test_rgba_source_images_are_read_as_rgb(tmp_path):
    img, _ = PennFudanDataset(_broken(tmp_path, "rgba-image"))[0]
    assert img.shape[0] == 3


# what macOS (.DS_Store; ._NAME AppleDouble files, binary, beside each file copied to a non-Apple volume or
# zipped) and Windows Explorer (Thumbs.db, desktop.ini) leave in a folder
_SYSTEM_FILES = {"PNGImages/.DS_Store": b"\x00\x00\x00\x01Bud1", "PNGImages/Thumbs.db": b"\xd0\xcf\x11\xe0",
                 "PNGImages/desktop.ini": b"[.ShellClassInfo]\r\n",
                 "PedMasks/._FudanPed00001_mask.png": b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        "}


def test_pennfudan_system_files_are_skipped_with_one_warning_naming_them(tmp_path):
    root = generate("pennfudan", tmp_path / "pf", count=3, seed=5)
    for rel, data in _SYSTEM_FILES.items():
        (root / rel).write_bytes(data)
    ds = PennFudanDataset(root)
    assert len(ds) == 3 and all(p.suffix == ".png" for p in ds.images + ds.masks)
    (skipped,) = ds.load_violations
    assert skipped.code == "FILE_SKIPPED" and skipped.severity == "warning"
    assert all(rel in skipped.message for rel in _SYSTEM_FILES)
    report = validate_dataset(ds, num_classes=2)
    assert report.errors == [] and "FILE_SKIPPED" in report.codes()


def test_pennfudan_upper_case_extensions_pair_up(tmp_path):
    root = generate("pennfudan", tmp_path / "pf", count=2, seed=5)
    (root / "PNGImages" / "FudanPed00001.png").rename(root / "PNGImages" / "FudanPed00001.PNG")
    (root / "PedMasks" / "FudanPed00001_mask.png").rename(root / "PedMasks" / "FudanPed00001_mask.PNG")
    ds = PennFudanDataset(root)
    assert [p.name for p in ds.masks] == ["FudanPed00001_mask.PNG", "FudanPed00002_mask.png"]
    assert validate_dataset(ds, num_classes=2).errors == [] and ds.load_violations == []


def test_zip_entry_leaving_the_folder_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../escaped.txt", "x")
    with pytest.raises(DatasetError, match="would extract outside"):
        pennfudan._safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()


def test_download_offline_fails_at_once_saying_where_to_put_the_archive(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(pennfudan.urllib.request, "urlopen", refuse)
    with pytest.raises(DatasetError, match=str(tmp_path / "PennFudanPed.zip")):
        pennfudan.download(tmp_path)
    assert not list(tmp_path.glob("*.part"))


def test_download_uses_an_archive_already_in_place_and_checks_its_contents(tmp_path, monkeypatch):
    monkeypatch.setattr(pennfudan.urllib.request, "urlopen", pytest.fail)
    src = generate("pennfudan", tmp_path / "src" / "PennFudanPed", count=2, seed=1)
    with zipfile.ZipFile(tmp_path / "PennFudanPed.zip", "w") as zf:
        for p in sorted(src.rglob("*.png")):
            zf.write(p, p.relative_to(src.parent))
    with pytest.raises(DatasetError, match="2 image/mask pairs, the official release has 170"):
        pennfudan.download(tmp_path)
    with pytest.raises(DatasetError, match="sha256"):
        pennfudan.download(tmp_path, sha256="0" * 64)


# --- LabelMe ----------------------------------------------------------------------------------------------

def test_labelme_passes_the_contract(labelme_root):
    ds = LabelMeDataset(labelme_root, ["person", "bottle"])
    assert ds.class_to_idx == {"background": 0, "person": 1, "bottle": 2}
    report = validate_dataset(ds, num_classes=3)
    assert _errors(report) == [], report.render_text()


def test_labelme_masks_are_the_rasterised_polygons(labelme_root):
    ds = LabelMeDataset(labelme_root, ["person", "bottle"])
    doc = json.loads(sorted(labelme_root.glob("*.json"))[0].read_text())
    _, t = ds[0]
    assert len(t["masks"]) == len(doc["shapes"])
    for mask, shape in zip(t["masks"], doc["shapes"]):
        xs = [p[0] for p in shape["points"]]
        ys, xs_m = torch.nonzero(mask, as_tuple=True)
        assert abs(float(xs_m.min()) - min(xs)) <= 1 and abs(float(xs_m.max()) - max(xs)) <= 1


def test_labelme_image_path_outside_the_root_is_refused_naming_the_file(tmp_path):
    root = generate("labelme", tmp_path / "escape", count=2, seed=3, defect="path-escape")
    with pytest.raises(DatasetError, match="points outside the dataset root") as info:
        LabelMeDataset(root, ["person"])
    assert "card_0000.json" in str(info.value)


@pytest.mark.parametrize("defect,code,match", [("short-polygon", "ANNOTATION_INVALID",
                                                "has 2 points; a polygon needs at least 3"),
                                               ("unknown-class", "LABEL_UNKNOWN", "label 'unicorn' is not one of")])
def test_labelme_bad_shapes_are_errors_naming_file_and_shape(tmp_path, defect, code, match):
    root = generate("labelme", tmp_path / defect, count=2, seed=3, defect=defect)
    ds = LabelMeDataset(root, ["person"])
    found = [v for v in ds.load_violations if v.code == code]
    assert len(found) == 1 and found[0].message.startswith("card_0000.json shape 0") and match in found[0].message
    report = validate_dataset(ds, num_classes=2)
    assert code in {v.code for v in report.errors}


def test_labelme_non_polygon_shapes_are_counted_not_silently_dropped(labelme_root, tmp_path):
    root = tmp_path / "lm"
    root.mkdir()
    for p in labelme_root.iterdir():
        (root / p.name).write_bytes(p.read_bytes())
    path = root / "card_0000.json"
    doc = json.loads(path.read_text())
    doc["shapes"].append({"label": "person", "points": [[1, 1]], "shape_type": "point"})
    path.write_text(json.dumps(doc))
    ds = LabelMeDataset(root, ["person", "bottle"])
    (dropped,) = ds.load_violations
    assert dropped.code == "ANNOTATION_DROPPED" and "point" in dropped.message and dropped.index == 0


# --- COCO -------------------------------------------------------------------------------------------------

def test_coco_passes_the_contract_and_maps_categories_to_contiguous_labels(coco_root):
    ds = open_dataset(coco_root)
    assert isinstance(ds, CocoInstancesDataset)
    ids = coco_category_ids(2)
    assert ids == [1, 3] and ds.cat_id_to_label == {1: 1, 3: 2} and ds.label_to_cat_id == {1: 1, 2: 3}
    assert ds.classes == ["background", "person", "bottle"]
    report = validate_dataset(ds, num_classes=3)
    assert report.violations == [], report.render_text()


def test_coco_images_without_annotations_are_valid_negatives(coco_root):
    ds = open_dataset(coco_root)
    empties = [t for _, t in (ds[i] for i in range(len(ds))) if len(t["boxes"]) == 0]
    assert empties, "the generator makes some images without objects"
    for t in empties:
        assert tuple(t["boxes"].shape) == (0, 4) and tuple(t["labels"].shape) == (0,)


def test_coco_round_trip_keeps_boxes_areas_iscrowd_and_masks(coco_root):
    doc = json.loads((coco_root / "annotations.json").read_text())
    ds = open_dataset(coco_root)
    gt = GroundTruth()
    for i in range(len(ds)):
        img, t = ds[i]
        gt.add(t["image_id"], img.shape[-2], img.shape[-1], t)
    assert len(gt.annotations) == len(doc["annotations"])
    by_image = {im["id"]: im for im in doc["images"]}
    for ours, src in zip(gt.annotations, doc["annotations"]):
        assert ours["image_id"] == src["image_id"]
        assert ours["bbox"] == pytest.approx(src["bbox"], abs=1e-4)
        assert ours["area"] == pytest.approx(src["area"]) and ours["iscrowd"] == src["iscrowd"]
        assert ds.label_to_cat_id[ours["category_id"]] == src["category_id"]
        h, w = by_image[src["image_id"]]["height"], by_image[src["image_id"]]["width"]
        expected = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(src["segmentation"], h, w)))
        assert np.array_equal(mask_utils.decode(ours["segmentation"]), expected)


def test_coco_rle_and_crowd_annotations_decode(tmp_path):
    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((8, 10, 3), dtype=np.uint8)).save(tmp_path / "images" / "a.png")
    m = np.zeros((8, 10), dtype=np.uint8)
    m[2:6, 3:9] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    rle["counts"] = rle["counts"].decode()
    doc = {"images": [{"id": 7, "file_name": "a.png", "height": 8, "width": 10}],
           "categories": [{"id": 4, "name": "crowd"}],
           "annotations": [{"id": 1, "image_id": 7, "category_id": 4, "bbox": [3, 2, 6, 4], "area": 24.0,
                            "iscrowd": 1, "segmentation": rle}]}
    (tmp_path / "a.json").write_text(json.dumps(doc))
    _, t = CocoInstancesDataset(tmp_path / "images", tmp_path / "a.json")[0]
    assert torch.equal(t["masks"][0], torch.from_numpy(m)) and t["iscrowd"].tolist() == [1]
    assert t["boxes"].tolist() == [[3.0, 2.0, 9.0, 6.0]] and t["image_id"] == 7


def test_coco_file_name_outside_the_root_is_refused(tmp_path):
    root = generate("coco", tmp_path / "c", count=2, seed=1, defect="path-escape")
    with pytest.raises(DatasetError, match="outside the dataset root"):
        open_dataset(root)


def test_coco_zero_size_boxes_are_reported_as_dropped(tmp_path, coco_root):
    doc = json.loads((coco_root / "annotations.json").read_text())
    doc["annotations"][0]["bbox"][2] = 0
    (tmp_path / "a.json").write_text(json.dumps(doc))
    ds = CocoInstancesDataset(coco_root / "images", tmp_path / "a.json")
    (dropped,) = ds.load_violations
    assert dropped.code == "ANNOTATION_DROPPED"
    assert dropped.message.startswith(f"a.json annotation {doc['annotations'][0]['id']} on ")
    assert "ANNOTATION_DROPPED" in validate_dataset(ds).codes()


def test_unknown_layout_is_named(tmp_path):
    with pytest.raises(DatasetError, match="no known layout"):
        open_dataset(tmp_path)
