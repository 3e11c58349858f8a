"""Datasets written to behave exactly as the tutorials' ``PennFudanDataset`` classes do (seeds 000 and 001).

Written for this suite from the tutorials' description, not copied. ``alter`` injects one of the mistakes
users make, so tests can check the validator's verdict on each.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.io import read_image
from torchvision.ops import masks_to_boxes
from torchvision.transforms.v2 import functional as F

ALTERATIONS = ("label0", "xywh", "bool_masks", "rgba", "constant_id")


class TutorialPennFudanV2(torch.utils.data.Dataset):
    """Seed 001: ``read_image``, ``masks_to_boxes``, ``tv_tensors``, ``image_id`` a plain int."""

    def __init__(self, root, transforms=None, alter=None):
        self.root, self.transforms, self.alter = str(root), transforms, alter
        self.imgs = sorted(os.listdir(os.path.join(self.root, "PNGImages")))
        self.masks = sorted(os.listdir(os.path.join(self.root, "PedMasks")))

    def __len__(self):
        return len(self.imgs)

    def __getitem__(self, idx):
        img = read_image(os.path.join(self.root, "PNGImages", self.imgs[idx]))
        mask = read_image(os.path.join(self.root, "PedMasks", self.masks[idx]))
        obj_ids = torch.unique(mask)[1:]  # the first id is the background
        masks = (mask == obj_ids[:, None, None]).to(dtype=torch.uint8)
        boxes = masks_to_boxes(masks)
        n = len(obj_ids)
        labels = torch.ones((n,), dtype=torch.int64)
        area = (boxes[:, 3] - boxes[:, 1]) * (boxes[:, 2] - boxes[:, 0])
        if self.alter == "label0":
            labels = torch.zeros((n,), dtype=torch.int64)
        if self.alter == "xywh":
            boxes = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1)
        if self.alter == "bool_masks":
            masks = masks.bool()
        if self.alter == "rgba":
            img = torch.cat([img, torch.full_like(img[:1], 255)])
        img = tv_tensors.Image(img)
        target = {
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=F.get_size(img)),
            "masks": tv_tensors.Mask(masks),
            "labels": labels,
            "image_id": 0 if self.alter == "constant_id" else idx,
            "area": area,
            "iscrowd": torch.zeros((n,), dtype=torch.int64),
        }
        if self.transforms is not None:
            img, target = self.transforms(img, target)
        return img, target


class TutorialPennFudanLegacy(torch.utils.data.Dataset):
    """Seeds 000/003: PIL + numpy, boxes from ``np.where`` extremes, ``image_id`` a one-element tensor."""

    def __init__(self, root, transforms=None):
        self.root, self.transforms = str(root), transforms
        self.imgs = sorted(os.listdir(os.path.join(self.root, "PNGImages")))
        self.masks = sorted(os.listdir(os.path.join(self.root, "PedMasks")))

    def __len__(self):
        return len(self.imgs)

    def __getitem__(self, idx):
        img = Image.open(os.path.join(self.root, "PNGImages", self.imgs[idx])).convert("RGB")
        mask = np.array(Image.open(os.path.join(self.root, "PedMasks", self.masks[idx])))
        obj_ids = np.unique(mask)[1:]
        masks = mask == obj_ids[:, None, None]
        boxes = []
        for m in masks:
            ys, xs = np.where(m)
            boxes.append([np.min(xs), np.min(ys), np.max(xs), np.max(ys)])
        boxes = torch.as_tensor(boxes, dtype=torch.float32)
        n = len(obj_ids)
        target = {
            "boxes": boxes,
            "labels": torch.ones((n,), dtype=torch.int64),
            "masks": torch.as_tensor(masks, dtype=torch.uint8),
            "image_id": torch.tensor([idx]),
            "area": (boxes[:, 3] - boxes[:, 1]) * (boxes[:, 2] - boxes[:, 0]),
            "iscrowd": torch.zeros((n,), dtype=torch.int64),
        }
        if self.transforms is not None:
            img, target = self.transforms(img, target)
        return img, target
