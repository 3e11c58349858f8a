"""The dataset contract of torchvision detection models, as code.

A detection dataset returns ``(image, target)`` where ``target`` is a dict of per-instance tensors. The
models check little of this and fail late (see ``shared/field-notes.md``); :func:`validate_sample` and
:func:`validate_dataset` check all of it up front and report every broken rule with a stable code, the
sample index, the field, the instance index and the offending values.

Both flavours of the tutorials are accepted: the legacy one (PIL image, ``image_id`` a one-element int64
tensor) and the current one (``tv_tensors``, ``image_id`` a Python int).
"""

from __future__ import annotations

import difflib
import enum
import json
import logging
import math
import pickle
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping

import torch
from PIL import Image
from torchvision import tv_tensors

log = logging.getLogger(__name__)


class Severity(str, enum.Enum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


# Every rule the validator knows, with its default severity. Codes are stable: tools and tests key on them.
RULES: dict[str, Severity] = {
    "IMAGE_TYPE": Severity.ERROR,
    "IMAGE_SHAPE": Severity.ERROR,
    "IMAGE_CHANNELS": Severity.ERROR,
    "IMAGE_DTYPE": Severity.ERROR,
    "IMAGE_RANGE": Severity.WARNING,  # an error in model-ready mode
    "TARGET_TYPE": Severity.ERROR,
    "MISSING_KEY": Severity.ERROR,
    "UNKNOWN_KEY": Severity.WARNING,
    "COUNT_MISMATCH": Severity.ERROR,
    "BOXES_SHAPE": Severity.ERROR,
    "BOXES_DTYPE": Severity.ERROR,
    "BOXES_NONFINITE": Severity.ERROR,
    "BOX_DEGENERATE": Severity.ERROR,
    "BOX_OUT_OF_BOUNDS": Severity.ERROR,
    "CANVAS_MISMATCH": Severity.ERROR,
    "LABELS_DTYPE": Severity.ERROR,
    "LABEL_BACKGROUND": Severity.ERROR,
    "LABEL_NEGATIVE": Severity.ERROR,
    "LABEL_OUT_OF_RANGE": Severity.ERROR,
    "NEGATIVE_SAMPLE_ENCODING": Severity.ERROR,
    "IMAGE_ID_TYPE": Severity.ERROR,
    "IMAGE_ID_DUPLICATE": Severity.ERROR,
    "AREA_NEGATIVE": Severity.ERROR,
    "AREA_INCONSISTENT": Severity.WARNING,
    "ISCROWD_VALUES": Severity.ERROR,
    "MASKS_SHAPE": Severity.ERROR,
    "MASKS_DTYPE": Severity.ERROR,
    "MASKS_VALUES": Severity.ERROR,
    "MASK_EMPTY": Severity.WARNING,
    "MASK_BOX_MISMATCH": Severity.WARNING,
    "KEYPOINTS_SHAPE": Severity.ERROR,
    "KEYPOINTS_DTYPE": Severity.ERROR,
    "KEYPOINTS_VISIBILITY": Severity.ERROR,
    "GETITEM_FAILED": Severity.ERROR,
    "NOT_PICKLABLE": Severity.ERROR,
    "SIZE_MISMATCH": Severity.ERROR,
    # what a loader found in the annotation files (each names the file, the annotation id or shape index and the
    # field); the loaders keep them in ``load_violations`` and validate_dataset reports them
    "ANNOTATION_INVALID": Severity.ERROR,  # malformed: left out of its image's target
    "ANNOTATION_DROPPED": Severity.WARNING,  # well-formed but not an instance (a line, a zero-size box, background)
    "ANNOTATION_REPAIRED": Severity.WARNING,  # kept after a repair the message states (e.g. a mask from its box)
    "ANNOTATION_ID_DUPLICATE": Severity.ERROR,
    "IMAGE_ENTRY_INVALID": Severity.ERROR,  # an image record that cannot be used (duplicate id, no size, ...)
    "LABEL_UNKNOWN": Severity.ERROR,  # a class name or category outside the class list
    # dataset-level rules
    "DATASET_EMPTY": Severity.ERROR,
    "CLASS_UNUSED": Severity.WARNING,
    "CLASS_IMBALANCE": Severity.INFO,
    "BOX_SIZE_OUTLIER": Severity.INFO,
    "SPLIT_DUPLICATE_IMAGE": Severity.WARNING,
    "SPLIT_CLASS_MISSING": Severity.WARNING,
    "SPLIT_CLASS_ID_MISMATCH": Severity.ERROR,
}

REQUIRED_KEYS = ("boxes", "labels", "image_id", "area", "iscrowd")
OPTIONAL_KEYS = ("masks", "keypoints")
KNOWN_KEYS = REQUIRED_KEYS + OPTIONAL_KEYS
PER_INSTANCE_KEYS = ("labels", "area", "iscrowd", "masks", "keypoints")

# How far (pixels) the box of a mask may sit from the given box before MASK_BOX_MISMATCH: one pixel for the
# inclusive/exclusive corner conventions plus one for resampling.
MASK_BOX_TOLERANCE_PX = 2.0
# Float rounding slack of BOX_OUT_OF_BOUNDS: resizing a box that touches the border by H'/H in float32 can
# land it 1e-6 beyond the new border, which no model minds.
BOUNDS_EPS_PX = 1e-3
# Relative slack of AREA_INCONSISTENT: areas are compared with both the box and the mask area.
AREA_REL_TOLERANCE = 0.05
# Absolute slack against the mask area, in boundary pixels of the mask: the same valid polygon rasterised two
# common ways (Pillow with its outline, as labelme draws it, and pycocotools' decoding) differs by up to a ring
# of about one pixel around the shape, which on a thin object is far more than 5 % (a 19 x 54 px bottle: 873 vs
# 815 px). Two boundary widths cover both directions and sub-pixel outlines; a forgotten rescale (x4) is still
# caught on all but the tiniest objects.
AREA_BOUNDARY_WIDTHS = 2.0
# Dataset-level thresholds, Datumaro's validator defaults: majority/minority class count ratio and the number of
# standard deviations from its class's mean at which a box is reported.
IMBALANCE_RATIO = 50.0
FAR_FROM_MEAN_STD = 5.0
# Perceptual hashes (64-bit pHash) at most this many bits apart count as the same picture across splits.
NEAR_DUPLICATE_BITS = 4


@dataclass(frozen=True)
class Violation:
    """One broken rule: where (sample index, field, instance) and what (message, hint)."""

    code: str
    severity: Severity
    index: int | None
    field: str | None
    instance: int | None
    message: str
    hint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["severity"] = self.severity.value
        return d

    def __str__(self) -> str:
        where = f"sample {self.index}" if self.index is not None else "dataset"
        if self.field:
            where += f", {self.field}"
        if self.instance is not None:
            where += f"[{self.instance}]"
        text = f"{self.severity.value.upper()} {self.code} ({where}): {self.message}"
        return text + (f" Hint: {self.hint}" if self.hint else "")


@dataclass(frozen=True)
class ImageHeader:
    """Stands in for an image whose pixels were not decoded (the header-only fast path): its size as the file's
    header gives it. A loader returns one from ``header_sample`` only where its ``__getitem__`` would return a
    uint8 RGB image of that size, on which the image rules find nothing unless ``model_ready``."""

    height: int
    width: int


@dataclass
class Report:
    """The result of validating a dataset: violations plus statistics; serialises to JSON."""

    samples: int = 0
    violations: list[Violation] = field(default_factory=list)
    statistics: dict[str, Any] = field(default_factory=dict)
    # (sample index, sha1 of the pixels, 64-bit pHash or None) per image, when asked for; not serialised
    fingerprints: list[tuple[int, str, int | None]] = field(default_factory=list, repr=False)

    def count(self, severity: Severity) -> int:
        return sum(v.severity is severity for v in self.violations)

    @property
    def errors(self) -> list[Violation]:
        return [v for v in self.violations if v.severity is Severity.ERROR]

    @property
    def ok(self) -> bool:
        return not self.errors

    def codes(self) -> set[str]:
        return {v.code for v in self.violations}

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": {
                "samples": self.samples,
                "errors": self.count(Severity.ERROR),
                "warnings": self.count(Severity.WARNING),
                "infos": self.count(Severity.INFO),
            },
            "violations": [v.to_dict() for v in self.violations],
            "statistics": self.statistics,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def render_text(self, examples: int = 3) -> str:
        """A readable summary grouped by code, with the first ``examples`` violations of each."""
        s = self.to_dict()["summary"]
        lines = [
            f"{s['samples']} samples checked: {s['errors']} errors, {s['warnings']} warnings, {s['infos']} infos"
        ]
        by_code: dict[str, list[Violation]] = defaultdict(list)
        for v in self.violations:
            by_code[v.code].append(v)
        for code, items in sorted(by_code.items(), key=lambda kv: (kv[1][0].severity != Severity.ERROR, kv[0])):
            lines.append(f"{code} [{items[0].severity.value}] x{len(items)}")
            for v in items[:examples]:
                lines.append(f"  - {v}")
            if len(items) > examples:
                lines.append(f"  ... and {len(items) - examples} more")
        st = self.statistics
        if st:
            lines.append(
                f"instances per class: {st.get('instances_per_class')}; empty images: {st.get('empty_images')}; "
                f"box sizes (COCO buckets): {st.get('box_size_buckets')}"
            )
        return "\n".join(lines)


class _Collector:
    """Builds violations for one sample; keeps the validator functions short."""

    def __init__(self, index: int | None, model_ready: bool):
        self.index = index
        self.model_ready = model_ready
        self.items: list[Violation] = []

    def add(self, code: str, field_: str | None, message: str, *, instance: int | None = None,
            hint: str | None = None, severity: Severity | None = None) -> None:
        sev = severity or RULES[code]
        self.items.append(Violation(code, sev, self.index, field_, instance, message, hint))


def _fmt(values: Any) -> str:
    if isinstance(values, torch.Tensor):
        values = values.flatten().tolist()
    return str([round(float(x), 3) for x in values])


def image_size(image: Any) -> tuple[int, int] | None:
    """(height, width) of a PIL image, a [..., H, W] tensor or an :class:`ImageHeader`, None when it cannot be
    told."""
    if isinstance(image, ImageHeader):
        return image.height, image.width
    if isinstance(image, Image.Image):
        return image.height, image.width
    if isinstance(image, torch.Tensor) and image.ndim >= 2:
        return int(image.shape[-2]), int(image.shape[-1])
    return None


# The checks below turn each per-instance field into a Python list with one tensor operation and test the
# values in Python: for the handful of instances of a typical image that is several times cheaper than a
# chain of tensor operations, which keeps validation within a few percent of the cost of loading the data.


def _check_image(image: Any, c: _Collector) -> tuple[int, int] | None:
    if isinstance(image, ImageHeader):  # pixels not decoded: only the size is known (see ImageHeader)
        return image.height, image.width
    if isinstance(image, Image.Image):
        if image.mode != "RGB":
            c.add("IMAGE_CHANNELS", "image", f"PIL image has mode {image.mode!r}, expected 'RGB'",
                  hint="call .convert('RGB') when loading (RGBA and grayscale files are common)")
        if c.model_ready:
            c.add("IMAGE_TYPE", "image", "a PIL image reaches the model; it needs a float tensor [3, H, W]",
                  hint="add PILToTensor + ToDtype(torch.float, scale=True) to the transforms")
        return image.height, image.width
    if not isinstance(image, torch.Tensor):
        c.add("IMAGE_TYPE", "image", f"image is a {type(image).__name__}, expected a PIL image or a tensor",
              hint="numpy arrays must be converted, e.g. torch.from_numpy(a).permute(2, 0, 1)")
        return None
    if image.ndim != 3:
        c.add("IMAGE_SHAPE", "image", f"image tensor has shape {list(image.shape)}, expected [3, H, W]",
              hint="drop the batch dimension; the model batches a list of images itself" if image.ndim == 4
              else None)
        return None
    if image.shape[0] != 3:
        hint = None
        if image.shape[-1] in (1, 3, 4) and image.shape[0] > 4:
            hint = "looks channels-last [H, W, C]; use .permute(2, 0, 1)"
        elif image.shape[0] in (1, 4):
            hint = "grayscale or RGBA source file; convert to RGB when loading"
        c.add("IMAGE_CHANNELS", "image", f"image tensor has {image.shape[0]} channels (shape "
              f"{list(image.shape)}), expected 3", hint=hint)
    if image.dtype == torch.uint8:
        if c.model_ready:
            c.add("IMAGE_DTYPE", "image", "uint8 image reaches the model, which expects float in [0, 1]",
                  hint="add ToDtype(torch.float, scale=True) (or ConvertImageDtype(torch.float))")
    elif not image.is_floating_point():
        c.add("IMAGE_DTYPE", "image", f"image dtype is {image.dtype}, expected uint8 or a float type")
    elif image.numel():
        lo, hi = (float(v) for v in torch.aminmax(image))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            c.add("IMAGE_RANGE", "image", "image holds NaN or inf values", severity=Severity.ERROR)
        elif lo < 0.0 or hi > 1.0:
            hint = ("values look like 0-255 in a float tensor; use ToDtype(torch.float, scale=True)"
                    if 1.0 < hi <= 255.0 else "models normalise internally; pass values in [0, 1]")
            c.add("IMAGE_RANGE", "image", f"float image values span [{lo:.3f}, {hi:.3f}], expected [0, 1]",
                  hint=hint, severity=Severity.ERROR if c.model_ready else Severity.WARNING)
    return int(image.shape[-2]), int(image.shape[-1])


def _check_keys(target: Mapping, c: _Collector, with_masks: bool | None) -> None:
    keys = set(target.keys())
    for k in REQUIRED_KEYS + (("masks",) if with_masks else ()):
        if k not in keys:
            close = difflib.get_close_matches(k, [str(x) for x in keys - set(KNOWN_KEYS)], n=1)
            c.add("MISSING_KEY", k, f"target has no {k!r} key (keys: {sorted(map(str, keys))})",
                  hint=f"{close[0]!r} looks like a misspelling of {k!r}" if close else None)
    for k in keys - set(KNOWN_KEYS):
        close = difflib.get_close_matches(str(k), KNOWN_KEYS, n=1)
        c.add("UNKNOWN_KEY", str(k), f"target has an unknown key {k!r}; models and transforms ignore it",
              hint=f"did you mean {close[0]!r}?" if close else None)


def _xywh_hint(box: list[float], size: tuple[int, int] | None) -> str | None:
    x, y, w, h = box
    if w > 0 and h > 0 and (size is None or (x + w <= size[1] + 1 and y + h <= size[0] + 1)):
        return (f"read as [x, y, w, h] this is a valid box ([{x:g}, {y:g}, {x + w:g}, {y + h:g}] in XYXY); "
                "convert with torchvision.ops.box_convert(boxes, 'xywh', 'xyxy')")
    return None


def _plain(value: Any) -> Any:
    """A tv_tensor as a plain tensor: the checks need no metadata, and plain tensors dispatch faster."""
    return value.as_subclass(torch.Tensor) if isinstance(value, tv_tensors.TVTensor) else value


def _check_canvas(boxes: Any, size: tuple[int, int] | None, c: _Collector) -> None:
    """The metadata of ``tv_tensors.BoundingBoxes``: XYXY format and the image's size as canvas."""
    if not isinstance(boxes, tv_tensors.BoundingBoxes):
        return
    if boxes.format != tv_tensors.BoundingBoxFormat.XYXY:
        c.add("CANVAS_MISMATCH", "boxes", f"BoundingBoxes format is {boxes.format.name}, expected XYXY",
              hint="convert with torchvision.transforms.v2.ConvertBoundingBoxFormat('XYXY')")
    if size is not None and tuple(boxes.canvas_size) != tuple(size):
        c.add("CANVAS_MISMATCH", "boxes", f"BoundingBoxes canvas_size {tuple(boxes.canvas_size)} differs "
              f"from the image size (H, W) = {size}")


def _check_boxes(target: Mapping, size: tuple[int, int] | None, c: _Collector) -> list[list[float]] | None:
    """Checks ``boxes``; returns them as rows (N is their count) or None when they are unusable."""
    boxes = target.get("boxes")
    if boxes is None:
        return None
    if not isinstance(boxes, torch.Tensor):
        c.add("BOXES_SHAPE", "boxes", f"boxes is a {type(boxes).__name__}, expected a tensor [N, 4]")
        return None
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        hint = ("an image without objects needs boxes of shape [0, 4]: torch.zeros((0, 4))"
                if boxes.numel() == 0 else None)
        c.add("BOXES_SHAPE", "boxes", f"boxes has shape {list(boxes.shape)}, expected [N, 4]", hint=hint)
        return None
    if not boxes.is_floating_point():
        c.add("BOXES_DTYPE", "boxes", f"boxes dtype is {boxes.dtype}, expected a float type",
              hint="use torch.as_tensor(boxes, dtype=torch.float32)")
    rows = boxes.tolist()
    h, w = size if size is not None else (math.inf, math.inf)
    for i, box in enumerate(rows):
        x1, y1, x2, y2 = box
        if not all(math.isfinite(v) for v in box):
            c.add("BOXES_NONFINITE", "boxes", f"box {_fmt(box)} has a NaN or inf coordinate", instance=i)
            continue
        degenerate = x2 <= x1 or y2 <= y1
        if degenerate:
            c.add("BOX_DEGENERATE", "boxes", f"box {_fmt(box)} has x2 <= x1 or y2 <= y1 (XYXY needs positive "
                  "width and height)", instance=i, hint=_xywh_hint(box, size))
        if min(x1, y1) < -BOUNDS_EPS_PX or x2 > w + BOUNDS_EPS_PX or y2 > h + BOUNDS_EPS_PX:
            hint = _xywh_hint(box, size) if degenerate else None
            c.add("BOX_OUT_OF_BOUNDS", "boxes", f"box {_fmt(box)} leaves the image [0, {w}] x [0, {h}]",
                  instance=i, hint=hint or "clamp with torchvision.ops.clip_boxes_to_image or fix the source")
    return rows


def _is_zero_box_negative(target: Mapping) -> bool:
    boxes, labels = target.get("boxes"), target.get("labels")
    return (isinstance(boxes, torch.Tensor) and isinstance(labels, torch.Tensor) and boxes.numel() == 4
            and labels.numel() == 1 and not bool(boxes.any()) and int(labels.flatten()[0]) == 0)


def _check_counts(target: Mapping, n: int, c: _Collector) -> set[str]:
    """Fields whose first dimension differs from N; they are skipped by the value checks."""
    bad = set()
    for k in PER_INSTANCE_KEYS:
        v = target.get(k)
        if isinstance(v, torch.Tensor) and (v.ndim == 0 or v.shape[0] != n):
            c.add("COUNT_MISMATCH", k, f"{k} has shape {list(v.shape)} but boxes has {n} instances",
                  hint="a transform filtered boxes but not this field (e.g. SanitizeBoundingBoxes without "
                  "labels_getter covering it)" if k in ("area", "iscrowd") else None)
            bad.add(k)
    return bad


def _check_labels(labels: Any, c: _Collector, num_classes: int | None) -> list[int] | None:
    if not isinstance(labels, torch.Tensor):
        c.add("LABELS_DTYPE", "labels", f"labels is a {type(labels).__name__}, expected an int64 tensor [N]")
        return None
    if labels.dtype != torch.int64:
        c.add("LABELS_DTYPE", "labels", f"labels dtype is {labels.dtype}, expected torch.int64",
              hint="torch.as_tensor(labels, dtype=torch.int64)")
        if labels.is_floating_point():
            return None
    if labels.ndim != 1:
        c.add("COUNT_MISMATCH", "labels", f"labels has shape {list(labels.shape)}, expected [N]")
        return None
    values = labels.tolist()
    for i, v in enumerate(values):
        if v == 0:
            c.add("LABEL_BACKGROUND", "labels", "label 0 is reserved for background but marks an object",
                  instance=i, hint="number classes from 1; num_classes counts the background too")
        elif v < 0:
            c.add("LABEL_NEGATIVE", "labels", f"label {v} is negative", instance=i)
        elif num_classes is not None and v >= num_classes:
            c.add("LABEL_OUT_OF_RANGE", "labels", f"label {v} does not fit a head of num_classes={num_classes} "
                  f"(valid 1..{num_classes - 1})", instance=i, hint="num_classes must include the background class")
    return values


def _check_image_id(image_id: Any, c: _Collector) -> int | None:
    if isinstance(image_id, int) and not isinstance(image_id, bool):
        return image_id
    if isinstance(image_id, torch.Tensor) and image_id.numel() == 1 and not image_id.is_floating_point() \
            and image_id.dtype != torch.bool:
        return int(image_id.item())
    c.add("IMAGE_ID_TYPE", "image_id", f"image_id is {image_id!r} ({type(image_id).__name__}); expected an "
          "int or a one-element integer tensor")
    return None


def _check_area(area: Any, boxes: list[list[float]] | None, masks: torch.Tensor | None, c: _Collector) -> None:
    if not isinstance(area, torch.Tensor):
        c.add("AREA_NEGATIVE", "area", f"area is a {type(area).__name__}, expected a float tensor [N]")
        return
    for i, a in enumerate(area.flatten().tolist()):
        if not math.isfinite(a) or a < 0:
            c.add("AREA_NEGATIVE", "area", f"area {a} is negative or not finite", instance=i)
            continue
        if boxes is None or i >= len(boxes):
            continue
        x1, y1, x2, y2 = boxes[i]
        box_area = max(x2 - x1, 0.0) * max(y2 - y1, 0.0)
        if abs(a - box_area) <= AREA_REL_TOLERANCE * box_area + 1.0:
            continue
        if masks is not None:  # COCO areas are mask areas; counted only when the box area does not match
            mask_area = float(masks[i].sum())
            if abs(a - mask_area) <= AREA_REL_TOLERANCE * mask_area + 1.0:
                continue
            if abs(a - mask_area) <= AREA_REL_TOLERANCE * mask_area + AREA_BOUNDARY_WIDTHS * \
                    _boundary_pixels(masks[i]) + 4.0:
                continue
        c.add("AREA_INCONSISTENT", "area", f"area {a:.1f} matches neither the box area {box_area:.1f}"
              + (" nor the mask area" if masks is not None else ""), instance=i,
              hint="area drives COCO's small/medium/large buckets; recompute it after resizing")


def _boundary_pixels(mask: torch.Tensor) -> int:
    """Foreground pixels of a [H, W] mask with a 4-neighbour outside it (the image border counts as outside)."""
    m = torch.nn.functional.pad(mask.bool()[None, None].to(torch.uint8), (1, 1, 1, 1))[0, 0].bool()
    inner = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    return int(m[1:-1, 1:-1].sum()) - int(inner.sum())


def _check_iscrowd(iscrowd: Any, c: _Collector) -> None:
    if not isinstance(iscrowd, torch.Tensor):
        c.add("ISCROWD_VALUES", "iscrowd", f"iscrowd is a {type(iscrowd).__name__}, expected a tensor [N]")
        return
    for i, v in enumerate(iscrowd.flatten().tolist()):
        if v not in (0, 1):
            c.add("ISCROWD_VALUES", "iscrowd", f"iscrowd {v:g} is not 0 or 1", instance=i)


def _first_last(flags: list[bool]) -> tuple[int, int] | None:
    """Index of the first True and one past the last True, None when there is none."""
    if True not in flags:
        return None
    return flags.index(True), len(flags) - flags[::-1].index(True)


def _check_masks(masks: Any, size: tuple[int, int] | None, boxes: list[list[float]] | None,
                 c: _Collector) -> bool:
    """Returns True when the masks are well-formed enough for the area check."""
    if not isinstance(masks, torch.Tensor):
        c.add("MASKS_DTYPE", "masks", f"masks is a {type(masks).__name__}, expected a uint8 tensor [N, H, W]")
        return False
    if masks.ndim != 3 or (size is not None and tuple(masks.shape[-2:]) != tuple(size)):
        c.add("MASKS_SHAPE", "masks", f"masks has shape {list(masks.shape)}, expected [N, H, W] with "
              f"(H, W) = {size}", hint="masks must follow every resize and crop of the image")
        return False
    if masks.dtype != torch.uint8:
        hint = "bool masks break the RLE encoder in evaluation; use masks.to(torch.uint8)" \
            if masks.dtype == torch.bool else "use uint8 masks with values 0 and 1"
        c.add("MASKS_DTYPE", "masks", f"masks dtype is {masks.dtype}, expected torch.uint8", hint=hint)
    m = masks
    if not m.numel():
        return True
    if m.dtype in (torch.uint8, torch.bool):  # two passes over the pixels: row and column maxima
        row_max, col_max = m.amax(dim=2), m.amax(dim=1)
        valid = int(row_max.max()) <= 1
    else:
        valid = not bool(((m != 0) & (m != 1)).any())
        row_max, col_max = m.amax(dim=2), m.amax(dim=1)
    if not valid:
        vals = torch.unique(m)[:6]
        c.add("MASKS_VALUES", "masks", f"masks hold values {_fmt(vals)}, expected only 0 and 1",
              hint="a 0/255 mask: divide by 255 or compare with > 0" if float(vals.max()) == 255 else
              "an instance-id map must be split into one binary mask per instance")
        return False
    rows, cols = (row_max != 0).tolist(), (col_max != 0).tolist()
    for i, (r, col) in enumerate(zip(rows, cols)):
        ys, xs = _first_last(r), _first_last(col)
        if ys is None or xs is None:
            c.add("MASK_EMPTY", "masks", "instance mask has no foreground pixel", instance=i,
                  hint="the object was cropped away; SanitizeBoundingBoxes or a filter should drop it")
            continue
        if boxes is None or i >= len(boxes) or not all(math.isfinite(v) for v in boxes[i]):
            continue
        mask_box = [xs[0], ys[0], xs[1], ys[1]]  # exclusive corners: one past the last pixel
        diff = max(abs(a - b) for a, b in zip(mask_box, boxes[i]))
        if diff > MASK_BOX_TOLERANCE_PX:
            c.add("MASK_BOX_MISMATCH", "masks", f"box {_fmt(boxes[i])} differs from its mask's box "
                  f"{_fmt(mask_box)} by {diff:.1f} px", instance=i,
                  hint="boxes not moved by a transform (plain tensors instead of tv_tensors.BoundingBoxes?)")
    return True


def _check_keypoints(kp: Any, c: _Collector, num_keypoints: int | None) -> None:
    if not isinstance(kp, torch.Tensor):
        c.add("KEYPOINTS_DTYPE", "keypoints", f"keypoints is a {type(kp).__name__}, expected a float tensor")
        return
    if kp.ndim != 3 or kp.shape[-1] != 3 or (num_keypoints is not None and kp.shape[1] != num_keypoints):
        want = f"[N, {num_keypoints if num_keypoints is not None else 'K'}, 3]"
        c.add("KEYPOINTS_SHAPE", "keypoints", f"keypoints has shape {list(kp.shape)}, expected {want}",
              hint="the third column is visibility (0 absent, 1 occluded, 2 visible)"
              if kp.ndim == 3 and kp.shape[-1] == 2 else None)
        return
    if not kp.is_floating_point():
        c.add("KEYPOINTS_DTYPE", "keypoints", f"keypoints dtype is {kp.dtype}, expected a float type")
    for i, vis in enumerate(kp[..., 2].tolist()):
        if any(v not in (0, 1, 2) for v in vis):
            c.add("KEYPOINTS_VISIBILITY", "keypoints", f"visibility values {_fmt(vis)} outside {{0, 1, 2}}",
                  instance=i)


@dataclass
class _Parsed:
    """What the checks read out of one sample, reused for the dataset statistics."""

    size: tuple[int, int] | None = None
    boxes: list[list[float]] | None = None
    labels: list[int] | None = None


def _validate(image: Any, target: Any, c: _Collector, num_classes: int | None, num_keypoints: int | None,
              require_masks: bool | None) -> _Parsed:
    parsed = _Parsed(size=_check_image(_plain(image), c))
    if not isinstance(target, Mapping):
        c.add("TARGET_TYPE", "target", f"target is a {type(target).__name__}, expected a dict of tensors")
        return parsed
    _check_keys(target, c, require_masks)
    _check_canvas(target.get("boxes"), parsed.size, c)
    target = {k: _plain(v) for k, v in target.items()}
    if _is_zero_box_negative(target):
        c.add("NEGATIVE_SAMPLE_ENCODING", "boxes", "an image without objects is encoded as one zero box with "
              "label 0", instance=0, hint="use boxes of shape [0, 4] and labels of shape [0]")
        return parsed
    boxes = parsed.boxes = _check_boxes(target, parsed.size, c)
    bad_count = _check_counts(target, len(boxes), c) if boxes is not None else set()
    if "labels" in target and "labels" not in bad_count:
        parsed.labels = _check_labels(target["labels"], c, num_classes)
    if "image_id" in target:
        _check_image_id(target["image_id"], c)
    if "iscrowd" in target and "iscrowd" not in bad_count:
        _check_iscrowd(target["iscrowd"], c)
    masks = None  # well-formed masks only, for the area check
    if "masks" in target and "masks" not in bad_count:
        if _check_masks(target["masks"], parsed.size, boxes, c):
            masks = target["masks"]
    if "area" in target and "area" not in bad_count:
        _check_area(target["area"], boxes, masks, c)
    if "keypoints" in target and "keypoints" not in bad_count:
        _check_keypoints(target["keypoints"], c, num_keypoints)
    return parsed


def validate_sample(image: Any, target: Any, *, index: int | None = None, num_classes: int | None = None,
                    num_keypoints: int | None = None, model_ready: bool = False,
                    require_masks: bool | None = None) -> list[Violation]:
    """Check one ``(image, target)`` pair against the contract.

    ``model_ready`` checks what reaches the model (float image in [0, 1]) rather than what a dataset may
    return. ``num_classes`` (background included) and ``num_keypoints`` check fit with a model's heads.
    Never raises for malformed input: every problem becomes a :class:`Violation`.
    """
    c = _Collector(index, model_ready)
    _validate(image, target, c, num_classes, num_keypoints, require_masks)
    return c.items


def image_id_of(target: Any) -> int | None:
    """The image id as an int, for either flavour; None when it has neither form."""
    if not isinstance(target, Mapping):
        return None
    v = target.get("image_id")
    if isinstance(v, torch.Tensor) and v.numel() == 1 and not v.is_floating_point():
        return int(v.item())
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    return None


@dataclass
class _Stats:
    per_class: Counter = field(default_factory=Counter)
    boxes_per_image: Counter = field(default_factory=Counter)
    size_buckets: Counter = field(default_factory=Counter)
    empty: int = 0
    heights: list[int] = field(default_factory=list)
    widths: list[int] = field(default_factory=list)
    # (sample index, instance, label, box width, box height) of every well-formed box with a label
    boxes: list[tuple[int, int, int, float, float]] = field(default_factory=list)

    def add(self, index: int, parsed: _Parsed) -> None:
        if parsed.size:
            self.heights.append(parsed.size[0])
            self.widths.append(parsed.size[1])
        if parsed.labels is not None:
            self.per_class.update(parsed.labels)
        if parsed.boxes is not None:
            n = len(parsed.boxes)
            self.boxes_per_image[str(n)] += 1
            self.empty += n == 0
            for k, (x1, y1, x2, y2) in enumerate(parsed.boxes):  # COCO: small < 32^2 <= medium < 96^2 <= large
                a = (x2 - x1) * (y2 - y1)
                self.size_buckets["small" if a < 32**2 else "medium" if a < 96**2 else "large"] += 1
                if parsed.labels is not None and k < len(parsed.labels) and math.isfinite(a) and a > 0:
                    self.boxes.append((index, k, parsed.labels[k], x2 - x1, y2 - y1))

    def to_dict(self, names: list[str] | None) -> dict[str, Any]:
        return {
            "instances_per_class": {class_name(label, names): n for label, n in sorted(self.per_class.items())},
            "boxes_per_image": dict(sorted(self.boxes_per_image.items(), key=lambda kv: int(kv[0]))),
            "box_size_buckets": {k: self.size_buckets.get(k, 0) for k in ("small", "medium", "large")},
            "empty_images": self.empty,
            "image_height_range": [min(self.heights), max(self.heights)] if self.heights else None,
            "image_width_range": [min(self.widths), max(self.widths)] if self.widths else None,
        }


def class_name(label: int, names: list[str] | None) -> str:
    """The name of ``label`` in ``names`` (background first), else the label as text."""
    if names is not None and 0 <= label < len(names):
        return str(names[label])
    return str(label)


def class_names_of(dataset: Any) -> list[str] | None:
    """The dataset's ``classes`` (background first), looking through ``torch.utils.data.Subset``."""
    while dataset is not None:
        names = getattr(dataset, "classes", None)
        if isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names):
            return list(names)
        dataset = getattr(dataset, "dataset", None)
    return None


def dataset_checks(stats: _Stats, names: list[str] | None, complete: bool) -> list[Violation]:
    """The rules over the whole dataset: classes declared but unused (only when every sample was checked),
    class imbalance and boxes far from their class's size distribution (Datumaro's ImbalancedLabels and
    FarFromLabelMean, with its default thresholds)."""
    out: list[Violation] = []
    if names is not None and complete:
        for label, name in enumerate(names[1:], start=1):
            if stats.per_class.get(label, 0) == 0:
                out.append(Violation("CLASS_UNUSED", RULES["CLASS_UNUSED"], None, "labels", None,
                                     f"class {label} {name!r} is declared but has no instance",
                                     "a head trained without examples of a class never predicts it; drop it "
                                     "from the class list or annotate it"))
    counts = {label: n for label, n in stats.per_class.items() if n > 0}
    if len(counts) >= 2:
        most, least = max(counts, key=counts.get), min(counts, key=counts.get)
        ratio = counts[most] / counts[least]
        if ratio > IMBALANCE_RATIO:
            out.append(Violation("CLASS_IMBALANCE", RULES["CLASS_IMBALANCE"], None, "labels", None,
                                 f"class {class_name(most, names)!r} has {counts[most]} instances, "
                                 f"{class_name(least, names)!r} {counts[least]}: ratio {ratio:.1f} > "
                                 f"{IMBALANCE_RATIO:g}", "sample the rare class more often or annotate more of it"))
    by_label: dict[int, list[tuple[int, int, float, float]]] = defaultdict(list)
    for index, k, label, w, h in stats.boxes:
        by_label[label].append((index, k, w * h, w / h))
    for label, rows in sorted(by_label.items()):
        for j, what in ((2, "area"), (3, "aspect ratio (w/h)")):
            values = [r[j] for r in rows]
            mean = sum(values) / len(values)
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
            if std == 0:
                continue
            for r in rows:
                if abs(r[j] - mean) > FAR_FROM_MEAN_STD * std:
                    out.append(Violation("BOX_SIZE_OUTLIER", RULES["BOX_SIZE_OUTLIER"], r[0], "boxes", r[1],
                                         f"box {what} {r[j]:.3g} is {abs(r[j] - mean) / std:.1f} standard deviations "
                                         f"from the mean {mean:.3g} of class {class_name(label, names)!r}",
                                         "often a box in the wrong units or on the wrong image"))
    return out


def image_fingerprint(image: Any) -> tuple[str, int]:
    """sha1 of an image's uint8 pixels (exact duplicates) and its 64-bit pHash (near duplicates; ``imagehash``,
    a runtime dependency of the project)."""
    import hashlib

    import imagehash  # a runtime dependency; imported here, since only the split comparison needs it

    if isinstance(image, Image.Image):
        pil = image.convert("RGB")
    else:
        t = _plain(image)
        if t.is_floating_point():
            t = (t.clamp(0, 1) * 255).round()
        t = t.to(torch.uint8)
        pil = Image.fromarray(t.permute(1, 2, 0).contiguous().numpy() if t.ndim == 3 else t.numpy())
        pil = pil.convert("RGB")
    digest = hashlib.sha1(pil.tobytes() + repr(pil.size).encode()).hexdigest()
    return digest, int(str(imagehash.phash(pil)), 16)


def compare_splits(train: Report, val: Report, train_names: list[str] | None,
                   val_names: list[str] | None) -> list[Violation]:
    """Rules across a training and a validation split, as violations indexed by the validation sample:
    images in both (same pixels, or pHashes at most NEAR_DUPLICATE_BITS apart; needs ``fingerprint=True``
    in both validations), classes with instances in one split only, and a class name with another id."""
    out: list[Violation] = []
    if train_names is not None and val_names is not None:
        val_ids = {n: i for i, n in enumerate(val_names)}
        for i, n in enumerate(train_names):
            if n in val_ids and val_ids[n] != i:
                out.append(Violation("SPLIT_CLASS_ID_MISMATCH", RULES["SPLIT_CLASS_ID_MISMATCH"], None, "labels",
                                     None, f"class {n!r} is label {i} in the training split and {val_ids[n]} in "
                                     "the validation split", "give both splits one class list (--classes FILE)"))
    a = train.statistics.get("instances_per_class", {})
    b = val.statistics.get("instances_per_class", {})
    for name in sorted(set(a) | set(b)):
        if not a.get(name) or not b.get(name):
            where, other = ("training", "validation") if a.get(name) else ("validation", "training")
            out.append(Violation("SPLIT_CLASS_MISSING", RULES["SPLIT_CLASS_MISSING"], None, "labels", None,
                                 f"class {name!r} has instances in the {where} split but none in the {other} split",
                                 "the class is never trained on or never evaluated"))
    exact = {sha: i for i, sha, _ in train.fingerprints}
    hashes = [(i, ph) for i, _, ph in train.fingerprints if ph is not None]
    for j, sha, ph in val.fingerprints:
        match = exact.get(sha)
        how = "the same pixels as"
        if match is None and ph is not None:
            near = [(bin(ph ^ q).count("1"), i) for i, q in hashes]
            close = min(near, default=None)
            if close is not None and close[0] <= NEAR_DUPLICATE_BITS:
                match, how = close[1], f"a near-duplicate (pHash {close[0]} bits apart) of"
        if match is not None:
            out.append(Violation("SPLIT_DUPLICATE_IMAGE", RULES["SPLIT_DUPLICATE_IMAGE"], j, "image", None,
                                 f"validation sample {j} is {how} training sample {match}",
                                 "an image in both splits inflates the validation scores; keep it in one"))
    return out


def check_picklable(dataset: Any) -> list[Violation]:
    """NOT_PICKLABLE when the dataset cannot be sent to DataLoader workers (spawn start method)."""
    try:
        pickle.dumps(dataset)
    except Exception as exc:  # noqa: BLE001 - any pickling failure is the finding
        return [Violation("NOT_PICKLABLE", Severity.ERROR, None, "dataset",
                          None, f"pickling the dataset failed: {type(exc).__name__}: {exc}",
                          "define the class and its transforms at module level, not in __main__ or a lambda")]
    return []


def _check_size_hint(dataset: Any, i: int, image: Any) -> list[Violation]:
    getter = getattr(dataset, "get_height_and_width", None)
    size = image_size(image)
    if getter is None or size is None:
        return []
    try:
        claimed = tuple(int(x) for x in getter(i))
    except Exception as exc:  # noqa: BLE001
        return [Violation("SIZE_MISMATCH", Severity.ERROR, i, "get_height_and_width", None,
                          f"get_height_and_width({i}) raised {type(exc).__name__}: {exc}")]
    if claimed != size:
        return [Violation("SIZE_MISMATCH", Severity.ERROR, i, "get_height_and_width", None,
                          f"get_height_and_width({i}) says (H, W) = {claimed} but the image is {size}",
                          "aspect-ratio grouping uses this method; it must return (height, width)")]
    return []


def headers_only_refusal(dataset: Any, *, model_ready: bool = False, fingerprint: bool = False) -> str | None:
    """Why the header-only fast path cannot stand in for decoding this dataset's images, None when it can.

    It applies to a loader with ``header_sample(i)`` (the sample of ``dataset[i]`` with an :class:`ImageHeader`
    for the image) and no transforms (they need pixels); not with ``model_ready`` (the image's dtype and range
    are the question) nor with ``fingerprint`` (duplicate images are found by their pixels).
    """
    if not callable(getattr(dataset, "header_sample", None)):
        return f"a {type(dataset).__name__} has no header_sample"
    if getattr(dataset, "transforms", None) is not None:
        return "transforms need the pixels"
    if model_ready:
        return "--model-ready checks the pixels' dtype and range"
    if fingerprint:
        return "finding duplicate images across splits needs the pixels"
    return None


class _Loaded:
    """``dataset[i]`` as a worker returns it: the sample or the error text, and the fingerprint when asked.
    With ``headers`` the sample is ``dataset.header_sample(i)``, whose image is an :class:`ImageHeader`.

    A module-level class, so that DataLoader workers can pickle it; one failing sample does not stop the rest.
    """

    def __init__(self, dataset: Any, fingerprint: bool, headers: bool = False):
        self.dataset, self.fingerprint, self.headers = dataset, fingerprint, headers

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[Any, str | None, tuple[str, int | None] | None]:
        try:
            sample = self.dataset.header_sample(i) if self.headers else self.dataset[i]
        except Exception as exc:  # noqa: BLE001 - reported as GETITEM_FAILED
            return None, f"dataset[{i}] raised {type(exc).__name__}: {exc}", None
        fp = None
        if self.fingerprint and isinstance(sample, (tuple, list)) and len(sample) == 2:
            try:
                fp = image_fingerprint(sample[0])
            except ImportError:  # a missing dependency is not a finding about the image
                raise
            except Exception:  # noqa: BLE001 - an image the contract rejects has no fingerprint
                fp = None
        return sample, None, fp


def _as_is(item: Any) -> Any:
    return item


def _load_all(dataset: Any, indices: Iterable[int], count: int, workers: int, fingerprint: bool,
              headers: bool = False):
    """Yields ``(i, (sample, error, fingerprint))`` in order. With ``workers`` > 0 the samples 0..count-1 load
    in DataLoader worker processes and ``indices`` (a progress bar over them) only advances with them."""
    loaded = _Loaded(dataset, fingerprint, headers)
    if workers <= 0:
        for i in indices:
            yield i, loaded[i]
        return
    from torch.utils.data import DataLoader

    loader = DataLoader(loaded, batch_size=None, sampler=list(range(count)), num_workers=workers,
                        collate_fn=_as_is)
    yield from zip(indices, loader)


def validate_dataset(dataset: Any, *, num_classes: int | None = None, num_keypoints: int | None = None,
                     max_samples: int | None = None, model_ready: bool = False,
                     check_pickle: bool = True, progress: Iterable[int] | None = None, workers: int = 0,
                     fingerprint: bool = False, dataset_rules: bool = True, headers_only: bool = False) -> Report:
    """Validate every sample (or the first ``max_samples``) plus the dataset-wide rules.

    Dataset-wide rules: at least one sample (DATASET_EMPTY), unique ``image_id`` (IMAGE_ID_DUPLICATE),
    ``get_height_and_width`` agreeing with the image (SIZE_MISMATCH), picklability (NOT_PICKLABLE), a
    consistent ``image_id`` flavour and, unless ``dataset_rules`` is False, :func:`dataset_checks`. What the
    dataset's loader recorded while reading its files (``load_violations``) is reported too. A sample whose
    ``__getitem__`` raises is reported as GETITEM_FAILED and validation goes on. ``workers`` > 0 loads the
    samples in that many DataLoader worker processes (the results are the same, in the same order);
    ``fingerprint`` keeps each image's hashes in ``Report.fingerprints`` for :func:`compare_splits`. Statistics
    name classes by the dataset's ``classes`` when it has them.

    ``headers_only`` takes the fast path where :func:`headers_only_refusal` allows it: each image's size comes
    from its file header and no pixel is decoded, and the report is the one decoding would give, except that an
    image whose header reads but whose body is corrupt goes unnoticed (and an unreadable header is reported in
    other words). Where it does not apply the images are decoded, and the reason is logged.
    """
    total = len(dataset)
    count = total if max_samples is None else min(total, max_samples)
    report = Report()
    stats = _Stats()
    seen_ids: dict[int, int] = {}
    flavours: dict[str, int] = {}
    masks_seen: bool | None = None
    names = class_names_of(dataset)
    indices = progress if progress is not None else range(count)
    headers = False
    if headers_only:
        refusal = headers_only_refusal(dataset, model_ready=model_ready, fingerprint=fingerprint)
        headers = refusal is None
        if refusal is not None:
            log.info("reading whole images, not only their headers: %s", refusal)
    report.violations += list(getattr(dataset, "load_violations", []) or [])
    if total == 0:
        report.violations.append(Violation("DATASET_EMPTY", RULES["DATASET_EMPTY"], None, None, None,
                                           "the dataset has no samples", "check the folder and its layout"))
    if check_pickle:
        report.violations += check_picklable(dataset)
    for i, (sample, error, fp) in _load_all(dataset, indices, count, workers, fingerprint, headers):
        report.samples += 1
        if error is not None:
            report.violations.append(Violation("GETITEM_FAILED", Severity.ERROR, i, None, None, error))
            continue
        if not isinstance(sample, (tuple, list)) or len(sample) != 2:
            report.violations.append(Violation("TARGET_TYPE", Severity.ERROR, i, None, None,
                                               f"dataset[{i}] returned a {type(sample).__name__}, expected "
                                               "a pair (image, target)"))
            continue
        if fp is not None:
            report.fingerprints.append((i, fp[0], fp[1]))
        image, target = sample
        if masks_seen is None and isinstance(target, Mapping):
            masks_seen = "masks" in target
        c = _Collector(i, model_ready)
        stats.add(i, _validate(image, target, c, num_classes, num_keypoints, masks_seen))
        report.violations += c.items
        report.violations += _check_size_hint(dataset, i, image)
        iid = image_id_of(target)
        if iid is not None:
            flavours.setdefault(type(target["image_id"]).__name__, i)
            if iid in seen_ids:
                report.violations.append(Violation(
                    "IMAGE_ID_DUPLICATE", Severity.ERROR, i, "image_id", None,
                    f"image_id {iid} already used by sample {seen_ids[iid]}",
                    "evaluation keys predictions by image_id; derive it from the index"))
            else:
                seen_ids[iid] = i
    if len(flavours) > 1:
        first = ", ".join(f"{k} (first at sample {v})" for k, v in flavours.items())
        report.violations.append(Violation("IMAGE_ID_TYPE", Severity.WARNING, None, "image_id", None,
                                           f"image_id mixes types across the dataset: {first}",
                                           "pick one flavour; evaluation code compares ids as given"))
    if dataset_rules:
        report.violations += dataset_checks(stats, names, complete=report.samples >= total)
    report.statistics = {"dataset_length": total, **({"classes": names} if names is not None else {}),
                         **stats.to_dict(names)}
    return report
