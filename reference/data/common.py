"""What the on-disk datasets share: safe paths, JSON reading, mask reading (id maps, polygons) with
file-naming errors, boxes from masks, :class:`HeaderSamples` (the validator's ``header_sample`` fast path) and
:func:`issue` to record a problem in one annotation as a contract :class:`~reference.contract.Violation`
(image files are read in :mod:`reference.data.images`)."""

from __future__ import annotations

import gc
import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import orjson
import torch
from PIL import Image, ImageDraw
from torchvision.ops import masks_to_boxes

from ..contract import ImageHeader, Violation
from ..errors import UserError

log = logging.getLogger(__name__)


# How far outside the image a box, polygon vertex or shape point may lie, in image sizes: a little over the edge
# reaches the contract (BOX_OUT_OF_BOUNDS) or is clipped by rasterising; beyond this it is a broken coordinate.
# pycocotools rasterises a polygon's whole outline at 5x without bounds checks, so a vertex at 1e30 makes it
# allocate without limit and crash; Pillow clips such a shape silently.
FAR_OUTSIDE = 1.0


def max_image_pixels() -> int:
    """The largest height x width an annotation file may declare for an image: the size Pillow refuses to open
    as a decompression bomb (2 x ``Image.MAX_IMAGE_PIXELS``), or 2**31 - 1 when that check is switched off.
    Masks are allocated at the declared size, so an unbounded one kills the interpreter."""
    limit = Image.MAX_IMAGE_PIXELS
    return 2 * int(limit) if limit else 2**31 - 1


def far_outside(xs: Sequence[float], ys: Sequence[float], height: int, width: int) -> bool:
    """Whether any point lies more than ``FAR_OUTSIDE`` image sizes outside the ``height`` x ``width`` image."""
    return (min(xs) < -FAR_OUTSIDE * width or max(xs) > (1 + FAR_OUTSIDE) * width
            or min(ys) < -FAR_OUTSIDE * height or max(ys) > (1 + FAR_OUTSIDE) * height)


# A body that leaves this many new objects behind (a large annotation file's dicts and lists) has them frozen.
FREEZE_AT = 1_000_000


@contextmanager
def collection_paused() -> Iterator[None]:
    """The cyclic garbage collector off while the body runs (as it was afterwards). Building the millions of
    objects of a large annotation file otherwise triggers collections that rescan all of them: for a COCO
    train2017-sized file they take half the time of reading it. When the body leaves more than
    :data:`FREEZE_AT` new objects they are moved out of the collector's reach (``gc.freeze``), since they live
    as long as the dataset: otherwise every later full collection, here and in each forked DataLoader worker,
    walks all of them again (measuring the masks of a train2017-sized file took ten times as long)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if gc.get_count()[0] > FREEZE_AT:
            gc.freeze()
        if was:
            gc.enable()


# orjson reads an integer beyond 64 bits as a float: a file with a run of this many digits anywhere is read by
# the standard library's parser instead (18 digits are always below 2**63).
_LONG_DIGITS = b"0" * 19
_DIGITS_AS_ZERO = bytes(48 if 48 <= c <= 57 else 32 for c in range(256))


def read_json(path: Path) -> Any:
    """The JSON document in ``path`` (UTF-8, a byte-order mark skipped), with collections paused while its
    objects are made. Parsed by orjson (faster on a large file) where it reads what the standard
    library reads: a file orjson refuses (NaN, a lone surrogate, invalid UTF-8, deep nesting) or that holds a
    19-digit run (an integer orjson would turn into a float) goes to :func:`json.loads`, whose result or error
    it then is. Raises OSError, UnicodeDecodeError or json.JSONDecodeError."""
    data = path.read_bytes()
    body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    if _LONG_DIGITS not in body.translate(_DIGITS_AS_ZERO):
        try:
            with collection_paused():
                return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass  # the standard parser's answer, below
    text = data.decode("utf-8-sig")
    with collection_paused():
        return json.loads(text)


class DatasetError(UserError, ValueError):
    """A dataset folder breaks its layout; the message names the file and the rule."""


class SampleError(DatasetError):
    """One sample cannot be read as its annotations mean it, for a reason the rule table names: the validator
    reports it under ``code`` (not GETITEM_FAILED) with ``field`` and ``hint``; other samples are unaffected."""

    def __init__(self, code: str, field: str | None, message: str, hint: str | None = None):
        super().__init__(message)
        self.code, self.field, self.hint = code, field, hint

    def __reduce__(self):  # DataLoader workers send exceptions back pickled
        return type(self), (self.code, self.field, str(self), self.hint)


class SampleNotes:
    """What a loader noted while loading one sample (``sample_findings``), kept for the sample loaded last in
    this process only: the validator asks right after loading it, in the same worker, so memory stays bounded
    however large the dataset; an older sample's notes are made again by loading it again."""

    def __init__(self) -> None:
        self._idx: int | None = None
        self._items: list[Violation] = []

    def start(self, idx: int) -> None:
        """Forget the previous sample's notes; sample ``idx`` has none yet."""
        self._idx, self._items = idx, []

    def add(self, idx: int, item: Violation) -> None:
        if self._idx != idx:
            self.start(idx)
        self._items.append(item)

    def get(self, idx: int) -> list[Violation] | None:
        """Sample ``idx``'s notes, None when it was not the last sample loaded here."""
        return list(self._items) if self._idx == idx else None

    def get_or_reload(self, idx: int, reload: Callable[[], Any],
                      errors: tuple[type[BaseException], ...] = (DatasetError,)) -> list[Violation]:
        """Sample ``idx``'s notes (a loader's ``sample_findings``): from its last load in this process, else from
        ``reload()``, which reads the sample's files again and notes what it finds; none when that raises one of
        ``errors`` (the sample's own load reports it)."""
        notes = self.get(idx)
        if notes is None:
            try:
                reload()
            except errors:
                return []
            notes = self.get(idx) or []
        return notes


def issue(code: str, index: int | None, field: str | None, message: str, *, instance: int | None = None,
          hint: str | None = None) -> Violation:
    """A loader's finding about one annotation, with the severity the contract's rule table gives it.

    Loaders keep these in ``load_violations``; :func:`reference.contract.validate_dataset` reports them with
    the per-sample findings, so nothing a loader leaves out goes unmentioned.
    """
    return Violation.of(code, index, field, instance, message, hint)


def safe_join(root: Path, relative: str, *, what: str) -> Path:
    """``root / relative``, refusing a path that leaves ``root`` (``..``, absolute paths, links out)."""
    root = root.resolve()
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root):
        raise DatasetError(f"{what}: path {relative!r} points outside the dataset root {root}; refused")
    return candidate


class SafeRoot:
    """:func:`safe_join` for the many files of one dataset: each name is checked lexically (no ``..`` out, not
    absolute) and each folder's real location once, so that a link cannot lead out either; a file that is itself
    a link is resolved. As safe as resolving every path, without its system calls per file: the links among a
    folder's files are listed once (``os.scandir``)."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self._prefix = str(self.root)
        self._folders: dict[str, bool] = {}
        self._links: dict[str, set[str] | None] = {}

    def _inside(self, path: str) -> bool:
        return path == self._prefix or path.startswith(self._prefix.rstrip(os.sep) + os.sep)

    def _is_link(self, folder: str, candidate: str) -> bool:
        if folder not in self._links:
            try:
                with os.scandir(folder) as entries:
                    self._links[folder] = {e.path for e in entries if e.is_symlink()}
            except OSError:  # not listable: each file is asked
                self._links[folder] = None
        links = self._links[folder]
        return os.path.islink(candidate) if links is None else candidate in links

    def path(self, relative: str) -> str | None:
        """The path of ``relative`` under the root, None when it leads out."""
        candidate = os.path.normpath(os.path.join(self._prefix, relative))
        folder = os.path.dirname(candidate)
        ok = self._folders.get(folder)
        if ok is None:
            ok = self._folders[folder] = self._inside(candidate) and self._inside(os.path.realpath(folder))
        if ok and self._is_link(folder, candidate):
            ok = self._inside(os.path.realpath(candidate))
        return candidate if ok else None

    def refusal(self, relative: str, *, what: str) -> DatasetError:
        """The error for a ``relative`` path that leads out of the root, naming ``what`` gave it."""
        return DatasetError(f"{what}: path {relative!r} points outside the dataset root {self.root}; refused")

    def join(self, relative: str, *, what: str) -> Path:
        """:meth:`path` as a Path; raises :meth:`refusal` when it leads out."""
        candidate = self.path(relative)
        if candidate is None:
            raise self.refusal(relative, what=what)
        return Path(candidate)


def rasterise_polygon(points: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """A filled polygon as a {0, 1} uint8 [H, W] array, outline pixels included (as labelme's shape_to_mask)."""
    canvas = Image.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).polygon([(float(x), float(y)) for x, y in points], fill=1, outline=1)
    return np.asarray(canvas, dtype=np.uint8)


class HeaderSamples:
    """``header_sample(idx)`` for a loader: ``self[idx]`` without decoding the image (the validator's fast path,
    :func:`reference.contract.validate_dataset` with ``headers_only``), the image's size from its header and the same
    target, refused where the dataset has transforms (they need the pixels). The loader gives
    :meth:`header_target`."""

    transforms: Any

    def header_target(self, idx: int) -> tuple[tuple[int, int], dict[str, Any]]:
        """Sample ``idx``'s image size (H, W) as its header gives it, and its untransformed target."""
        raise NotImplementedError

    def header_sample(self, idx: int) -> tuple[ImageHeader, dict[str, Any]]:
        if self.transforms is not None:
            raise ValueError("header_sample gives untransformed samples; this dataset has transforms")
        size, target = self.header_target(idx)
        return ImageHeader(*size), target


def read_label_map(path: Path) -> torch.Tensor:
    """Decode a single-channel mask PNG (grayscale or palette) to an [H, W] tensor of instance ids."""
    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P", "I", "I;16", "1"):
                raise DatasetError(f"{path}: mask has mode {im.mode!r}; expected a single-channel id map")
            ids = np.array(im)
    except DatasetError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise DatasetError(f"{path}: cannot decode mask ({type(exc).__name__}: {exc})") from exc
    return torch.from_numpy(ids if ids.dtype == np.uint8 else ids.astype(np.int64))


def instance_ids(ids: torch.Tensor) -> torch.Tensor:
    """The sorted non-zero ids present in an id map (what ``torch.unique(mask)[1:]`` gives, faster)."""
    if ids.dtype == torch.uint8:
        present = torch.bincount(ids.flatten(), minlength=256)
        found = torch.nonzero(present).flatten()
    else:
        found = torch.unique(ids)
    return found[found != 0].to(ids.dtype)


def boxes_from_masks(masks: torch.Tensor, *, exclusive: bool = False) -> tuple[torch.Tensor, list[int]]:
    """XYXY boxes of binary masks [N, H, W] and the instances whose box had to be widened.

    ``torchvision.ops.masks_to_boxes`` (the tutorials' convention) gives the last pixel's index as x2, y2, so
    an instance one pixel wide or tall gets a zero-size box that the model rejects. With ``exclusive=False``
    such a side is widened by one pixel and its index returned, so callers can count it; ``exclusive=True``
    uses last index + 1 everywhere (the COCO convention), where no box is degenerate.
    """
    if masks.shape[0] == 0:
        return torch.zeros((0, 4), dtype=torch.float32), []
    boxes = masks_to_boxes(masks.bool()).to(torch.float32)
    if exclusive:
        boxes[:, 2:] += 1.0
        return boxes, []
    # an empty mask keeps its all-zero box (the validator reports it as MASK_EMPTY); only real instances widen
    nonempty = masks.flatten(1).bool().any(dim=1)
    flat = ((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])) & nonempty
    widened = torch.nonzero(flat).flatten().tolist()
    if widened:
        boxes[flat, 2] = torch.maximum(boxes[flat, 2], boxes[flat, 0] + 1.0)
        boxes[flat, 3] = torch.maximum(boxes[flat, 3], boxes[flat, 1] + 1.0)
    return boxes, widened
