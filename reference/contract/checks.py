"""The per-sample checks: one small function per field of ``(image, target)``, each reporting through a
:class:`~reference.contract.findings.Collector`, and :func:`validate_sample`, which runs them in order.

Both flavours of the tutorials are accepted: the legacy one (PIL image, ``image_id`` a one-element int64
tensor) and the current one (``tv_tensors``, ``image_id`` a Python int).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from PIL import Image
from torchvision import tv_tensors

from .findings import Collector, Violation
from .rules import (AREA_BOUNDARY_WIDTHS, AREA_REL_TOLERANCE, BOUNDS_EPS_PX, KNOWN_KEYS, MASK_BOX_TOLERANCE_PX,
                    PER_INSTANCE_KEYS, REQUIRED_KEYS)


@dataclass(frozen=True)
class ImageHeader:
    """Stands in for an image whose pixels were not decoded (the header-only fast path): its size as the file's
    header gives it. A loader returns one from ``header_sample`` only where its ``__getitem__`` would return a
    uint8 RGB image of that size, on which the image rules find nothing unless ``model_ready``."""

    height: int
    width: int


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


def check_image(image: Any, c: Collector) -> tuple[int, int] | None:
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
            c.add("IMAGE_NONFINITE", "image", "image holds NaN or inf values")
        elif lo < 0.0 or hi > 1.0:
            hint = ("values look like 0-255 in a float tensor; use ToDtype(torch.float, scale=True)"
                    if 1.0 < hi <= 255.0 else "models normalise internally; pass values in [0, 1]")
            c.add("IMAGE_RANGE", "image", f"float image values span [{lo:.3f}, {hi:.3f}], expected [0, 1]",
                  hint=hint)
    return int(image.shape[-2]), int(image.shape[-1])


def check_keys(target: Mapping, c: Collector, with_masks: bool | None) -> None:
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


def plain_tensor(value: Any) -> Any:
    """A tv_tensor as a plain tensor: the checks need no metadata, and plain tensors dispatch faster."""
    return value.as_subclass(torch.Tensor) if isinstance(value, tv_tensors.TVTensor) else value


def check_canvas(boxes: Any, size: tuple[int, int] | None, c: Collector) -> None:
    """The metadata of ``tv_tensors.BoundingBoxes``: XYXY format and the image's size as canvas."""
    if not isinstance(boxes, tv_tensors.BoundingBoxes):
        return
    if boxes.format != tv_tensors.BoundingBoxFormat.XYXY:
        c.add("CANVAS_MISMATCH", "boxes", f"BoundingBoxes format is {boxes.format.name}, expected XYXY",
              hint="convert with torchvision.transforms.v2.ConvertBoundingBoxFormat('XYXY')")
    if size is not None and tuple(boxes.canvas_size) != tuple(size):
        c.add("CANVAS_MISMATCH", "boxes", f"BoundingBoxes canvas_size {tuple(boxes.canvas_size)} differs "
              f"from the image size (H, W) = {size}")


def check_boxes(target: Mapping, size: tuple[int, int] | None, c: Collector) -> list[list[float]] | None:
    """Checks ``boxes``; returns them as rows (N is their count) or None when they are unusable."""
    boxes = target.get("boxes")
    if boxes is None:
        return None
    if not isinstance(boxes, torch.Tensor):
        c.add("BOXES_TYPE", "boxes", f"boxes is a {type(boxes).__name__}, expected a tensor [N, 4]",
              hint="torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)")
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


def is_zero_box_negative(target: Mapping) -> bool:
    boxes, labels = target.get("boxes"), target.get("labels")
    return (isinstance(boxes, torch.Tensor) and isinstance(labels, torch.Tensor) and boxes.numel() == 4
            and labels.numel() == 1 and not bool(boxes.any()) and int(labels.flatten()[0]) == 0)


def check_counts(target: Mapping, n: int, c: Collector) -> set[str]:
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


def check_labels(labels: Any, c: Collector, num_classes: int | None) -> list[int] | None:
    if not isinstance(labels, torch.Tensor):
        c.add("LABELS_TYPE", "labels", f"labels is a {type(labels).__name__}, expected an int64 tensor [N]",
              hint="torch.as_tensor(labels, dtype=torch.int64)")
        return None
    if labels.dtype != torch.int64:
        c.add("LABELS_DTYPE", "labels", f"labels dtype is {labels.dtype}, expected torch.int64",
              hint="torch.as_tensor(labels, dtype=torch.int64)")
        if labels.is_floating_point():
            return None
    if labels.ndim != 1:
        c.add("LABELS_SHAPE", "labels", f"labels has shape {list(labels.shape)}, expected [N]",
              hint="one label per box: labels.flatten() when each row holds a single label")
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


def image_id_value(image_id: Any) -> int | None:
    """An ``image_id`` of either flavour as an int: a Python int or a one-element integer tensor; None for
    anything else (bools, floats, strings, bool or float tensors, several elements). The one definition of a
    valid id: the IMAGE_ID_TYPE check and :func:`image_id_of` both use it."""
    if isinstance(image_id, bool):
        return None
    if isinstance(image_id, int):
        return image_id
    if isinstance(image_id, torch.Tensor) and image_id.numel() == 1 and not image_id.is_floating_point() \
            and not image_id.is_complex() and image_id.dtype != torch.bool:
        return int(image_id.item())
    return None


def check_image_id(image_id: Any, c: Collector) -> int | None:
    value = image_id_value(image_id)
    if value is None:
        c.add("IMAGE_ID_TYPE", "image_id", f"image_id is {image_id!r} ({type(image_id).__name__}); expected an "
              "int or a one-element integer tensor")
    return value


def check_area(area: Any, boxes: list[list[float]] | None, masks: torch.Tensor | None, c: Collector) -> None:
    if not isinstance(area, torch.Tensor):
        c.add("AREA_TYPE", "area", f"area is a {type(area).__name__}, expected a float tensor [N]")
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


def check_iscrowd(iscrowd: Any, c: Collector) -> None:
    if not isinstance(iscrowd, torch.Tensor):
        c.add("ISCROWD_TYPE", "iscrowd", f"iscrowd is a {type(iscrowd).__name__}, expected a tensor [N]")
        return
    for i, v in enumerate(iscrowd.flatten().tolist()):
        if v not in (0, 1):
            c.add("ISCROWD_VALUES", "iscrowd", f"iscrowd {v:g} is not 0 or 1", instance=i)


def _first_last(flags: list[bool]) -> tuple[int, int] | None:
    """Index of the first True and one past the last True, None when there is none."""
    if True not in flags:
        return None
    return flags.index(True), len(flags) - flags[::-1].index(True)


def check_masks(masks: Any, size: tuple[int, int] | None, boxes: list[list[float]] | None,
                 c: Collector) -> bool:
    """Returns True when the masks are well-formed enough for the area check."""
    if not isinstance(masks, torch.Tensor):
        c.add("MASKS_TYPE", "masks", f"masks is a {type(masks).__name__}, expected a uint8 tensor [N, H, W]",
              hint="numpy masks: torch.from_numpy(masks)")
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


def check_keypoints(kp: Any, c: Collector, num_keypoints: int | None) -> None:
    if not isinstance(kp, torch.Tensor):
        c.add("KEYPOINTS_TYPE", "keypoints", f"keypoints is a {type(kp).__name__}, expected a float tensor "
              "[N, K, 3]")
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
class Parsed:
    """What the checks read out of one sample, reused for the dataset statistics."""

    size: tuple[int, int] | None = None
    boxes: list[list[float]] | None = None
    labels: list[int] | None = None


def check_sample(image: Any, target: Any, c: Collector, num_classes: int | None, num_keypoints: int | None,
                 require_masks: bool | None) -> Parsed:
    """Every per-field check on one sample, in order; a field too broken to read is not checked further."""
    parsed = Parsed(size=check_image(plain_tensor(image), c))
    if not isinstance(target, Mapping):
        c.add("TARGET_TYPE", "target", f"target is a {type(target).__name__}, expected a dict of tensors")
        return parsed
    check_keys(target, c, require_masks)
    check_canvas(target.get("boxes"), parsed.size, c)
    target = {k: plain_tensor(v) for k, v in target.items()}
    if is_zero_box_negative(target):
        c.add("NEGATIVE_SAMPLE_ENCODING", "boxes", "an image without objects is encoded as one zero box with "
              "label 0", instance=0, hint="use boxes of shape [0, 4] and labels of shape [0]")
        return parsed
    boxes = parsed.boxes = check_boxes(target, parsed.size, c)
    bad_count = check_counts(target, len(boxes), c) if boxes is not None else set()
    if "labels" in target and "labels" not in bad_count:
        parsed.labels = check_labels(target["labels"], c, num_classes)
    if "image_id" in target:
        check_image_id(target["image_id"], c)
    if "iscrowd" in target and "iscrowd" not in bad_count:
        check_iscrowd(target["iscrowd"], c)
    masks = None  # well-formed masks only, for the area check
    if "masks" in target and "masks" not in bad_count:
        if check_masks(target["masks"], parsed.size, boxes, c):
            masks = target["masks"]
    if "area" in target and "area" not in bad_count:
        check_area(target["area"], boxes, masks, c)
    if "keypoints" in target and "keypoints" not in bad_count:
        check_keypoints(target["keypoints"], c, num_keypoints)
    return parsed


def validate_sample(image: Any, target: Any, *, index: int | None = None, num_classes: int | None = None,
                    num_keypoints: int | None = None, model_ready: bool = False,
                    require_masks: bool | None = None) -> list[Violation]:
    """Check one ``(image, target)`` pair against the contract.

    ``model_ready`` checks what reaches the model (float image in [0, 1]) rather than what a dataset may
    return. ``num_classes`` (background included) and ``num_keypoints`` check fit with a model's heads.
    Never raises for malformed input: every problem becomes a :class:`Violation`.
    """
    c = Collector(index, model_ready)
    check_sample(image, target, c, num_classes, num_keypoints, require_masks)
    return c.items


def image_id_of(target: Any) -> int | None:
    """The image id of a target as an int, for either flavour; None when it has neither form."""
    if not isinstance(target, Mapping):
        return None
    return image_id_value(target.get("image_id"))
