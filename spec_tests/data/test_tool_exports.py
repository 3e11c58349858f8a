"""Real annotation exports read as their tools mean them: labelme 5.x files, labelme2coco, CVAT's COCO 1.0 and
Roboflow's COCO export of the same three scenes (built by ``tool_exports``, committed in ``fixtures/exports``)."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from reference.contract import validate_dataset
from reference.data import (CocoInstancesDataset, DatasetError, LabelMeDataset, detect_format, open_dataset,
                                parse_classes, read_class_file)
from reference.data.labelme import rasterise_polygon

from spec_tests import tool_exports
from spec_tests.conftest import FIXTURES

EXPORTS = FIXTURES / "exports"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())["exports"]


def _codes(ds) -> list[str]:
    return [v.code for v in ds.load_violations]


def _within(a: torch.Tensor, b: torch.Tensor, px: int = 1) -> bool:
    """Each mask lies inside the other grown by ``px`` pixels (8-neighbourhood)."""
    grow = torch.nn.functional.max_pool2d
    ga = grow(a[None, None].float(), 2 * px + 1, stride=1, padding=px)[0, 0] > 0
    gb = grow(b[None, None].float(), 2 * px + 1, stride=1, padding=px)[0, 0] > 0
    return bool((a.bool() <= gb).all() and (b.bool() <= ga).all())


# --- the committed copy ----------------------------------------------------------------------------------------

def test_committed_exports_match_the_manifest_hashes():
    files = {str(p.relative_to(EXPORTS)) for p in EXPORTS.rglob("*") if p.is_file()}
    assert files == set(MANIFEST["files"])
    for rel, digest in MANIFEST["files"].items():
        assert hashlib.sha256((EXPORTS / rel).read_bytes()).hexdigest() == digest, rel


def test_committed_exports_equal_a_fresh_generation(tmp_path):
    fresh = tool_exports.write_all(tmp_path / "exports")
    for rel in MANIFEST["files"]:
        a, b = EXPORTS / rel, fresh / rel
        if rel.endswith(".jpg"):
            assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b))), rel
        elif rel.endswith(".json"):
            assert json.loads(a.read_text()) == json.loads(b.read_text()), rel
        else:
            assert a.read_text() == b.read_text(), rel


# --- LabelMe as labelme means it ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def labelme_ds() -> LabelMeDataset:
    return open_dataset(EXPORTS / "labelme", classes=EXPORTS / "labelme" / "labels.txt")


def test_labels_txt_gives_the_classes_without_ignore_and_background(labelme_ds):
    assert read_class_file(EXPORTS / "labelme" / "labels.txt") == ["person", "bottle"]
    assert labelme_ds.classes == ["background", "person", "bottle"]


def test_grouped_shapes_are_one_instance_and_ignore_regions_none(labelme_ds):
    counts = [len(e.labels) for e in labelme_ds.entries]
    assert counts == [3, 2, 3]  # 6 + 3 + 5 shapes: groups merged, __ignore__, point, line, linestrip out
    assert labelme_ds.ignored_regions == 1
    _, t = labelme_ds[0]
    shapes = tool_exports.scenes()[0][1]
    union = np.maximum(rasterise_polygon(shapes[0]["points"], 72, 96), rasterise_polygon(shapes[1]["points"], 72, 96))
    assert torch.equal(t["masks"][0], torch.from_numpy(union))
    assert t["area"][0].item() == union.sum()
    ys, xs = np.nonzero(union)
    assert t["boxes"][0].tolist() == [xs.min(), ys.min(), xs.max(), ys.max()]  # the union's box


def test_one_group_id_with_two_labels_is_two_instances(labelme_ds):
    _, t = labelme_ds[2]
    assert [labelme_ds.classes[k] for k in t["labels"].tolist()] == ["bottle", "person", "bottle"]


def test_shapes_without_area_are_reported_not_dropped_silently(labelme_ds):
    dropped = [v for v in labelme_ds.load_violations if v.code == "ANNOTATION_DROPPED"]
    assert [(v.index, v.message.split(":")[0]) for v in dropped] == [
        (0, "scene_0.json shape 5"), (1, "scene_1.json shape 2"), (2, "scene_2.json shape 4")]
    assert all(v.field == "shape_type" and v.severity == "warning" for v in dropped)
    assert "point" in dropped[0].message and "linestrip" in dropped[1].message and "line" in dropped[2].message


def test_inline_image_data_loads_without_the_image_file(labelme_ds):
    assert not (EXPORTS / "labelme" / "scene_1.jpg").exists()
    img, t = labelme_ds[1]
    assert tuple(img.shape) == (3, 72, 96) and labelme_ds.get_height_and_width(1) == (72, 96)


def test_circle_and_mask_shapes_become_instances(labelme_ds):
    _, t = labelme_ds[1]
    circle, mask = t["masks"]
    ys, xs = torch.nonzero(circle, as_tuple=True)
    assert (xs.min().item(), xs.max().item(), ys.min().item(), ys.max().item()) == (20, 40, 20, 40)  # r = 10
    expected = np.zeros((72, 96), dtype=np.uint8)
    x0, y0 = tool_exports.MASK_ORIGIN
    patch = tool_exports._mask_patch()
    expected[y0:y0 + patch.shape[0], x0:x0 + patch.shape[1]] = patch
    assert torch.equal(mask, torch.from_numpy(expected))


def test_a_label_outside_the_class_file_is_an_error_naming_file_and_shape(tmp_path):
    root = tool_exports.write_labelme(tmp_path / "lm")
    doc = json.loads((root / "scene_2.json").read_text())
    doc["shapes"][0]["label"] = "Bottle"
    (root / "scene_2.json").write_text(json.dumps(doc))
    ds = LabelMeDataset(root, parse_classes(str(root / "labels.txt")))
    unknown = [v for v in ds.load_violations if v.code == "LABEL_UNKNOWN"]
    assert len(unknown) == 1 and unknown[0].severity == "error" and unknown[0].index == 2
    assert unknown[0].message.startswith("scene_2.json shape 0: label 'Bottle'")
    assert len(ds.entries[2].labels) == 2
    inferred = LabelMeDataset(root)  # without a class list the typo becomes a class of its own
    assert inferred.class_names == ["Bottle", "bottle", "person"]


@pytest.mark.parametrize("text,match", [("__ignore__\n_background_\n", "no object classes"),
                                        ("a\nb\na\n", "listed twice")])
def test_a_bad_class_file_is_refused_in_one_line(tmp_path, text, match):
    (tmp_path / "labels.txt").write_text(text)
    with pytest.raises(DatasetError, match=match):
        read_class_file(tmp_path / "labels.txt")


def test_a_class_list_may_be_comma_separated():
    assert parse_classes("person, bottle") == ["person", "bottle"]
    assert parse_classes(["person"]) == ["person"]


def test_a_shape_labelled_background_is_dropped_not_made_a_class(tmp_path):
    root = tool_exports.write_labelme(tmp_path / "lm")
    doc = json.loads((root / "scene_0.json").read_text())
    doc["shapes"][2]["label"] = "background"
    (root / "scene_0.json").write_text(json.dumps(doc))
    ds = open_dataset(root)
    assert ds.class_names == ["bottle", "person"]
    assert [v.message for v in ds.load_violations if v.code == "ANNOTATION_DROPPED" and v.field == "label"] == [
        "scene_0.json shape 2: label 'background' is the background, not an object class; the shape is not an "
        "instance"]


def test_a_byte_order_mark_in_labels_txt_is_not_part_of_its_first_name(tmp_path):
    (tmp_path / "labels.txt").write_text(tool_exports.LABELS_TXT, encoding="utf-8-sig")  # as Windows Notepad saves
    assert read_class_file(tmp_path / "labels.txt") == ["person", "bottle"]


# AppleDouble: what macOS writes beside each file copied to a non-Apple volume or zipped (binary, whatever its name)
APPLE_DOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        \x00\x02" + bytes(64)


def test_a_macos_appledouble_json_beside_labelme_files_is_skipped_with_a_warning(tmp_path):
    root = tool_exports.write_labelme(tmp_path / "lm")
    (root / "._scene_0.json").write_bytes(APPLE_DOUBLE)
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    assert detect_format(root) == "labelme"
    ds = open_dataset(root, classes=root / "labels.txt")
    assert [e.json_path.name for e in ds.entries] == ["scene_0.json", "scene_1.json", "scene_2.json"]
    skipped = [v for v in ds.load_violations if v.code == "FILE_SKIPPED"]
    assert len(skipped) == 1 and skipped[0].severity == "warning" and "._scene_0.json" in skipped[0].message
    assert validate_dataset(ds, num_classes=3).errors == []


def test_an_upper_case_json_extension_is_a_labelme_file(tmp_path):
    root = tool_exports.write_labelme(tmp_path / "lm")
    (root / "scene_2.json").rename(root / "scene_2.JSON")
    assert detect_format(root) == "labelme"
    ds = open_dataset(root, classes=root / "labels.txt")
    assert [e.json_path.name for e in ds.entries] == ["scene_0.json", "scene_1.json", "scene_2.JSON"]


# --- labelme2coco -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def parity(tmp_path_factory):
    """LabelMe files with area shapes only, and labelme2coco's export of them."""
    root = tmp_path_factory.mktemp("parity")
    src = tool_exports.write_labelme(root / "labelme", no_area=False)
    out = tool_exports.labelme2coco(src, root / "coco")
    return (LabelMeDataset(src, read_class_file(src / "labels.txt")),
            open_dataset(out, classes=src / "labels.txt"))


def test_labelme_and_its_labelme2coco_export_give_the_same_instances(parity):
    lm, coco = parity
    assert lm.classes == coco.classes == ["background", "person", "bottle"]
    assert len(lm) == len(coco) == 3
    for i in range(3):
        _, a = lm[i]
        _, b = coco[i]
        assert len(a["labels"]) == len(b["labels"]) > 0
        assert [lm.classes[k] for k in a["labels"]] == [coco.classes[k] for k in b["labels"]]
        for k, (ma, mb) in enumerate(zip(a["masks"], b["masks"])):
            # labelme draws a circle of radius r over 2r + 1 pixels, labelme2coco writes a 12-gon that
            # pycocotools fills over 2r: the one circle may differ by 2 px on one side
            circle = (i, k) == (1, 0)
            assert _within(ma, mb, 2 if circle else 1), (i, k)
            assert not circle or not _within(ma, mb, 1)
        assert torch.allclose(a["area"], b["area"])  # labelme2coco's area is the labelme-drawn mask's


def test_labelme2coco_background_category_is_not_a_class():
    ds = open_dataset(EXPORTS / "labelme2coco")
    assert isinstance(ds, CocoInstancesDataset)
    assert ds.classes == ["background", "person", "bottle"] and 0 not in ds.cat_id_to_label
    assert ds.images_dir == EXPORTS / "labelme2coco"  # JPEGImages/x.jpg is relative to annotations.json


def test_labelme2coco_export_passes_the_contract_but_for_what_it_mangles():
    ds = open_dataset(EXPORTS / "labelme2coco")
    report = validate_dataset(ds, num_classes=3)
    errors = [v for v in report.errors]
    # the point (2 numbers) and the 10 px line (4 numbers that are not its box's corners) are not polygons
    assert [(v.code, v.message.split(":")[0]) for v in errors] == [
        ("ANNOTATION_INVALID", "annotations.json annotation 3 on JPEGImages/scene_0.jpg"),
        ("ANNOTATION_INVALID", "annotations.json annotation 10 on JPEGImages/scene_2.jpg")]
    repaired = [v for v in report.violations if v.code == "ANNOTATION_REPAIRED"]
    assert len(repaired) == 1 and "annotation 2 " in repaired[0].message and "rectangle" in repaired[0].message
    assert "GETITEM_FAILED" not in report.codes()


def test_labelme2coco_rectangle_corners_are_read_as_the_rectangle():
    ds = open_dataset(EXPORTS / "labelme2coco")
    _, t = ds[0]
    ys, xs = torch.nonzero(t["masks"][2], as_tuple=True)
    # corners (80, 6) and (64, 30); pycocotools fills the rectangle's inside, pixels [64, 80) x [6, 30)
    assert (xs.min().item(), ys.min().item(), xs.max().item(), ys.max().item()) == (64, 6, 79, 29)


# --- CVAT and Roboflow -----------------------------------------------------------------------------------------

def test_cvat_coco_export_is_found_and_loads():
    root = EXPORTS / "cvat"
    assert detect_format(root) == "coco"
    ds = open_dataset(root)
    assert ds.images_dir == root / "images" / "default"
    assert ds.classes == ["background", "person", "bottle"]
    report = validate_dataset(ds, num_classes=3)
    assert report.errors == [], report.render_text()
    # the rectangle has segmentation [] beside polygons and masks: its mask is its box, said so; and the mask
    # Datumaro wrote with iscrowd 1 is read as an object, said so once
    assert sorted(v.field for v in report.violations if v.code.startswith("ANNOTATION")) == ["iscrowd",
                                                                                             "segmentation"]


def test_cvat_mask_is_an_uncompressed_rle_with_iscrowd_one_read_as_an_object():
    written = json.loads((EXPORTS / "cvat" / "annotations" / "instances_default.json").read_text())["annotations"]
    assert [a["iscrowd"] for a in written if isinstance(a["segmentation"], dict)] == [1]
    ds = open_dataset(EXPORTS / "cvat")
    _, t = ds[1]
    assert t["iscrowd"].tolist() == [0, 0]
    assert int(t["masks"][1].sum()) == int(tool_exports._mask_patch().sum())


def test_cvat_coco_keypoints_export_is_found_and_gives_n_k_3_keypoints(tmp_path):
    root = tool_exports.write_cvat_keypoints(tmp_path / "cvat")
    ds = open_dataset(root)
    assert ds.annotation_json.name == "person_keypoints_default.json" and ds.images_dir == root / "images" / "default"
    assert ds.classes == ["background", "person", "bottle"] and ds.num_keypoints == 3  # bottle: "keypoints": []
    _, t = ds[0]
    written = json.loads((root / "annotations" / "person_keypoints_default.json").read_text())["annotations"]
    assert t["keypoints"].dtype == torch.float32
    assert t["keypoints"].reshape(2, 9).tolist() == [a["keypoints"] for a in written]  # as written: no shift
    assert validate_dataset(ds, num_keypoints=3).errors == [] and ds.load_violations == []


def test_mask_rcnn_training_ignores_the_keypoints_of_a_keypoint_dataset(tmp_path):
    from reference.models import build_model
    from reference.training.fit import RECIPES, get_recipe, transforms_for

    root = tool_exports.write_cvat_keypoints(tmp_path / "cvat")
    path = root / "annotations" / "person_keypoints_default.json"
    doc = json.loads(path.read_text())
    for a in doc["annotations"]:  # outlined too: Mask R-CNN needs masks
        x, y, w, h = a["bbox"]
        a["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    path.write_text(json.dumps(doc))
    torch.manual_seed(0)
    model = build_model("small_maskrcnn", 3).train()
    for name in RECIPES:
        image, target = open_dataset(root, transforms=transforms_for(get_recipe(name), True))[0]
        assert "keypoints" in target
        losses = model([image], [target])
        assert all(torch.isfinite(v) for v in losses.values()), name


def test_roboflow_placeholder_category_is_not_a_class():
    ds = open_dataset(EXPORTS / "roboflow" / "train")
    assert ds.classes == ["background", "bottle", "person"]  # Roboflow numbers the classes by name
    assert 0 not in ds.cat_id_to_label
    assert validate_dataset(ds, num_classes=3).errors == []
    named = open_dataset(EXPORTS / "roboflow" / "train", classes=EXPORTS / "labelme" / "labels.txt")
    assert named.classes == ["background", "person", "bottle"] and named.cat_id_to_label == {1: 2, 2: 1}


def test_images_option_sets_the_image_root(tmp_path):
    ds = open_dataset(EXPORTS / "cvat" / "annotations" / "instances_default.json",
                      images=EXPORTS / "cvat" / "images" / "default")
    assert len(ds) == 3 and ds[2][0].shape[-2:] == (72, 96)
    wrong = open_dataset(EXPORTS / "cvat", images=tmp_path)
    with pytest.raises(DatasetError, match=r"scene_0.jpg is not under the image root .*--images DIR"):
        wrong[0]


def test_the_project_own_images_folder_layout_still_works(fixtures_dir):
    ds = open_dataset(fixtures_dir / "coco")
    assert ds.images_dir == fixtures_dir / "coco" / "images"
    assert validate_dataset(ds, num_classes=3).errors == []


# --- Label Studio ------------------------------------------------------------------------------------------------

def test_label_studio_coco_export_loads_from_its_result_json(tmp_path):
    root = tool_exports.write_label_studio(EXPORTS / "labelme", tmp_path / "ls")
    ds = open_dataset(root / "result.json")
    assert ds.classes == ["background", "bottle", "person"] and len(ds) == 3
    assert ds.load_violations == [] and validate_dataset(ds, num_classes=3).errors == []


def test_label_studio_upload_paths_are_read_from_the_image_root_by_base_name(tmp_path):
    copied = tool_exports.write_label_studio(EXPORTS / "labelme", tmp_path / "copied")
    root = tool_exports.write_label_studio(EXPORTS / "labelme", tmp_path / "ls", copied=False)
    for image in (copied / "images").iterdir():  # the user copies the uploads in by hand
        shutil.copy(image, root / "images")
    ds = open_dataset(root / "result.json")
    resolved = [v for v in ds.load_violations if v.code == "IMAGE_PATH_RESOLVED"]
    assert len(resolved) == 3 and "'/data/upload/3/" in resolved[0].message
    assert ds.images_dir == root / "images" and validate_dataset(ds, num_classes=3).errors == []


def test_label_studio_upload_paths_without_the_images_leave_out_those_images_only(tmp_path):
    root = tool_exports.write_label_studio(EXPORTS / "labelme", tmp_path / "ls", copied=False)
    ds = open_dataset(root / "result.json")
    codes = [v.code for v in ds.load_violations]
    assert len(ds) == 0 and codes.count("IMAGE_ENTRY_INVALID") == 3
    assert set(codes) == {"IMAGE_ENTRY_INVALID", "ANNOTATION_INVALID"}  # each annotation: its image left out
