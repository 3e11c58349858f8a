"""``read_header`` reads a JPEG's size and EXIF orientation from its segments, as Pillow's opening gives them,
on every kind of JPEG cameras and tools write and on damaged ones; what it does not read plainly it leaves to
Pillow, so the answer (or the error naming the file) is Pillow's either way."""

from __future__ import annotations

import io
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from PIL import Image

from reference.data import DatasetError
from reference.data import images
from reference.data.images import read_header


def _picture(mode: str = "RGB", size: tuple[int, int] = (37, 23)) -> Image.Image:
    rng = np.random.default_rng(0)
    bands = {"L": 1, "RGB": 3, "CMYK": 4}[mode]
    pixels = rng.integers(0, 256, (size[1], size[0], bands), dtype=np.uint8)
    return Image.fromarray(pixels.squeeze(-1) if bands == 1 else pixels, mode)


def _exif(orientation: int | None, *, thumbnail_bytes: int = 0) -> bytes:
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    exif[0x010E] = "x" * thumbnail_bytes  # ImageDescription: a payload as large as a camera's thumbnail
    return exif.tobytes()


def _jpeg(**save) -> bytes:
    mode = save.pop("mode", "RGB")
    buf = io.BytesIO()
    _picture(mode).save(buf, format="JPEG", **save)
    return buf.getvalue()


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload


def _after_soi(data: bytes, *segments: bytes) -> bytes:
    return data[:2] + b"".join(segments) + data[2:]


XMP = b'<x:xmpmeta><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'
PLAIN = {
    "baseline": lambda: _jpeg(),
    "quality_100_no_subsampling": lambda: _jpeg(quality=100, subsampling=0),
    "progressive": lambda: _jpeg(progressive=True),
    "optimized": lambda: _jpeg(optimize=True),
    "grayscale": lambda: _jpeg(mode="L"),
    "cmyk": lambda: _jpeg(mode="CMYK"),
    "dpi": lambda: _jpeg(dpi=(300, 300)),
    "comment": lambda: _jpeg(comment=b"made by a camera"),
    "restart_markers": lambda: _jpeg(restart_marker_blocks=1),
    "icc_profile": lambda: _jpeg(icc_profile=b"\0" * 200),
    "icc_profile_over_two_segments": lambda: _jpeg(icc_profile=b"\0" * 70_000),
    **{f"exif_orientation_{o}": (lambda o=o: _jpeg(exif=_exif(o))) for o in range(1, 9)},
    "exif_without_orientation": lambda: _jpeg(exif=_exif(None)),
    "exif_orientation_out_of_range": lambda: _jpeg(exif=_exif(9)),
    "exif_with_a_large_thumbnail": lambda: _jpeg(exif=_exif(6, thumbnail_bytes=30_000)),
    "two_exif_segments": lambda: (lambda d, at: d[:at] + _segment(0xE1, b"Exif\0\0" + b"\0" * 8) + d[at:])(
        _jpeg(exif=_exif(3)), _jpeg(exif=_exif(3)).index(b"\xff\xdb")),
    "other_app1": lambda: _after_soi(_jpeg(), _segment(0xE1, b"not exif at all")),
    "adobe_app14": lambda: _after_soi(_jpeg(), _segment(0xEE, b"Adobe\0\x64\0\0\0\0\x01")),
}
DEFERRED = {  # left to Pillow: what they say is Pillow's to interpret
    "xmp_orientation": lambda: _jpeg(xmp=XMP),
    "exif_and_xmp": lambda: _jpeg(exif=_exif(None), xmp=XMP),
    "padding_between_segments": lambda: (lambda d: d[:2] + b"\xff\xff" + d[2:])(_jpeg()),
    "junk_between_segments": lambda: (lambda d: d[:2] + b"\x00\x13" + d[2:])(_jpeg()),
    "truncated_at_40": lambda: _jpeg()[:40],
    "truncated_at_300": lambda: _jpeg()[:300],
    "zero_length_segment": lambda: _after_soi(_jpeg(), b"\xff\xfe\x00\x00"),
    "short_quantization_table": lambda: _after_soi(_jpeg(), _segment(0xDB, b"\x00" + b"\x01" * 30)),
    "short_adobe_app14": lambda: _after_soi(_jpeg(), _segment(0xEE, b"Adobe")),
    "twelve_bit_frame": lambda: (lambda d, at: d[:at + 4] + b"\x0c" + d[at + 5:])(_jpeg(), _jpeg().index(b"\xff\xc0")),
    "two_layer_frame": lambda: (lambda d, at: d[:at + 9] + b"\x02" + d[at + 10:])(_jpeg(), _jpeg().index(b"\xff\xc0")),
    "unknown_marker": lambda: _after_soi(_jpeg(), b"\xff\x02"),
    "broken_exif": lambda: _after_soi(_jpeg(), _segment(0xE1, b"Exif\0\0" + b"\0" * 8)),
}


def _as_pillow_reads_it(path: Path):
    """read_header's answer with the segment reader out of the way: Pillow's opening alone."""
    with mock.patch.object(images, "_jpeg_header", lambda f, head: None):
        return _outcome(path)


def _outcome(path: Path):
    try:
        return read_header(path)
    except DatasetError as exc:
        return f"DatasetError: {exc}"


@pytest.mark.parametrize("kind", sorted(PLAIN) + sorted(DEFERRED))
def test_a_jpeg_header_reads_as_pillow_opens_it(tmp_path, kind):
    path = tmp_path / f"{kind}.jpg"
    path.write_bytes({**PLAIN, **DEFERRED}[kind]())
    assert _outcome(path) == _as_pillow_reads_it(path)


@pytest.mark.parametrize("kind", sorted(PLAIN))
def test_a_plain_jpeg_header_is_read_without_pillow(tmp_path, kind):
    path = tmp_path / f"{kind}.jpg"
    path.write_bytes(PLAIN[kind]())
    with mock.patch.object(images, "_open", side_effect=AssertionError("Pillow opened the file")):
        info = read_header(path)
    with Image.open(path) as im:
        assert info.stored == (im.height, im.width)


@pytest.mark.parametrize("kind", sorted(DEFERRED))
def test_a_jpeg_the_segment_reader_cannot_read_plainly_goes_to_pillow(tmp_path, kind):
    path = tmp_path / f"{kind}.jpg"
    path.write_bytes(DEFERRED[kind]())
    with open(path, "rb") as f:
        head = f.read(images.JPEG_READ)
        assert images._jpeg_header(f, head) is None


def test_the_xmp_orientation_pillow_reads_is_kept(tmp_path):
    path = tmp_path / "xmp.jpg"
    path.write_bytes(DEFERRED["xmp_orientation"]())
    assert read_header(path).orientation == 6


def test_a_jpeg_of_more_pixels_than_pillow_opens_is_refused_by_the_segment_reader_too(tmp_path, monkeypatch):
    path = tmp_path / "big.jpg"
    path.write_bytes(_jpeg())
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 37 x 23 = 851 pixels: more than twice the limit
    with pytest.raises(DatasetError, match="DecompressionBombError"):
        read_header(path)
