"""Image files as cameras and tools write them: every EXIF orientation on every layout, declared sizes, the pixel
modes users' files hold, and the frame check of a user's own dataset."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from reference.cli import main
from reference.contract import validate_dataset
from reference.data import CocoInstancesDataset, DatasetError, LabelMeDataset, PennFudanDataset, open_dataset
from reference.data.images import read_header, read_rgb
from reference.testing.strategies import SampleListDataset, tagged_photo
from reference.testing.synthetic import generate

from spec_tests.conftest import FIXTURES

EXPORTS = FIXTURES / "exports"
ORIENTATIONS = range(1, 9)
# The transpose that turns upright pixels into what a camera stores for each tag (the inverse of the tag's).
TO_STORED = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
             5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
             8: Image.Transpose.ROTATE_270}
# Mean absolute difference (0-255) between an upright original and the same picture re-encoded as a quality-100
# JPEG in the stored frame and read back upright: measured below 1.5 on the fixtures' scenes; a picture read in
# the wrong orientation differs by more than 20.
JPEG_REENCODE_MAD = 3.0


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def as_phone_photo(path: Path, orientation: int) -> None:
    """Rewrite an upright image file as a camera stores it: the pixels turned back, the tag saying how to turn
    them upright (JPEG at quality 100, PNG with an eXIf chunk)."""
    with Image.open(path) as im:
        fmt, upright = im.format, im.convert("RGB")
    stored = upright.transpose(TO_STORED[orientation]) if orientation != 1 else upright
    extra = {"quality": 100, "subsampling": 0} if fmt == "JPEG" else {}
    stored.save(path, format=fmt, exif=_exif(orientation), **extra)


def tag_left_on(path: Path, orientation: int) -> None:
    """Add an EXIF orientation tag to a JPEG without touching its pixels (an APP1 segment after SOI)."""
    data = path.read_bytes()
    payload = _exif(orientation)
    if not payload.startswith(b"Exif\x00\x00"):
        payload = b"Exif\x00\x00" + payload
    path.write_bytes(data[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + data[2:])


def _copy(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(EXPORTS / name, tmp_path / name))


def _mad(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().mean())


def _assert_same_sample(got, want, *, exact_pixels: bool, stored_file: Path | None = None):
    (img, t), (img0, t0) = got, want
    assert img.shape == img0.shape
    if exact_pixels:
        assert torch.equal(img, img0)
    else:
        assert _mad(img, img0) < JPEG_REENCODE_MAD
    if stored_file is not None:  # the same pixels as Pillow's (and labelme's, detectron2's) upright reading
        with Image.open(stored_file) as im:
            upright = np.array(ImageOps.exif_transpose(im).convert("RGB"))
        assert torch.equal(img, torch.from_numpy(upright).permute(2, 0, 1))
    assert torch.allclose(t["boxes"], t0["boxes"], atol=1.0)
    assert torch.equal(t["labels"], t0["labels"])
    if "masks" in t0:
        assert torch.equal(t["masks"], t0["masks"])


def _no_errors(folder: Path, *extra: str) -> None:
    for fast in ((), ("--headers-only",)):
        assert main(["--quiet", "validate", str(folder), *extra, *fast]) == 0, (folder, fast)


# --- every orientation on every layout ---------------------------------------------------------------------

@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_labelme_phone_photo_is_read_upright_as_labelme_shows_it(tmp_path, orientation):
    original = LabelMeDataset(EXPORTS / "labelme")
    folder = _copy("labelme", tmp_path)
    as_phone_photo(folder / "scene_0.jpg", orientation)
    tagged = LabelMeDataset(folder)
    i = [e.json_path.name for e in tagged.entries].index("scene_0.json")
    _assert_same_sample(tagged[i], original[i], exact_pixels=False, stored_file=folder / "scene_0.jpg")
    assert tagged.get_height_and_width(i) == (72, 96)
    header, _ = tagged.header_sample(i)
    assert (header.height, header.width) == (72, 96)
    _no_errors(folder, "--classes", str(folder / "labels.txt"))


def _findings(ds, **kw) -> list[tuple]:
    return [(v.code, v.index, v.message) for v in validate_dataset(ds, **kw).violations]


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_labelme2coco_image_with_a_tag_left_on_is_not_turned_twice(tmp_path, orientation):
    original = open_dataset(EXPORTS / "labelme2coco")
    folder = _copy("labelme2coco", tmp_path)
    tag_left_on(folder / "JPEGImages" / "scene_0.jpg", orientation)
    assert read_header(folder / "JPEGImages" / "scene_0.jpg").orientation == orientation
    tagged = open_dataset(folder)
    _assert_same_sample(tagged[0], original[0], exact_pixels=True)
    for fast in (False, True):  # the export's own findings (its 4-number polygons), and nothing more
        assert _findings(tagged, headers_only=fast) == _findings(original, headers_only=fast)


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_cvat_coco_photo_is_read_upright_as_cvat_shows_it(tmp_path, orientation):
    ann = "annotations/instances_default.json"
    original = CocoInstancesDataset(None, EXPORTS / "cvat" / ann)
    folder = _copy("cvat", tmp_path)
    stored = folder / "images" / "default" / "scene_0.jpg"
    as_phone_photo(stored, orientation)
    tagged = CocoInstancesDataset(None, folder / ann)
    _assert_same_sample(tagged[0], original[0], exact_pixels=False, stored_file=stored)
    for fast in ((), ("--headers-only",)):
        assert main(["--quiet", "validate", str(folder / ann), *fast]) == 0


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_pennfudan_photo_is_read_upright_when_its_mask_is(tmp_path, orientation):
    folder = generate("pennfudan", tmp_path / "pf", count=2, seed=3)
    original = PennFudanDataset(folder)
    want = original[0]
    as_phone_photo(original.images[0], orientation)
    _assert_same_sample(PennFudanDataset(folder)[0], want, exact_pixels=True)
    _no_errors(folder)


@pytest.mark.parametrize("orientation", (5, 6, 7, 8))
def test_a_record_declaring_the_stored_size_is_read_as_stored_with_a_warning(tmp_path, orientation):
    folder = _copy("labelme", tmp_path)
    with Image.open(folder / "scene_0.jpg") as im:  # pixels stay as they are; the tag says "turn by 90 degrees"
        im.convert("RGB").save(folder / "scene_0.jpg", quality=100, exif=_exif(orientation))
    ds = LabelMeDataset(folder)
    i = [e.json_path.name for e in ds.entries].index("scene_0.json")
    img, _ = ds[i]
    assert tuple(img.shape[-2:]) == (72, 96)
    report = validate_dataset(ds)
    assert report.ok, report.render_text()
    assert [v.index for v in report.violations if v.code == "EXIF_STORED_FRAME"] == [i]


# --- declared sizes ------------------------------------------------------------------------------------------

def _labelme_declaring(tmp_path: Path, height: int, width: int) -> Path:
    import json

    folder = _copy("labelme", tmp_path)
    doc = json.loads((folder / "scene_0.json").read_text())
    doc["imageHeight"], doc["imageWidth"] = height, width
    (folder / "scene_0.json").write_text(json.dumps(doc))
    return folder


def test_labelme_declared_size_other_than_the_image_is_reported_naming_both_sizes(tmp_path):
    folder = _labelme_declaring(tmp_path, 144, 192)  # labelled at twice the size, then resized
    report = validate_dataset(LabelMeDataset(folder))
    found = [v for v in report.violations if v.code == "DECLARED_SIZE_MISMATCH"]
    assert len(found) == 1 and "scene_0.json" in found[0].message
    assert "192x144" in found[0].message and "96x72" in found[0].message
    assert found[0].severity == "error"


def test_a_swapped_declared_size_hints_at_the_exif_orientation(tmp_path):
    folder = _labelme_declaring(tmp_path, 96, 72)
    found = [v for v in validate_dataset(LabelMeDataset(folder)).violations if v.code == "DECLARED_SIZE_MISMATCH"]
    assert len(found) == 1 and "swapped" in found[0].hint and "EXIF" in found[0].hint


def test_declared_size_mismatch_is_found_by_the_headers_only_path_too(tmp_path):
    folder = _labelme_declaring(tmp_path, 144, 192)
    assert main(["--quiet", "validate", str(folder), "--headers-only"]) == 1
    report = validate_dataset(LabelMeDataset(folder), headers_only=True)
    assert "DECLARED_SIZE_MISMATCH" in report.codes()


def test_coco_declared_size_other_than_the_image_is_reported(tmp_path):
    import json

    folder = _copy("cvat", tmp_path)
    ann = folder / "annotations" / "instances_default.json"
    doc = json.loads(ann.read_text())
    doc["images"][0]["width"] = 200
    ann.write_text(json.dumps(doc))
    report = validate_dataset(CocoInstancesDataset(None, ann))
    found = [v for v in report.violations if v.code == "DECLARED_SIZE_MISMATCH"]
    assert len(found) == 1 and "scene_0.jpg" in found[0].message and "200x72" in found[0].message


# --- pixel modes ---------------------------------------------------------------------------------------------

def _gradient(h: int = 12, w: int = 10) -> np.ndarray:
    return (np.arange(h * w).reshape(h, w) * 255 // (h * w - 1)).astype(np.uint8)


def _save(im: Image.Image, path: Path, **kw) -> Path:
    im.save(path, **kw)
    return path


def test_a_16_bit_grayscale_png_is_scaled_to_8_bits_not_clipped_to_white(tmp_path):
    wide = (_gradient().astype(np.uint16) * 257)  # 0..65535
    path = _save(Image.fromarray(wide), tmp_path / "depth.png")
    assert Image.open(path).mode == "I;16"
    img = read_rgb(path)
    assert torch.equal(img[0], torch.from_numpy(_gradient())) and torch.equal(img[0], img[2])


@pytest.mark.parametrize("mode", ["L", "P", "LA", "RGBA", "1"])
def test_common_png_modes_are_read_as_rgb(tmp_path, mode):
    rgb = Image.fromarray(np.stack([_gradient()] * 3, axis=2))
    src = rgb.convert(mode)
    img = read_rgb(_save(src, tmp_path / f"x_{mode}.png"))
    assert img.shape == (3, 12, 10) and img.dtype == torch.uint8
    assert torch.equal(img, torch.from_numpy(np.array(src.convert("RGB"))).permute(2, 0, 1))


def test_a_cmyk_jpeg_is_converted_to_rgb(tmp_path):
    rgb = Image.fromarray(np.stack([_gradient(), 255 - _gradient(), _gradient()], axis=2))
    path = _save(rgb.convert("CMYK"), tmp_path / "print.jpg", quality=100)
    assert Image.open(path).mode == "CMYK"
    assert _mad(read_rgb(path), torch.from_numpy(np.array(rgb)).permute(2, 0, 1)) < 8


def test_a_progressive_jpeg_is_read(tmp_path):
    rgb = Image.fromarray(np.stack([_gradient(64, 48)] * 3, axis=2))
    path = _save(rgb, tmp_path / "p.jpg", progressive=True, quality=95)
    assert _mad(read_rgb(path), torch.from_numpy(np.array(rgb)).permute(2, 0, 1)) < 3


def test_a_truncated_jpeg_is_one_error_naming_the_file(tmp_path):
    path = _save(Image.fromarray(np.stack([_gradient(64, 48)] * 3, axis=2)), tmp_path / "cut.jpg")
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DatasetError, match=r"cut\.jpg: cannot decode image"):
        read_rgb(path)


def test_a_float_image_is_refused_naming_the_file_and_mode(tmp_path):
    path = _save(Image.fromarray(np.ones((4, 4), dtype=np.float32)), tmp_path / "f.tiff")
    with pytest.raises(DatasetError, match=r"f\.tiff: a floating-point image \(mode F\)"):
        read_rgb(path)


def test_a_decompression_bomb_is_one_error_naming_the_file_on_both_paths(tmp_path, monkeypatch):
    path = _save(Image.new("RGB", (64, 64)), tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 pixels > 2 x 1000
    for read in (read_rgb, read_header):
        with pytest.raises(DatasetError, match=r"bomb\.png: .*DecompressionBomb"):
            read(path)


def test_an_oversized_inline_image_data_is_one_finding_not_a_traceback(tmp_path, monkeypatch):
    import json

    folder = _copy("labelme", tmp_path)
    doc = json.loads((folder / "scene_1.json").read_text())
    doc["imageHeight"] = doc["imageWidth"] = None  # nothing declared: the inline image's own header is read
    (folder / "scene_1.json").write_text(json.dumps(doc))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # its 96 x 72 pixels are now a "bomb"
    ds = LabelMeDataset(folder, ["person", "bottle"])
    inline = [e.json_path.name for e in ds.entries].index("scene_1.json")
    failed = [v for v in validate_dataset(ds).violations if v.index == inline and v.severity == "error"]
    assert len(failed) == 1
    assert "scene_1.json imageData" in failed[0].message and "DecompressionBomb" in failed[0].message


@pytest.mark.parametrize("name", ["Straße 1.jpg", "photo 2.JPG"])
def test_non_ascii_space_and_upper_case_image_names_are_read(tmp_path, name):
    import json

    folder = _copy("labelme", tmp_path)
    (folder / "scene_0.jpg").rename(folder / name)
    doc = json.loads((folder / "scene_0.json").read_text())
    doc["imagePath"] = name
    (folder / "scene_0.json").write_text(json.dumps(doc, ensure_ascii=False))
    ds = LabelMeDataset(folder)
    i = [e.json_path.name for e in ds.entries].index("scene_0.json")
    assert ds[i][0].shape == (3, 72, 96)


# --- a user's own dataset ------------------------------------------------------------------------------------

def _one(image, box):
    target = {"boxes": torch.tensor([box]), "labels": torch.tensor([1]), "image_id": 0,
              "area": torch.tensor([(box[2] - box[0]) * (box[3] - box[1])]),
              "iscrowd": torch.zeros((1,), dtype=torch.int64)}
    return SampleListDataset([(image, target)])


def test_a_tagged_pil_photo_whose_boxes_fit_only_the_upright_frame_is_a_frame_mismatch():
    photo = tagged_photo(10, 20, orientation=6).convert("RGB")  # as a tutorial's Image.open(p).convert("RGB")
    report = validate_dataset(_one(photo, [1.0, 12.0, 8.0, 18.0]), num_classes=2)
    assert report.codes() == {"EXIF_FRAME_MISMATCH"}
    assert "orientation 6" in report.errors[0].message and "exif_transpose" in report.errors[0].hint


def test_a_tagged_pil_photo_whose_boxes_fit_only_the_stored_frame_is_reported():
    photo = tagged_photo(10, 20, orientation=6)
    report = validate_dataset(_one(photo, [1.0, 1.0, 18.0, 8.0]), num_classes=2)
    assert report.ok and report.codes() == {"EXIF_STORED_FRAME"}


def test_a_transposed_photo_has_no_orientation_finding():
    photo = ImageOps.exif_transpose(tagged_photo(10, 20, orientation=6))
    assert validate_dataset(_one(photo, [1.0, 12.0, 8.0, 18.0]), num_classes=2).codes() == set()


class _ReadImageDataset(SampleListDataset):
    """The tutorial's way: a tensor from the file as stored, and the file named by ``image_path``."""

    def __init__(self, path: Path, box):
        pixels = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)
        super().__init__(list(_one(pixels, box).samples))
        self.path = path

    def image_path(self, i: int) -> Path:
        return self.path


def test_a_stored_frame_tensor_of_a_tagged_file_named_by_image_path_is_checked(tmp_path):
    path = tmp_path / "phone.jpg"
    tagged_photo(10, 20, orientation=8).save(path, exif=_exif(8))
    report = validate_dataset(_ReadImageDataset(path, [1.0, 12.0, 8.0, 18.0]), num_classes=2)
    assert report.codes() == {"EXIF_FRAME_MISMATCH"} and "phone.jpg" in report.errors[0].message


# --- PennFudan masks that are not id maps ------------------------------------------------------------------

def test_pennfudan_anti_aliased_mask_values_are_not_instances(tmp_path):
    folder = generate("pennfudan", tmp_path / "pf", count=1, seed=5)
    ds = PennFudanDataset(folder)
    n = len(ds[0][1]["labels"])
    ids = np.array(Image.open(ds.masks[0]))
    h, w = ids.shape
    smooth = Image.fromarray(ids * 100).resize((w * 2, h * 2), Image.Resampling.NEAREST) \
        .resize((w, h), Image.Resampling.BILINEAR)  # the edges blend: values between 0, 100 and 200
    blended = np.array(smooth)
    assert len(np.unique(blended)) > n + 3
    Image.fromarray(blended).save(ds.masks[0])
    ds = PennFudanDataset(folder)
    report = validate_dataset(ds)
    assert len(ds[0][1]["labels"]) == n
    dropped = [v for v in report.violations if v.code == "ANNOTATION_DROPPED"]
    assert len(dropped) == 1 and "anti-aliased" in dropped[0].message


def test_pennfudan_one_pixel_thin_instance_is_kept(tmp_path):
    folder = generate("pennfudan", tmp_path / "pf", count=1, seed=5)
    ds = PennFudanDataset(folder)
    ids = np.array(Image.open(ds.masks[0]))
    ids[0:6, 0] = ids.max() + 1  # a one-pixel-wide instance against the border
    Image.fromarray(ids).save(ds.masks[0])
    assert len(PennFudanDataset(folder)[0][1]["labels"]) == len(np.unique(ids)) - 1


def test_the_header_of_inline_image_bytes_is_read():
    buf = io.BytesIO()
    Image.new("RGB", (4, 3)).save(buf, format="PNG")
    assert read_header(buf.getvalue()).stored == (3, 4)
