"""The LabelMe layout: one JSON per image, as labelme 5.x saves it, read the way labelme's own tools read it.

What a file holds (labelme's ``LabelFile.save``): ``version``, ``flags``, ``shapes`` (each ``label``, ``points``,
``group_id``, ``description``, ``shape_type``, ``flags``, ``mask``), ``imagePath`` (relative to the JSON;
Windows back-slashes allowed), ``imageData`` (the image file's bytes in base64, or null), ``imageHeight`` and
``imageWidth``. How it is meant (labelme's ``LabelFile.load``, ``utils.shape_to_mask``, ``shapes_to_label`` and
the ``labelme2coco.py`` example):

- ``imageData``, when present, is the image; ``imagePath`` is used only when it is null.
- One instance is one ``(label, group_id)`` pair: shapes sharing both are parts of one object (their masks are
  united); a shape without ``group_id`` is an instance of its own.
- ``__ignore__`` marks regions that are not annotated (labelme2coco writes no annotation for them) and
  ``_background_`` is the background, label 0: neither is an object class. The first two lines of labelme's
  ``labels.txt`` are these two names.
- polygon (3+ points), rectangle (2 corners), circle (centre and a point on the rim), mask (a base64 PNG patch
  whose top-left corner is the first point) and oriented_rectangle (4 points) outline an area and become
  instances; point, line and linestrip mark no area and are reported, never silently left out.

As the COCO loader does, a shape with a point more than one image size outside the image (``imageHeight`` x
``imageWidth``, or the image's own size when the file declares none) is ANNOTATION_INVALID and left out,
rather than clipped silently when drawn; a declared size that is not a pair of positive integers, or that
exceeds what Pillow opens, is IMAGE_ENTRY_INVALID and the file is left out.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import Dataset
from torchvision import tv_tensors

from ..contract import Violation
from .common import (DatasetError, HeaderSamples, SampleNotes, far_outside, issue, max_image_pixels,
                     rasterise_polygon, safe_join)
from .images import ImageHeaderInfo, choose_frame, read_header, read_rgb, stored_frame_note

from .listing import files_with_suffix, skipped_finding
from .records import SampleRecord, to_target
from .names import (MERGE_HINT, MergeNames, merge_mode, name_key, normalised_class_list, similar_groups, spelled,
                    unknown_label_hint)

log = logging.getLogger(__name__)

IGNORE_LABEL = "__ignore__"
BACKGROUND_LABEL = "_background_"
NOT_CLASSES = (IGNORE_LABEL, BACKGROUND_LABEL)
AREA_SHAPES = ("polygon", "rectangle", "circle", "mask", "oriented_rectangle")
NO_AREA_SHAPES = ("point", "line", "linestrip", "points")


@dataclass(frozen=True)
class _Shape:
    """One drawable part of an instance: its type, points and, for mask shapes, the decoded patch."""

    kind: str
    points: tuple[tuple[float, float], ...]
    patch: np.ndarray | None = None


@dataclass(frozen=True)
class _Entry:
    """One LabelMe file: where its pixels are and its instances (``labels[k]`` is instance k's class)."""

    json_path: Path
    image_path: Path | None  # None: the pixels are the file's inline imageData
    labels: tuple[int, ...]
    instances: tuple[tuple[_Shape, ...], ...]
    declared: tuple[int, int] | None = None  # imageHeight, imageWidth as the file gives them


def rasterise_shape(shape: _Shape, height: int, width: int) -> np.ndarray:
    """A shape's area as a {0, 1} uint8 [H, W] array, drawn the way labelme's utilities draw it."""
    if shape.kind == "mask":
        out = np.zeros((height, width), dtype=np.uint8)
        assert shape.patch is not None
        x0, y0 = (int(round(v)) for v in shape.points[0])
        ph, pw = shape.patch.shape
        ys, ye = max(y0, 0), min(y0 + ph, height)
        xs, xe = max(x0, 0), min(x0 + pw, width)
        if ys < ye and xs < xe:
            out[ys:ye, xs:xe] = shape.patch[ys - y0:ye - y0, xs - x0:xe - x0]
        return out
    if shape.kind not in ("rectangle", "circle"):  # polygon, oriented_rectangle
        return rasterise_polygon(shape.points, height, width)
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    if shape.kind == "rectangle":
        (x0, y0), (x1, y1) = shape.points
        draw.rectangle(((min(x0, x1), min(y0, y1)), (max(x0, x1), max(y0, y1))), fill=1, outline=1)
    else:  # circle
        (cx, cy), (px, py) = shape.points
        r = math.hypot(cx - px, cy - py)
        draw.ellipse(((cx - r, cy - r), (cx + r, cy + r)), fill=1, outline=1)
    return np.asarray(canvas, dtype=np.uint8)


@dataclass(frozen=True)
class ShapeMasks:
    """A LabelMe file's instance masks: each instance's shapes drawn (:func:`rasterise_shape`) and united."""

    instances: tuple[tuple[_Shape, ...], ...]

    def draw(self, height: int, width: int) -> torch.Tensor:
        if not self.instances:
            return torch.zeros((0, height, width), dtype=torch.uint8)
        return torch.from_numpy(np.stack([np.bitwise_or.reduce([rasterise_shape(s, height, width) for s in parts])
                                          for parts in self.instances]))


def read_class_file(path: str | Path) -> list[str]:
    """Object classes from a labelme ``labels.txt``: one name a line; ``__ignore__``/``_background_`` and blank
    lines are not classes. Raises :class:`DatasetError` for an unreadable file, a repeated name or no class."""
    path = Path(path)
    try:  # utf-8-sig: Windows Notepad starts the file with a byte-order mark, which is not part of __ignore__
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read the class list ({exc})") from exc
    names = [ln.strip() for ln in lines if ln.strip() and ln.strip() not in NOT_CLASSES]
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise DatasetError(f"{path}: class {n!r} is listed twice")
        seen.add(n)
    if not names:
        raise DatasetError(f"{path}: no object classes (only {', '.join(NOT_CLASSES)} or blank lines)")
    return names


def labelme_files(root: str | Path) -> tuple[list[Path], list[Path]]:
    """The LabelMe files of a folder (``*.json`` in any case: ``scene.JSON`` too), sorted, and the macOS
    AppleDouble ``._*.json`` files among them, which are binary and left out."""
    return files_with_suffix(Path(root), ".json")


def _label_usage(root: Path) -> dict[str, dict[str, int]]:
    """Each label of a LabelMe folder -> {file name: shapes with it}. Unreadable files are skipped here: the
    dataset reports them when it parses them."""
    usage: dict[str, dict[str, int]] = {}
    for p in labelme_files(root)[0]:
        try:
            shapes = json.loads(p.read_text(encoding="utf-8-sig")).get("shapes", [])
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            continue
        for s in shapes if isinstance(shapes, list) else []:
            if isinstance(s, dict) and isinstance(s.get("label"), str):
                files = usage.setdefault(s["label"], {})
                files[p.name] = files.get(p.name, 0) + 1
    return usage


def labelme_classes(root: str | Path, merge_similar_names: MergeNames = False) -> list[str]:
    """Object class names used in a LabelMe folder, sorted; for when the caller gives no class list.

    With ``merge_similar_names`` (see :mod:`reference.data.names`) names that differ only in surrounding
    whitespace (or case too) are one class, named by its most used spelling, stripped.
    """
    mode = merge_mode(merge_similar_names)
    usage = _label_usage(Path(root))
    reserved = {name_key(n, mode) for n in (*NOT_CLASSES, "background")}  # the shapes are dropped, said so
    groups: dict[str, list[str]] = {}
    for n in sorted(usage):
        if name_key(n, mode) not in reserved:
            groups.setdefault(name_key(n, mode), []).append(n)
    if mode is None:
        return sorted(n for g in groups.values() for n in g)
    return sorted(max(g, key=lambda n: sum(usage[n].values())).strip() for g in groups.values())


def _points(raw: Any) -> tuple[tuple[float, float], ...] | None:
    """``[[x, y], ...]`` as float pairs, None when malformed (labelme requires a non-empty list of pairs)."""
    if not isinstance(raw, list) or not raw:
        return None
    out = []
    for p in raw:
        if not isinstance(p, (list, tuple)) or len(p) != 2 or not all(_is_finite_number(v) for v in p):
            return None
        out.append((float(p[0]), float(p[1])))
    return tuple(out)


def _is_finite_number(v: Any) -> bool:
    """An int or float that is finite as a float (a JSON integer like 10**400 is not: it overflows)."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def _decode_mask_patch(text: Any) -> np.ndarray | None:
    """A mask shape's base64 PNG as a {0, 1} uint8 array (labelme stores ``mask.astype(uint8)``)."""
    if not isinstance(text, str):
        return None
    try:
        with Image.open(io.BytesIO(base64.b64decode(text, validate=False))) as im:
            arr = np.asarray(im.convert("L") if im.mode not in ("L", "1", "P") else im)
    except (binascii.Error, ValueError, OSError):
        return None
    return (arr != 0).astype(np.uint8) if arr.ndim == 2 else None


_POINT_COUNTS = {"rectangle": (2, "2 corners"), "circle": (2, "a centre and a point on the rim"),
                 "mask": (2, "the patch's two corners"), "oriented_rectangle": (4, "4 corners")}


class LabelMeDataset(HeaderSamples, Dataset):
    """LabelMe files as Mask R-CNN targets (v2 flavour: ``tv_tensors``, int ``image_id``).

    ``class_names`` lists the object classes (labels 1..K; None: every label in the data but ``__ignore__``
    and ``_background_``, sorted); ``classes`` is ``["background", *class_names]``. A shape whose label is not
    listed, a shape that marks no area, or a malformed shape is left out of the targets and recorded in
    ``load_violations`` (with file, shape index, field and rule), which the validator reports. Files that
    cannot be read as LabelMe at all, and an ``imagePath`` outside ``root``, raise :class:`DatasetError`.
    Masks are drawn as labelme draws them; boxes come from the masks; ``area`` is the mask's pixel count
    (what labelme2coco writes).

    Labels that differ only in case or surrounding whitespace (``person``, ``Person``, ``person ``) are separate
    classes, as labelme and labelme2coco keep them, with a CLASS_NAME_SIMILAR warning naming the spellings and
    files; ``merge_similar_names`` ("whitespace", or "case"/True) reads them as one (see
    :mod:`reference.data.names`). ``*.JSON`` files are read like ``*.json``; a byte-order mark is skipped;
    macOS ``._*.json`` AppleDouble files (binary) are left out with one FILE_SKIPPED warning.
    """

    def __init__(self, root: str | Path, class_names: Sequence[str] | None = None,
                 transforms: Callable | None = None, exclusive_boxes: bool = False, *,
                 merge_similar_names: MergeNames = False):
        self.root = Path(root)
        self.transforms = transforms
        self.exclusive_boxes = exclusive_boxes
        self.merge_similar_names = merge_mode(merge_similar_names)
        names = (normalised_class_list(class_names, self.merge_similar_names, what="class list")
                 if class_names is not None else labelme_classes(self.root, self.merge_similar_names))
        reserved = [n for n in names if n in NOT_CLASSES or n == "background"]
        if reserved:
            raise DatasetError(f"class list {names}: {reserved} are not object classes (labelme's labels.txt "
                               f"starts with {IGNORE_LABEL} and {BACKGROUND_LABEL}, which are left out)")
        if len(set(names)) != len(names):
            raise DatasetError(f"class list {names} names a class twice")
        self.class_names = names
        self.classes = ["background", *names]
        self.class_to_idx = {"background": 0, **{n: i + 1 for i, n in enumerate(names)}}
        self.load_violations: list[Violation] = []
        self._notes = SampleNotes()
        self.ignored_regions = 0
        # a label's spelling key -> its class; each label as written (object classes only) -> the files using it
        self._class_of = {name_key(n, self.merge_similar_names): n for n in names}
        self._spellings: dict[str, list[str]] = {}
        files, skipped = labelme_files(self.root)
        if not files:
            only = f" (only macOS ._ files: {', '.join(p.name for p in skipped[:3])})" if skipped else ""
            raise DatasetError(f"{self.root}: no LabelMe *.json files{only}")
        found = skipped_finding(self.root, skipped)
        if found is not None:
            self.load_violations.append(found)
        self._index: int | None = 0
        self.entries: list[_Entry] = []
        for p in files:
            self._index = len(self.entries)  # the sample index this file gets, if it is used
            entry = self._parse(p)
            if entry is not None:
                self.entries.append(entry)
        self._similar_names()

    # --- parsing -------------------------------------------------------------------------------------------

    def _report(self, code: str, path: Path, k: int | None, field: str, message: str,
                hint: str | None = None) -> None:
        where = f"{path.name}" + (f" shape {k}" if k is not None else "")
        self.load_violations.append(issue(code, self._index, field, f"{where}: {message}", hint=hint))

    def _similar_names(self) -> None:
        """CLASS_NAME_SIMILAR for labels that differ only in case or surrounding whitespace and are separate
        classes; CLASS_NAMES_MERGED (info) for those read as one, as ``merge_similar_names`` asked."""
        mode = self.merge_similar_names
        for group in similar_groups(self._spellings):
            classes: dict[str, list[str]] = {}
            for n in group:
                classes.setdefault(name_key(n, mode), []).append(n)
            if len(classes) > 1:
                self.load_violations.append(issue(
                    "CLASS_NAME_SIMILAR", None, "label", f"{self.root}: labels {spelled(self._spellings, group)} "
                    f"differ only in case or surrounding whitespace; they are {len(classes)} separate classes",
                    hint=f"give them one spelling in labelme, or {MERGE_HINT}"))
            for key, same in classes.items():
                if len(same) > 1:
                    self.load_violations.append(issue(
                        "CLASS_NAMES_MERGED", None, "label", f"{self.root}: labels {spelled(self._spellings, same)} "
                        f"are read as one class {self._class_of.get(key, same[0].strip())!r} "
                        f"(merge_similar_names={mode!r})"))

    def _parse(self, path: Path) -> _Entry | None:
        try:  # utf-8-sig: a byte-order mark (Windows editors write one) is not part of the JSON
            doc = json.loads(path.read_text(encoding="utf-8-sig"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DatasetError(f"{path}: not a readable LabelMe JSON ({exc})") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("shapes"), list) or (
                not isinstance(doc.get("imagePath"), str) and not doc.get("imageData")):
            raise DatasetError(f"{path}: a LabelMe file needs a 'shapes' list and an 'imagePath' (or inline "
                               "'imageData')")
        image_path = None
        if not doc.get("imageData"):
            rel = PureWindowsPath(doc["imagePath"]).as_posix()  # labelme normalises Windows paths so
            image_path = safe_join(self.root, str(Path(path.parent.relative_to(self.root)) / rel),
                                   what=f"{path} imagePath")
        elif not isinstance(doc["imageData"], str):
            raise DatasetError(f"{path}: imageData must be a base64 string or null")
        size = self._image_size(path, doc, image_path)
        if size is False:
            return None
        groups: dict[tuple[str, Any], list[_Shape]] = {}
        for k, raw in enumerate(doc["shapes"]):
            parsed = self._parse_shape(path, k, raw, size)
            if parsed is None:
                continue
            name, group, shape = parsed
            groups.setdefault((name, group if group is not None else ("shape", k)), []).append(shape)
        labels = tuple(self.class_to_idx[name] for name, _ in groups)
        declared = (doc["imageHeight"], doc["imageWidth"]) if doc.get("imageHeight") is not None else None
        return _Entry(path, image_path, labels, tuple(tuple(parts) for parts in groups.values()), declared)

    def _image_size(self, path: Path, doc: dict, image_path: Path | None) -> tuple[int, int] | None | bool:
        """(height, width) that the shapes are checked against: the file's ``imageHeight`` and ``imageWidth``
        (labelme always writes them), else the image's header; None when neither can be read (the sample then
        fails when loaded). False, after an IMAGE_ENTRY_INVALID, when the declared size is not a pair of
        positive integers or exceeds what Pillow opens (as the COCO loader's image entries): the file is
        left out."""
        h, w = doc.get("imageHeight"), doc.get("imageWidth")
        if h is None and w is None:
            try:
                source = image_path if image_path is not None else base64.b64decode(doc["imageData"])
                return read_header(source).upright  # labelme shows the picture upright
            except (DatasetError, ValueError, binascii.Error):
                return None
        problem = None
        if not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in (h, w)):
            problem = f"has imageHeight {h!r} and imageWidth {w!r}; positive integers are needed"
        elif h * w > max_image_pixels():
            problem = (f"has imageHeight {h} and imageWidth {w}: more than {max_image_pixels()} pixels, the size "
                       "Pillow refuses as a decompression bomb")
        if problem is None:
            return h, w
        self.load_violations.append(issue("IMAGE_ENTRY_INVALID", None, "imageHeight",
                                          f"{path.name} {problem}; the file is left out",
                                          hint="labelme writes the image's own size; re-save the file in labelme"))
        return False

    def _parse_shape(self, path: Path, k: int, raw: Any, size: tuple[int, int] | None
                     ) -> tuple[str, Any, _Shape] | None:
        if not isinstance(raw, dict):
            self._report("ANNOTATION_INVALID", path, k, "shapes", f"is a {type(raw).__name__}, not an object")
            return None
        name = raw.get("label")
        if not isinstance(name, str):
            self._report("ANNOTATION_INVALID", path, k, "label", f"label {name!r} is not a string")
            return None
        if name_key(name, self.merge_similar_names) == IGNORE_LABEL:
            self.ignored_regions += 1
            return None
        if name not in NOT_CLASSES and name != "background":
            self._spellings.setdefault(name, []).append(path.name)
        kind = raw.get("shape_type") or "polygon"
        group = raw.get("group_id")
        if group is not None and (not isinstance(group, int) or isinstance(group, bool)):
            self._report("ANNOTATION_INVALID", path, k, "group_id", f"group_id {group!r} is not an integer "
                         "(labelme writes an int or null)")
            return None
        if kind in NO_AREA_SHAPES:
            self._report("ANNOTATION_DROPPED", path, k, "shape_type", f"({name!r}) is a {kind}, which marks no "
                         "area; it is not an instance", hint="draw a polygon, rectangle, circle or mask instead")
            return None
        if kind not in AREA_SHAPES:
            self._report("ANNOTATION_INVALID", path, k, "shape_type", f"({name!r}) has an unknown shape_type "
                         f"{kind!r} (known: {', '.join(AREA_SHAPES + NO_AREA_SHAPES)})")
            return None
        pts = _points(raw.get("points"))
        if pts is None:
            self._report("ANNOTATION_INVALID", path, k, "points", f"({name!r}) points {raw.get('points')!r} are "
                         "not a non-empty list of finite [x, y] pairs")
            return None
        if kind == "polygon" and len(pts) < 3:
            self._report("ANNOTATION_INVALID", path, k, "points", f"({name!r}) has {len(pts)} points; a polygon "
                         "needs at least 3")
            return None
        if kind in _POINT_COUNTS and len(pts) != _POINT_COUNTS[kind][0]:
            want, meaning = _POINT_COUNTS[kind]
            self._report("ANNOTATION_INVALID", path, k, "points", f"({name!r}) is a {kind} with {len(pts)} "
                         f"points; labelme's {kind} has {want} ({meaning})")
            return None
        xs, ys = [x for x, _ in pts], [y for _, y in pts]
        if size is not None and far_outside(xs, ys, *size):
            self._report("ANNOTATION_INVALID", path, k, "points", f"({name!r}) has a point far outside the "
                         f"{size[1]}x{size[0]} image (beyond one image size from its edges; x from {min(xs):g} to "
                         f"{max(xs):g}, y from {min(ys):g} to {max(ys):g}); it is left out")
            return None
        patch = None
        if kind == "mask":
            patch = _decode_mask_patch(raw.get("mask"))
            if patch is None:
                self._report("ANNOTATION_INVALID", path, k, "mask", f"({name!r}) is a mask shape whose 'mask' is "
                             "not a base64-encoded single-channel PNG")
                return None
        if name == BACKGROUND_LABEL or name == "background":
            self._report("ANNOTATION_DROPPED", path, k, "label", f"label {name!r} is the background, not an "
                         "object class; the shape is not an instance")
            return None
        cls = self._class_of.get(name_key(name, self.merge_similar_names))
        if cls is None:
            self._report("LABEL_UNKNOWN", path, k, "label", f"label {name!r} is not one of the classes "
                         f"{self.class_names}; the shape is left out",
                         hint=unknown_label_hint(name, self.class_names,
                                                 "add it to the class list (--classes labels.txt) or fix the label"))
            return None
        return cls, group, _Shape(kind, pts, patch)

    # --- samples -------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.entries)

    def _inline_bytes(self, e: _Entry) -> bytes:
        try:
            return base64.b64decode(json.loads(e.json_path.read_text(encoding="utf-8-sig"))["imageData"])
        except (OSError, ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise DatasetError(f"{e.json_path}: cannot read its inline imageData ({exc})") from exc

    def _source(self, idx: int) -> tuple[Path | bytes, str]:
        """Where sample ``idx``'s pixels are (its image file, or its inline imageData) and how to name them."""
        e = self.entries[idx]
        if e.image_path is not None:
            return self._image_file(e), str(e.image_path)
        return self._inline_bytes(e), f"{e.json_path} imageData"

    def _choose(self, idx: int, info: ImageHeaderInfo, name: str) -> bool:
        """Whether to turn the image upright (labelme does; a file declaring the stored size was made by a tool
        that did not); DECLARED_SIZE_MISMATCH when the declared size is neither frame's."""
        e = self.entries[idx]
        apply = choose_frame(e.declared, info, name=f"{e.json_path.name} (imageHeight, imageWidth) over {name}",
                             field="imageHeight")
        note = stored_frame_note(info, apply, name)
        self._notes.start(idx)
        if note:
            self._notes.add(idx, issue("EXIF_STORED_FRAME", idx, "image", note))
        return apply

    def _frame(self, idx: int) -> tuple[ImageHeaderInfo, bool]:
        """The image's header and whether to turn it upright (:meth:`_choose`), without decoding it."""
        source, name = self._source(idx)
        info = read_header(source, what=name)
        return info, self._choose(idx, info, name)

    def sample_findings(self, idx: int) -> list[Violation]:
        """What reading sample ``idx`` reads differently from labelme (the validator reports these)."""
        return self._notes.get_or_reload(idx, lambda: self._frame(idx))

    def get_height_and_width(self, idx: int) -> tuple[int, int]:
        info, apply = self._frame(idx)
        return info.size(apply)

    def _image_file(self, e: _Entry) -> Path:
        assert e.image_path is not None
        if not e.image_path.is_file():
            raise DatasetError(f"{e.json_path}: its imagePath {e.image_path} does not exist (and imageData is "
                               "null)")
        return e.image_path

    def record(self, idx: int, h: int, w: int) -> SampleRecord:
        """Sample ``idx``'s annotations for an image of ``h`` x ``w``: masks drawn from the shapes as labelme
        draws them, boxes from the masks, ``area`` the mask's pixel count (what labelme2coco writes)."""
        e = self.entries[idx]
        return SampleRecord(name=str(e.json_path), image_id=idx, height=h, width=w, labels=e.labels, area="mask",
                            masks=ShapeMasks(e.instances), exclusive_boxes=self.exclusive_boxes)

    def header_target(self, idx: int) -> tuple[tuple[int, int], dict]:
        """For :meth:`header_sample`: the size from the image file's header or the inline imageData's, and the
        target."""
        info, apply = self._frame(idx)
        h, w = info.size(apply)
        return (h, w), to_target(self.record(idx, h, w))[0]

    def __getitem__(self, idx: int):
        source, name = self._source(idx)
        img = tv_tensors.Image(read_rgb(source, apply_orientation=lambda info: self._choose(idx, info, name),
                                        what=name))
        h, w = img.shape[-2:]
        target, _ = to_target(self.record(idx, h, w))
        if self.transforms is not None:
            img, target = self.transforms(img, target)
        return img, target
