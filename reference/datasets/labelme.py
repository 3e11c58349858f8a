"""The LabelMe layout (seed 002): one JSON per image with ``shapes[{label, points, shape_type}]`` and an
``imagePath`` relative to the JSON. Polygons are rasterised to masks; boxes come from the masks."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import Dataset
from torchvision import tv_tensors

from .common import DatasetError, box_area, boxes_from_masks, header_size, read_rgb, safe_join

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Entry:
    json_path: Path
    image_path: Path
    labels: tuple[int, ...]
    polygons: tuple[tuple[tuple[float, float], ...], ...]


def rasterise_polygon(points: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """A filled polygon as a {0, 1} uint8 [H, W] array (outline pixels included)."""
    canvas = Image.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).polygon([(float(x), float(y)) for x, y in points], fill=1, outline=1)
    return np.asarray(canvas, dtype=np.uint8)


class LabelMeDataset(Dataset):
    """LabelMe polygons as Mask R-CNN targets (v2 flavour: ``tv_tensors``, int ``image_id``).

    ``class_names`` lists the object classes; ``class_to_idx`` maps them to labels 1.. (0 is background).
    Rectangles become four-point polygons; other shape types (points, lines, circles) are not instances and
    are counted in ``skipped``. Everything else that breaks the layout raises a :class:`DatasetError` at
    construction, naming the file: fewer than 3 points, an unknown class, an ``imagePath`` outside ``root``.
    """

    def __init__(self, root: str | Path, class_names: Sequence[str], transforms: Callable | None = None,
                 exclusive_boxes: bool = False):
        self.root = Path(root)
        self.transforms = transforms
        self.exclusive_boxes = exclusive_boxes
        self.class_names = list(class_names)
        self.class_to_idx = {"background": 0, **{n: i + 1 for i, n in enumerate(self.class_names)}}
        self.skipped: list[tuple[str, int, str]] = []
        files = sorted(self.root.glob("*.json"))
        if not files:
            raise DatasetError(f"{self.root}: no LabelMe *.json files")
        self.entries = [self._parse(p) for p in files]

    def _parse(self, path: Path) -> _Entry:
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DatasetError(f"{path}: not a readable LabelMe JSON ({exc})") from exc
        if "imagePath" not in doc or not isinstance(doc.get("shapes"), list):
            raise DatasetError(f"{path}: a LabelMe file needs 'imagePath' and a 'shapes' list")
        image_path = safe_join(self.root, str(Path(path.parent.relative_to(self.root)) / doc["imagePath"]),
                               what=f"{path} imagePath")
        labels, polys = [], []
        for k, shape in enumerate(doc["shapes"]):
            kind = shape.get("shape_type", "polygon")
            pts = shape.get("points", [])
            if kind == "rectangle" and len(pts) == 2:
                (x0, y0), (x1, y1) = pts
                pts, kind = [[x0, y0], [x1, y0], [x1, y1], [x0, y1]], "polygon"
            if kind != "polygon":
                self.skipped.append((str(path), k, f"shape_type {kind!r} is not an instance outline"))
                log.warning("%s: shape %d has shape_type %r; skipped (counted in .skipped)", path, k, kind)
                continue
            if len(pts) < 3:
                raise DatasetError(f"{path}: shape {k} ({shape.get('label')!r}) has {len(pts)} points; a polygon "
                                   "needs at least 3")
            name = shape.get("label")
            if name not in self.class_to_idx or name == "background":
                raise DatasetError(f"{path}: shape {k} has label {name!r}, not one of the classes "
                                   f"{self.class_names}")
            labels.append(self.class_to_idx[name])
            polys.append(tuple((float(x), float(y)) for x, y in pts))
        return _Entry(path, image_path, tuple(labels), tuple(polys))

    def __len__(self) -> int:
        return len(self.entries)

    def get_height_and_width(self, idx: int) -> tuple[int, int]:
        return header_size(self.entries[idx].image_path)

    def __getitem__(self, idx: int):
        e = self.entries[idx]
        img = tv_tensors.Image(read_rgb(e.image_path))
        h, w = img.shape[-2:]
        if e.polygons:
            masks = torch.from_numpy(np.stack([rasterise_polygon(p, h, w) for p in e.polygons]))
        else:
            masks = torch.zeros((0, h, w), dtype=torch.uint8)
        boxes, widened = boxes_from_masks(masks, exclusive=self.exclusive_boxes)
        for k in widened:
            log.warning("%s: instance %d is one pixel wide or tall; its box was widened", e.json_path, k)
        target = {
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(h, w)),
            "labels": torch.tensor(e.labels, dtype=torch.int64),
            "masks": tv_tensors.Mask(masks),
            "image_id": idx,
            "area": box_area(boxes),
            "iscrowd": torch.zeros((len(e.labels),), dtype=torch.int64),
        }
        if self.transforms is not None:
            img, target = self.transforms(img, target)
        return img, target
