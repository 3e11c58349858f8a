"""Image files as cameras and tools write them: the EXIF orientation, the pixel modes, the declared size.

A camera stores the pixels as the sensor saw them and records in the EXIF Orientation tag (1-8) how to turn
them upright. Annotation tools show the upright picture (labelme's ``apply_exif_orientation``, CVAT, detectron2's
``read_image``, torchvision's ``decode_image(apply_exif_orientation=True)``), so their annotations are in the
upright frame; :func:`read_rgb` applies the tag unless told the annotations are in the stored frame, and
:func:`choose_frame` decides that from the size an annotation file declares. :func:`read_header` gives both
sizes and the tag without decoding a pixel (a PNG's chunks and a plain JPEG's segments are walked directly;
other files, and a JPEG with anything the walk does not know, through Pillow, which reads only the header on
open).

Modes: RGB is kept; 16-bit grayscale (``I;16``, and ``I`` within 16 bits) is scaled to 8 bits, as viewers show
it (Pillow's own conversion clips it to white); every other Pillow mode (L, 1, P, LA, PA, RGBA, CMYK, YCbCr, ...)
is converted by Pillow, dropping alpha as torchvision's ``ImageReadMode.RGB`` does. A float image, a
decompression bomb, a truncated or undecodable file is a :class:`~reference.data.common.DatasetError`
naming the file.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np
import torch
from PIL import Image

from .common import DatasetError, SampleError, max_image_pixels

ORIENTATION_TAG = 0x0112
# Pillow's transpose for each EXIF orientation (the tag says how the stored pixels must turn to be upright).
TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
             5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
             8: Image.Transpose.ROTATE_90}
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

Source = Path | bytes


@dataclass(frozen=True)
class ImageHeaderInfo:
    """What an image file's header says: the stored (height, width) and the EXIF orientation (1 when absent)."""

    stored: tuple[int, int]
    orientation: int = 1

    @property
    def swaps_axes(self) -> bool:
        """Whether turning upright exchanges height and width (orientations 5 to 8)."""
        return self.orientation >= 5

    @property
    def upright(self) -> tuple[int, int]:
        """(height, width) once the orientation is applied."""
        h, w = self.stored
        return (w, h) if self.swaps_axes else (h, w)

    def size(self, apply_orientation: bool) -> tuple[int, int]:
        return self.upright if apply_orientation else self.stored


def _name(source: Source, what: str | None) -> str:
    return what or (str(source) if isinstance(source, Path) else "inline image data")


def _open(source: Source) -> Image.Image:
    return Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)


def _valid(orientation: object) -> int:
    """The tag's value when it is one of 1-8, else 1 (as Pillow's ``exif_transpose`` ignores others)."""
    return orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else 1


def orientation_of(im: Image.Image) -> int:
    """The EXIF orientation an opened image carries (1 when none), without decoding its pixels.

    For a PNG only an ``eXIf`` chunk before the image data is seen (Pillow would decode the whole file to look
    further; the PNG extensions place it before IDAT)."""
    if im.format == "PNG" and "exif" not in im.info:
        return 1
    return _valid(im.getexif().get(ORIENTATION_TAG, 1))


def _png_header(f: BinaryIO, head: bytes) -> ImageHeaderInfo:
    """A PNG's size from IHDR and its orientation from an eXIf chunk, walking the chunks up to the image data."""
    h, w = int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big")
    f.seek(8)
    while True:
        chunk = f.read(8)
        if len(chunk) < 8:
            return ImageHeaderInfo((h, w))
        length, kind = int.from_bytes(chunk[:4], "big"), chunk[4:]
        if kind in (b"IDAT", b"IEND"):
            return ImageHeaderInfo((h, w))
        if kind == b"eXIf":
            exif = Image.Exif()
            exif.load(f.read(length))
            return ImageHeaderInfo((h, w), _valid(exif.get(ORIENTATION_TAG, 1)))
        f.seek(length + 4, io.SEEK_CUR)  # the data and its CRC


# JPEG markers a plain file holds before its scan, each followed by a segment length: APP0-15, DQT, DHT, DRI, COM;
# the frame headers (SOF0-15 but DHT, JPG and DAC) give the size; SOS starts the scan.
_JPEG_SEGMENTS = frozenset([*range(0xE0, 0xF0), 0xDB, 0xC4, 0xDD, 0xFE])
_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_SCAN = 0xDA
_EXIF_APP1 = b"Exif\0\0"
_XMP_APP1 = b"http://ns.adobe.com/xap/1.0/\0"
JPEG_READ = 4096  # bytes read at once while walking the segments (a camera's EXIF thumbnail needs more reads)


def _jpeg_header(f: BinaryIO, head: bytes) -> ImageHeaderInfo | None:
    """A plain JPEG's size and orientation as Pillow's opening gives them, from its segments up to the scan, in
    far less time than Pillow takes to open it; None for anything else (padding or junk between segments, a
    marker not listed above, an XMP packet, which may hold the orientation, a frame Pillow refuses, a file that
    ends early): Pillow then reads it."""
    buf, pos, size, exif = head, 2, None, None
    while True:
        if pos + 4 > len(buf):
            more = f.read(JPEG_READ)
            if not more:
                return None
            buf += more
            continue
        if buf[pos] != 0xFF:
            return None
        marker = buf[pos + 1]
        if marker == _JPEG_SCAN:
            break
        if marker not in _JPEG_SEGMENTS and marker not in _JPEG_FRAMES:
            return None
        length = int.from_bytes(buf[pos + 2:pos + 4], "big")
        if length < 2:
            return None
        end = pos + 2 + length
        while end + 2 > len(buf):
            more = f.read(max(JPEG_READ, end + 2 - len(buf)))
            if not more:
                return None
            buf += more
        segment = buf[pos + 4:end]
        if marker in _JPEG_FRAMES:
            if len(segment) < 6 or segment[0] != 8 or segment[5] not in (1, 3, 4):
                return None
            size = (int.from_bytes(segment[1:3], "big"), int.from_bytes(segment[3:5], "big"))
        elif marker == 0xE1 and segment.startswith(_EXIF_APP1):
            exif = segment if exif is None else exif + segment[6:]  # Pillow joins them so
        elif not _plain_segment(marker, segment):
            return None
        pos = end
    if size is None or 0 in size:
        return None
    if exif is None:
        return ImageHeaderInfo(size)
    tags = Image.Exif()
    try:
        tags.load(exif)
    except Exception:  # noqa: BLE001 - what Pillow makes of a broken EXIF depends on the rest of the file
        return None
    return ImageHeaderInfo(size, _valid(tags.get(ORIENTATION_TAG, 1)))


def _plain_segment(marker: int, segment: bytes) -> bool:
    """Whether Pillow's opening reads nothing from this segment that bears on the size or orientation, nor fails
    on it: not an XMP packet (its ``tiff:Orientation`` counts where EXIF has none), a multi-picture index (MPO),
    a truncated ICC profile chunk or Adobe marker, or a quantization table Pillow refuses."""
    if marker == 0xE1:
        return not segment.startswith(_XMP_APP1)
    if marker == 0xE2:
        return not segment.startswith(b"MPF\0") and not (segment.startswith(b"ICC_PROFILE\0") and len(segment) < 14)
    if marker == 0xEE:
        return not (segment.startswith(b"Adobe") and len(segment) < 7)
    if marker == 0xDB:
        at = 0
        while at < len(segment):
            at += 1 + (1 if segment[at] < 16 else 2) * 64
        return at == len(segment)
    return True


def _checked(info: ImageHeaderInfo) -> ImageHeaderInfo:
    """``info``, or the error Pillow raises on opening an image of more pixels than it decodes."""
    if info.stored[0] * info.stored[1] > max_image_pixels():
        raise Image.DecompressionBombError(f"{info.stored[0] * info.stored[1]} pixels")
    return info


def read_header(source: Source, *, what: str | None = None) -> ImageHeaderInfo:
    """Stored size and orientation from the file header, no pixel decoded; DatasetError naming the file.
    A PNG's chunks and a plain JPEG's segments are read here, other files by Pillow's opening."""
    try:
        if isinstance(source, Path):
            with open(source, "rb") as f:
                head = f.read(JPEG_READ)
                if head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR":
                    return _checked(_png_header(f, head))
                if head[:3] == b"\xff\xd8\xff":
                    info = _jpeg_header(f, head)
                    if info is not None:
                        return _checked(info)
        with _open(source) as im:  # opening reads the header only
            return ImageHeaderInfo((im.height, im.width), orientation_of(im))
    except Exception as exc:  # noqa: BLE001 - name the file whatever the parser said
        raise DatasetError(f"{_name(source, what)}: cannot read image header ({type(exc).__name__}: {exc})") from exc


def _rgb_array(im: Image.Image, name: str) -> np.ndarray:
    """[H, W, 3] uint8 pixels of an opened image in any mode (see the module docstring)."""
    if im.mode == "RGB":
        return np.array(im, dtype=np.uint8)
    if im.mode in SIXTEEN_BIT_MODES or im.mode == "I":
        wide = np.asarray(im).astype(np.int64)
        if wide.min(initial=0) < 0 or wide.max(initial=0) > 65535:
            raise DatasetError(f"{name}: a 32-bit integer image (mode I) with values outside 0..65535; not a "
                               "picture a viewer shows; save it as 8 or 16 bits")
        gray = ((wide * 255 + 32767) // 65535).astype(np.uint8)  # 0..65535 -> 0..255, rounded
        return np.repeat(gray[:, :, None], 3, axis=2)
    if im.mode == "F":
        raise DatasetError(f"{name}: a floating-point image (mode F) has no display range; save it as 8 or 16 "
                           "bits")
    return np.array(im.convert("RGB"), dtype=np.uint8)


def read_rgb(source: Source, *, apply_orientation: bool | Callable[[ImageHeaderInfo], bool] = True,
             what: str | None = None) -> torch.Tensor:
    """Decode an image file (a path or its bytes) to a uint8 [3, H, W] tensor, upright unless
    ``apply_orientation`` is False, or as a callable decides from the file's header (read in the same opening:
    a loader choosing the frame from the declared size opens each file once); DatasetError naming the file for
    anything that cannot be decoded.

    Pillow decodes (the same pixels as ``torchvision.io.decode_image`` for PNG), since torchvision's own
    decoders are deprecated from 0.29 on.
    """
    name = _name(source, what)
    try:
        with _open(source) as im:
            orientation = orientation_of(im)
            if callable(apply_orientation):
                apply_orientation = apply_orientation(ImageHeaderInfo((im.height, im.width), orientation))
            im.load()
            if apply_orientation and orientation in TRANSPOSE:
                turned = im.transpose(TRANSPOSE[orientation])
                pixels = _rgb_array(turned, name)
            else:
                pixels = _rgb_array(im, name)
    except DatasetError:
        raise
    except Exception as exc:  # noqa: BLE001 - name the file whatever the decoder said
        raise DatasetError(f"{name}: cannot decode image ({type(exc).__name__}: {exc})") from exc
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()


def decode_header(source: Source, *, what: str | None = None) -> ImageHeaderInfo:
    """What :func:`read_header` gives, from one opening that also decodes every pixel as :func:`read_rgb`
    does, without building the tensor; the same DatasetError as :func:`read_rgb` for what it cannot read. For
    the validator, which must know the file decodes but needs none of its pixels."""
    name = _name(source, what)
    try:
        with _open(source) as im:
            orientation = orientation_of(im)  # before decoding: what the header says, as read_header reads it
            im.load()
            if im.mode in SIXTEEN_BIT_MODES or im.mode in ("I", "F"):
                _rgb_array(im, name)  # the modes whose reading can fail on their values
            return ImageHeaderInfo((im.height, im.width), orientation)
    except DatasetError:
        raise
    except Exception as exc:  # noqa: BLE001 - name the file whatever the decoder said
        raise DatasetError(f"{name}: cannot decode image ({type(exc).__name__}: {exc})") from exc


def _wh(size: tuple[int, int]) -> str:
    return f"{size[1]}x{size[0]}"


def choose_frame(declared: tuple[int, int] | None, info: ImageHeaderInfo, *, name: str, field: str,
                 upright_when_undecided: bool = True) -> bool:
    """Whether to apply the orientation, decided from the (height, width) the annotation file declares.

    The annotations are taken in the frame whose size they declare: the upright one (what labelme, CVAT and
    detectron2 show), else the stored one (a tool that ignored the tag, or pixels already turned with the tag
    left on). When both frames have that size (orientations 2-4, or nothing declared), the upright one unless
    ``upright_when_undecided`` is False (an exporter known to write upright pixels). A size that is neither is a
    :class:`SampleError` DECLARED_SIZE_MISMATCH naming the file, both sizes and, for a swapped pair, the tag.
    """
    if declared is None:
        return upright_when_undecided
    declared = (int(declared[0]), int(declared[1]))
    if declared == info.upright and declared == info.stored:
        return upright_when_undecided
    if declared == info.upright:
        return True
    if declared == info.stored:
        return False
    actual = info.upright
    hint = "re-save the annotations over this image, or give the image they were made on"
    if declared == (actual[1], actual[0]):
        hint = ("the pair is swapped: the annotations were made on this picture turned by 90 degrees (EXIF "
                f"orientation {info.orientation}); check which way the tool showed it")
    raise SampleError("DECLARED_SIZE_MISMATCH", field,
                      f"{name}: declares {_wh(declared)} (width x height) but the image is {_wh(actual)}"
                      + (f" upright (stored {_wh(info.stored)}, EXIF orientation {info.orientation})"
                         if info.orientation != 1 else "")
                      + "; every shape would be laid at the wrong place", hint)


def stored_frame_note(info: ImageHeaderInfo, apply_orientation: bool, name: str) -> str | None:
    """The EXIF_STORED_FRAME message when a tagged image is read in its stored frame, else None."""
    if apply_orientation or info.orientation == 1:
        return None
    return (f"{name}: carries EXIF orientation {info.orientation} (upright {_wh(info.upright)}) but its annotations "
            f"declare the stored frame {_wh(info.stored)}; read as stored, as the annotations were made")
