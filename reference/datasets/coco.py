"""COCO instances JSON: polygons and RLE, ``iscrowd``, images without annotations as valid negatives."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch.utils.data import Dataset
from torchvision import tv_tensors

from .common import DatasetError, read_rgb, safe_join

log = logging.getLogger(__name__)


def decode_segmentation(segm: Any, height: int, width: int) -> np.ndarray:
    """A COCO segmentation (polygon list, uncompressed or compressed RLE) as a uint8 [H, W] mask."""
    if isinstance(segm, list):
        rles = mask_utils.frPyObjects(segm, height, width)
        rle = mask_utils.merge(rles)
    elif isinstance(segm.get("counts"), list):
        rle = mask_utils.frPyObjects(segm, height, width)
    else:
        rle = segm
    return mask_utils.decode(rle).astype(np.uint8)


class CocoInstancesDataset(Dataset):
    """A COCO instances file over an image folder (v2 flavour: ``tv_tensors``, int ``image_id``).

    Category ids map to contiguous labels 1..K in increasing id order (``cat_id_to_label``,
    ``label_to_cat_id``, ``classes``); ``image_id`` is the file's own id. Boxes are the annotations' ``bbox``
    in XYXY; ``area`` and ``iscrowd`` are passed through as given. Annotations with a zero-size bbox cannot be
    trained on: they are left out and counted in ``skipped`` with a warning.
    """

    def __init__(self, images_dir: str | Path, annotation_json: str | Path, transforms: Callable | None = None):
        self.images_dir = Path(images_dir)
        self.annotation_json = Path(annotation_json)
        self.transforms = transforms
        try:
            doc = json.loads(self.annotation_json.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DatasetError(f"{self.annotation_json}: not a readable COCO JSON ({exc})") from exc
        for key in ("images", "annotations", "categories"):
            if key not in doc:
                raise DatasetError(f"{self.annotation_json}: COCO instances need an {key!r} list")
        cat_ids = sorted(c["id"] for c in doc["categories"])
        names = {c["id"]: c.get("name", str(c["id"])) for c in doc["categories"]}
        self.cat_id_to_label = {cid: i + 1 for i, cid in enumerate(cat_ids)}
        self.label_to_cat_id = {v: k for k, v in self.cat_id_to_label.items()}
        self.classes = ["background"] + [names[c] for c in cat_ids]
        self.images = sorted(doc["images"], key=lambda im: im["id"])
        for im in self.images:
            safe_join(self.images_dir, im["file_name"], what=f"{self.annotation_json} image {im['id']} file_name")
        self.skipped: list[tuple[int, str]] = []
        by_image: dict[int, list[dict]] = {im["id"]: [] for im in self.images}
        for ann in doc["annotations"]:
            if ann["image_id"] not in by_image:
                raise DatasetError(f"{self.annotation_json}: annotation {ann.get('id')} names image_id "
                                   f"{ann['image_id']}, which is not in 'images'")
            if ann["category_id"] not in self.cat_id_to_label:
                raise DatasetError(f"{self.annotation_json}: annotation {ann.get('id')} has category_id "
                                   f"{ann['category_id']}, which is not in 'categories'")
            x, y, w, h = ann["bbox"]
            if w <= 0 or h <= 0:
                self.skipped.append((ann.get("id"), f"bbox {ann['bbox']} has zero width or height"))
                log.warning("%s: annotation %s has a zero-size bbox %s; left out (counted in .skipped)",
                            self.annotation_json, ann.get("id"), ann["bbox"])
                continue
            by_image[ann["image_id"]].append(ann)
        self.annotations = [by_image[im["id"]] for im in self.images]

    def __len__(self) -> int:
        return len(self.images)

    def get_height_and_width(self, idx: int) -> tuple[int, int]:
        return int(self.images[idx]["height"]), int(self.images[idx]["width"])

    def __getitem__(self, idx: int):
        info = self.images[idx]
        path = safe_join(self.images_dir, info["file_name"], what=f"image {info['id']}")
        img = tv_tensors.Image(read_rgb(path))
        h, w = img.shape[-2:]
        if (h, w) != self.get_height_and_width(idx):
            raise DatasetError(f"{path}: decoded size {(h, w)} differs from height/width in "
                               f"{self.annotation_json.name} {self.get_height_and_width(idx)}")
        anns = self.annotations[idx]
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        masks = [decode_segmentation(a["segmentation"], h, w) for a in anns]
        target = {
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(h, w)),
            "labels": torch.tensor([self.cat_id_to_label[a["category_id"]] for a in anns], dtype=torch.int64),
            "masks": tv_tensors.Mask(torch.from_numpy(np.stack(masks)) if masks
                                     else torch.zeros((0, h, w), dtype=torch.uint8)),
            "image_id": int(info["id"]),
            "area": torch.tensor([float(a["area"]) for a in anns], dtype=torch.float32),
            "iscrowd": torch.tensor([int(a.get("iscrowd", 0)) for a in anns], dtype=torch.int64),
        }
        if self.transforms is not None:
            img, target = self.transforms(img, target)
        return img, target
