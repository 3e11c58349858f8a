"""A sample as its layout reads it, and the one step that turns it into the tutorial's target.

Each layout (:mod:`~reference.data.pennfudan`, :mod:`~reference.data.labelme`, :mod:`~reference.data.coco`)
parses its files into a :class:`SampleRecord`: the labels, the boxes where the file has them, where the masks
come from and how ``area`` is meant. :func:`to_target` makes the tensors from it, the same way for every
layout, as detectron2's ``DatasetMapper`` turns its dataset dicts into ``Instances``: masks drawn, boxes from
the masks where the file gives none, the area rule applied, ``tv_tensors`` wrapped. The image itself is read by
the layout, since which way up it is read is the layout's decision (see :mod:`reference.data.images`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal, Protocol, Sequence

import torch
from torchvision import ops, tv_tensors

from .common import boxes_from_masks

log = logging.getLogger(__name__)

AreaRule = Literal["mask", "box"]


class MaskSource(Protocol):
    """Where a sample's instance masks come from (polygons, RLE, shapes, an id map); drawn only when asked."""

    def draw(self, height: int, width: int) -> torch.Tensor:
        """The instances' masks as uint8 {0, 1} [N, H, W], in the record's order."""
        ...


@dataclass(frozen=True)
class DrawnMasks:
    """Masks a layout has already made (an id map's instances are its pixels)."""

    masks: torch.Tensor

    def draw(self, height: int, width: int) -> torch.Tensor:
        if tuple(self.masks.shape[-2:]) != (height, width):
            raise ValueError(f"masks of size {tuple(self.masks.shape[-2:])} for an image of {(height, width)}")
        return self.masks


@dataclass(frozen=True)
class SampleRecord:
    """One sample's annotations, in the frame of a ``height`` x ``width`` image.

    ``boxes``: XYXY float32 [N, 4] as the file gives them; None takes each mask's box
    (:func:`~reference.data.common.boxes_from_masks`, ``exclusive_boxes`` choosing its convention).
    ``area``: the file's values, or "mask" (pixel count, labelme2coco's) or "box" (the tutorial's box area).
    ``iscrowd``: None for no crowd regions. ``name`` (the sample's file) is what a log line names.
    """

    name: str
    image_id: int
    height: int
    width: int
    labels: Sequence[int]
    boxes: torch.Tensor | None = None
    area: Sequence[float] | AreaRule = "box"
    iscrowd: Sequence[int] | None = None
    masks: MaskSource | None = None
    keypoints: torch.Tensor | None = None
    exclusive_boxes: bool = False


def to_target(record: SampleRecord) -> tuple[dict[str, Any], list[int]]:
    """The record as torchvision's detection target (``boxes``, ``labels``, ``masks`` where it has a mask
    source, ``image_id``, ``area``, ``iscrowd``, ``keypoints`` where it has them), and the instances whose box
    from a one-pixel-wide mask was widened (each logged as a warning)."""
    h, w = record.height, record.width
    n = len(record.labels)
    masks = record.masks.draw(h, w) if record.masks is not None else None
    widened: list[int] = []
    if record.boxes is not None:
        boxes = record.boxes.to(torch.float32).reshape(-1, 4)
    elif masks is not None:
        boxes, widened = boxes_from_masks(masks, exclusive=record.exclusive_boxes)
        for k in widened:
            log.warning("%s: instance %d is one pixel wide or tall; its box was widened by one pixel", record.name, k)
    else:
        raise ValueError(f"{record.name}: a record without boxes needs masks to take them from")
    if record.area == "box":
        area = ops.box_area(boxes)
    elif record.area == "mask":
        if masks is None:
            raise ValueError(f"{record.name}: area 'mask' needs masks")
        area = masks.sum(dim=(1, 2)).to(torch.float32)
    else:
        area = torch.tensor([float(a) for a in record.area], dtype=torch.float32)
    target: dict[str, Any] = {
        "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(h, w)),
        "labels": torch.tensor(list(record.labels), dtype=torch.int64),
    }
    if masks is not None:
        target["masks"] = tv_tensors.Mask(masks)
    target["image_id"] = record.image_id
    target["area"] = area
    target["iscrowd"] = (torch.tensor(list(record.iscrowd), dtype=torch.int64) if record.iscrowd is not None
                         else torch.zeros((n,), dtype=torch.int64))
    if record.keypoints is not None:
        target["keypoints"] = record.keypoints
    return target, widened
