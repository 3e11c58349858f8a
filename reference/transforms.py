"""Transforms: the references' legacy ``(image, target)`` transforms and the tutorials' v2 pipelines.

The legacy classes behave as torchvision's ``references/detection/transforms.py`` does (one random draw per
call, boxes ``x1' = W - x2``, masks flipped on the last axis, COCO-person keypoints swapped left/right), so
a seeded pipeline reproduces the references' augmentation sequence. The v2 presets are built from
``torchvision.transforms.v2``; :class:`ResizeMax` and :class:`PadSquare` are the two pieces of seed 002's
pipeline that v2 lacks.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from PIL import Image
from torch import nn
from torchvision.transforms import functional as F_legacy
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

try:  # public from torchvision 0.17 on
    from torchvision.transforms.v2 import query_size
except ImportError:  # pragma: no cover - torchvision 0.16
    from torchvision.transforms.v2._utils import query_size

# COCO-person keypoints: the index each keypoint takes after a horizontal flip (left/right swapped).
COCO_PERSON_FLIP_INDEX = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
PER_INSTANCE = ("boxes", "labels", "area", "iscrowd", "masks", "keypoints")


class Compose:
    """Apply ``(image, target)`` transforms in order."""

    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)

    def __call__(self, image, target):
        for t in self.transforms:
            image, target = t(image, target)
        return image, target


class PILToTensor(nn.Module):
    """PIL image to a uint8 [C, H, W] tensor; the target passes through."""

    def forward(self, image, target=None):
        return F_legacy.pil_to_tensor(image), target


class ToDtype(nn.Module):
    """Convert the image dtype, optionally scaling integer ranges to [0, 1] (``scale=True``)."""

    def __init__(self, dtype: torch.dtype, scale: bool = False):
        super().__init__()
        self.dtype, self.scale = dtype, scale

    def forward(self, image, target=None):
        if not self.scale:
            return image.to(dtype=self.dtype), target
        return F_legacy.convert_image_dtype(image, self.dtype), target


class ConvertImageDtype(ToDtype):
    """The older name: always scales."""

    def __init__(self, dtype: torch.dtype):
        super().__init__(dtype, scale=True)


def flip_keypoints(kps: torch.Tensor, width: int, flip_index: Sequence[int]) -> torch.Tensor:
    """Mirror [N, K, 3] keypoints; left/right swapped by ``flip_index``; invisible points zeroed."""
    if kps.shape[1] != len(flip_index):
        raise ValueError(f"keypoints have K={kps.shape[1]} points but the flip index lists {len(flip_index)}; "
                         "pass keypoint_flip_index for your skeleton (the default is COCO person's 17)")
    out = kps[:, list(flip_index)].clone()
    out[..., 0] = width - out[..., 0]
    out[out[..., 2] == 0] = 0
    return out


class RandomHorizontalFlip(nn.Module):
    """The references' flip: one ``torch.rand(1)`` draw per call whatever ``p``."""

    def __init__(self, p: float = 0.5, keypoint_flip_index: Sequence[int] = COCO_PERSON_FLIP_INDEX):
        super().__init__()
        self.p = p
        self.keypoint_flip_index = list(keypoint_flip_index)

    def forward(self, image, target=None):
        if torch.rand(1) >= self.p:
            return image, target
        image = F_legacy.hflip(image)
        if target is None:
            return image, target
        width = image.width if isinstance(image, Image.Image) else image.shape[-1]
        target = dict(target)
        if "boxes" in target:
            b = target["boxes"].clone()
            b[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
            target["boxes"] = b
        if "masks" in target:
            target["masks"] = target["masks"].flip(-1)
        if "keypoints" in target:
            target["keypoints"] = flip_keypoints(target["keypoints"], width, self.keypoint_flip_index)
        return image, target


class ResizeMax(v2.Transform):
    """Resize so that the longer side equals ``max_size``, keeping the aspect ratio (seed 002)."""

    def __init__(self, max_size: int):
        super().__init__()
        self.max_size = max_size

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = query_size(flat_inputs)
        s = self.max_size / max(h, w)
        return {"size": [max(1, round(h * s)), max(1, round(w * s))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, (int, float, str)) or inpt is None:
            return inpt
        return self._call_kernel(F.resize, inpt, params["size"], antialias=True)

    _get_params, _transform = make_params, transform  # the names torchvision < 0.21 calls


class PadSquare(v2.Transform):
    """Pad to a square; ``shift=True`` places the image at a random offset instead of the centre.

    The fill is a scalar so that masks can be padded with the same call (seed 002's condition).
    """

    def __init__(self, shift: bool = False, fill: float = 0):
        super().__init__()
        self.shift, self.fill = shift, fill

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = query_size(flat_inputs)
        side = max(h, w)
        dh, dw = side - h, side - w
        if self.shift:
            top, left = int(torch.randint(0, dh + 1, ())), int(torch.randint(0, dw + 1, ()))
        else:
            top, left = dh // 2, dw // 2
        return {"padding": [left, top, dw - left, dh - top]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, (int, float, str)) or inpt is None:
            return inpt
        return self._call_kernel(F.pad, inpt, padding=params["padding"], fill=self.fill)

    _get_params, _transform = make_params, transform  # the names torchvision < 0.21 calls


def _sanitize() -> v2.SanitizeBoundingBoxes:
    """Filter degenerate boxes and every per-instance field with them (area and iscrowd included)."""

    def getter(sample: Any):
        target = sample[1]
        return tuple(target[k] for k in ("labels", "area", "iscrowd") if k in target)

    return v2.SanitizeBoundingBoxes(min_size=1.0, labels_getter=getter)


class RecomputeArea(v2.Transform):
    """Box area after geometric transforms, which leave ``area`` as it was."""

    def forward(self, *inputs: Any) -> Any:
        image, target = inputs if len(inputs) == 2 else inputs[0]
        target = dict(target)
        b = target["boxes"]
        target["area"] = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).as_subclass(torch.Tensor)
        return image, target


def tutorial(train: bool) -> v2.Compose:
    """Seed 001's ``get_transform``: flip when training, then float in [0, 1], then plain tensors."""
    steps: list = [v2.RandomHorizontalFlip(0.5)] if train else []
    return v2.Compose(steps + [v2.ToDtype(torch.float, scale=True), v2.ToPureTensor()])


def tutorial_legacy(train: bool) -> Compose:
    """Seed 000's ``get_transform`` with the references' legacy classes (expects a PIL image)."""
    steps: list = [PILToTensor(), ToDtype(torch.float, scale=True)]
    if train:
        steps.append(RandomHorizontalFlip(0.5))
    return Compose(steps)


def mills(train: bool, size: int = 160) -> v2.Compose:
    """Seed 002's pipeline: IoU crop with jitter, longest side to ``size``, pad square, photometric noise."""
    if not train:
        return v2.Compose([ResizeMax(size), PadSquare(), v2.Resize([size, size], antialias=True),
                           v2.ToDtype(torch.float, scale=True), v2.ToPureTensor()])
    return v2.Compose([
        v2.RandomIoUCrop(min_scale=0.5, sampler_options=[0.0, 0.1, 0.3, 0.5], trials=20),
        _sanitize(),
        ResizeMax(size),
        PadSquare(shift=True),
        v2.Resize([size, size], antialias=True),
        v2.RandomHorizontalFlip(0.5),
        v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.05),
        v2.RandomGrayscale(0.1),
        v2.RandomEqualize(0.1),
        v2.RandomPosterize(bits=4, p=0.1),
        _sanitize(),
        RecomputeArea(),
        v2.ToDtype(torch.float, scale=True),
        v2.ToPureTensor(),
    ])


def evaluation(train: bool = False) -> v2.Compose:
    """What evaluation needs: float in [0, 1], plain tensors, nothing random."""
    return tutorial(train=False)


PRESETS: dict[str, Callable[[bool], Callable]] = {
    "tutorial": tutorial,
    "tutorial-legacy": tutorial_legacy,
    "mills": mills,
    "eval": evaluation,
}


def get_preset(name: str, train: bool) -> Callable:
    if name not in PRESETS:
        raise ValueError(f"unknown transform preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name](train)
