"""The EXIF orientation of a user's own dataset: are the pixels and the boxes in the same frame?

A photo tagged with an EXIF orientation is shown upright by annotation tools, so its annotations are usually in
the upright frame; a ``Dataset`` that reads it with ``Image.open`` or ``torchvision.io.read_image`` gets the
stored frame. Where the tag turns the picture by 90 degrees the two frames differ in size, and the boxes tell
which one they were drawn in. The tag is known when the image is a PIL image that still carries it (Pillow keeps
the EXIF through ``convert``; ``ImageOps.exif_transpose`` removes it) or when the dataset says where sample
``i``'s file is (``dataset.image_path(i)``). The layouts' own loaders apply the tag themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from PIL import Image

from .checks import image_size
from .findings import Violation
from .rules import BOUNDS_EPS_PX

FIX_UPRIGHT = ("read it upright: PIL.ImageOps.exif_transpose(image), or torchvision.io.decode_image(data, "
               "apply_exif_orientation=True)")
FIX_STORED = "read it as stored, without applying the tag (the annotations were made that way)"
# Findings a frame mismatch explains: reported once, as the mismatch, rather than once per box and mask.
EXPLAINED = ("BOX_OUT_OF_BOUNDS", "MASKS_SHAPE", "CANVAS_MISMATCH")


def _tag_of_pil(image: Image.Image) -> int:
    try:
        value = image.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - unreadable EXIF: no tag to go by
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _fits(boxes: Any, size: tuple[int, int]) -> bool:
    """Whether every XYXY box lies inside a (height, width) frame."""
    if not isinstance(boxes, torch.Tensor) or boxes.ndim != 2 or boxes.shape[-1] != 4 or not len(boxes):
        return True
    h, w = size
    b = boxes.detach().to(torch.float64)
    eps = BOUNDS_EPS_PX
    return bool((b[:, 0] >= -eps).all() and (b[:, 1] >= -eps).all() and (b[:, 2] <= w + eps).all()
                and (b[:, 3] <= h + eps).all())


def _source(dataset: Any, i: int, image: Any) -> tuple[str, int, tuple[int, int], tuple[int, int]] | None:
    """(file name, tag, stored size, upright size) of sample ``i``'s image, None when the tag is unknown or 1."""
    getter = getattr(dataset, "image_path", None)
    if callable(getter):
        from ..data.images import read_header  # the loaders' header reader (imported late: no cycle)

        try:
            path = Path(getter(i))
            info = read_header(path)
        except Exception:  # noqa: BLE001 - a path that does not read is the loader's finding, not this one
            return None
        return (None if info.orientation == 1
                else (str(path), info.orientation, info.stored, info.upright))
    if isinstance(image, Image.Image):
        tag = _tag_of_pil(image)
        if tag == 1:
            return None
        stored = (image.height, image.width)
        upright = (stored[1], stored[0]) if tag >= 5 else stored
        return getattr(image, "filename", "") or "the PIL image", tag, stored, upright
    return None


def _wh(size: tuple[int, int]) -> str:
    return f"{size[1]}x{size[0]}"


def check_orientation(dataset: Any, i: int, image: Any, target: Any) -> list[Violation]:
    """EXIF_FRAME_MISMATCH when the boxes fit only the frame the pixels are not given in; EXIF_STORED_FRAME
    when a tagged image is given (and annotated) in its stored frame."""
    found = _source(dataset, i, image)
    size = image_size(image)
    if found is None or size is None or not isinstance(target, Mapping):
        return []
    name, tag, stored, upright = found
    given_stored = isinstance(image, Image.Image) and _tag_of_pil(image) != 1 or (size == stored != upright)
    given_upright = not given_stored and size == upright != stored
    boxes = target.get("boxes")
    if stored != upright and (given_stored or given_upright):
        here, other = (stored, upright) if given_stored else (upright, stored)
        if not _fits(boxes, here) and _fits(boxes, other):
            frame, other_frame = ("stored", "upright") if given_stored else ("upright", "stored")
            return [Violation.of(
                "EXIF_FRAME_MISMATCH", i, "image", None,
                f"{name} (EXIF orientation {tag}) is given in its {frame} frame {_wh(here)}, but its boxes fit only "
                f"the {other_frame} frame {_wh(other)}: every instance lies on the wrong pixels",
                FIX_UPRIGHT if given_stored else FIX_STORED)]
    if given_stored:
        return [Violation.of(
            "EXIF_STORED_FRAME", i, "image", None,
            f"{name} carries EXIF orientation {tag} and is given as stored ({_wh(stored)}); annotation tools and "
            "viewers show it turned, so check that its annotations were made in this frame", FIX_UPRIGHT)]
    return []
