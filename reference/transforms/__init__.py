"""Transforms: the tutorials' pipelines as named presets (:data:`PRESETS`), the v2 pieces they need, and the
references' legacy classes.

The v2 presets (``tutorial``, ``mills``, ``eval``) are built from ``torchvision.transforms.v2``, named here
as ``v2.X``, with the pieces v2 lacks: :class:`PadSquare` (seed 002), :class:`ResizeMax` (for
``v2.Resize(size=None, max_size=N)`` on torchvision < 0.20, see :func:`resize_max`), :class:`RecomputeArea`
(``area`` after geometric steps) and :class:`DropCrowd` (crowd regions out of training). The references' legacy
``(image, target)`` transforms live in :mod:`reference.transforms.legacy` and are re-exported here under their
own names: ``reference.transforms.RandomHorizontalFlip`` (like ``Compose``, ``ToDtype``, ...) is the legacy
class, the one ``tutorial_legacy`` uses; torchvision's v2 class is ``v2.RandomHorizontalFlip``.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torchvision
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.ops import box_area
from torchvision.transforms.v2 import functional as F

from .legacy import (COCO_PERSON_FLIP_INDEX, Compose, ConvertImageDtype, FixedSizeCrop, PILToTensor,
                     RandomHorizontalFlip, RandomIoUCrop, RandomPhotometricDistort, RandomShortestSize,
                     RandomZoomOut, ScaleJitter, SimpleCopyPaste, ToDtype, flip_keypoints)

try:  # public from torchvision 0.17 on
    from torchvision.transforms.v2 import query_size
except ImportError:  # pragma: no cover - torchvision 0.16
    from torchvision.transforms.v2._utils import query_size

__all__ = [  # the legacy classes are re-exported so that one import serves both families
    "COCO_PERSON_FLIP_INDEX", "Compose", "ConvertImageDtype", "DropCrowd", "FixedSizeCrop", "PER_INSTANCE",
    "PILToTensor", "PRESETS",
    "PadSquare", "RandomHorizontalFlip", "RandomIoUCrop", "RandomPhotometricDistort", "RandomShortestSize",
    "RandomZoomOut", "RecomputeArea", "ResizeMax", "ScaleJitter", "SimpleCopyPaste", "ToDtype", "evaluation",
    "drop_crowd", "flip_keypoints", "keep_instances", "resize_max",
    "get_preset", "mills", "tutorial", "tutorial_legacy",
]


def _resize_takes_no_size() -> bool:
    """Whether ``v2.Resize(size=None, max_size=N)`` exists (torchvision >= 0.20)."""
    try:
        v2.Resize(size=None, max_size=8)
    except (TypeError, ValueError):
        return False
    return True


RESIZE_TAKES_NO_SIZE = _resize_takes_no_size()


def resize_max(max_size: int) -> v2.Transform:
    """Resize so that the longer side equals ``max_size``, keeping the aspect ratio (seed 002's ResizeMax):
    torchvision's ``v2.Resize(size=None, max_size=...)`` where it has it, :class:`ResizeMax` before 0.20."""
    if RESIZE_TAKES_NO_SIZE:
        return v2.Resize(size=None, max_size=max_size, antialias=True)
    return ResizeMax(max_size)


class ResizeMax(v2.Transform):
    """The fallback of :func:`resize_max` for torchvision < 0.20, with its sizes: the longer side becomes
    ``max_size`` and the shorter ``int(max_size * short / long)`` (rounded down, as torchvision and seed 002's
    ResizeMax do; at least 1)."""

    def __init__(self, max_size: int):
        super().__init__()
        self.max_size = max_size

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = query_size(flat_inputs)
        short = max(1, int(self.max_size * min(h, w) / max(h, w)))
        return {"size": [self.max_size, short] if h >= w else [short, self.max_size]}

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


def _labels_getter(sample: Any):
    target = sample[1]
    return tuple(target[k] for k in ("labels", "area", "iscrowd") if k in target)


class _SanitizeInstances(v2.Transform):
    """For torchvision < 0.17, whose ``SanitizeBoundingBoxes`` filters at most one extra field: drops boxes
    under ``min_size`` or outside the canvas, with every per-instance field of the target."""

    def __init__(self, min_size: float = 1.0):
        super().__init__()
        self.min_size = min_size

    def forward(self, *inputs: Any) -> Any:
        image, target = inputs if len(inputs) == 2 else inputs[0]
        boxes = target["boxes"]
        h, w = boxes.canvas_size
        b = boxes.as_subclass(torch.Tensor)
        valid = ((b[:, 2] - b[:, 0]) >= self.min_size) & ((b[:, 3] - b[:, 1]) >= self.min_size)
        valid &= (b[:, 0] >= 0) & (b[:, 1] >= 0) & (b[:, 2] <= w) & (b[:, 3] <= h)
        return image, keep_instances(target, valid)


# the target fields that hold one entry per instance (torchvision's detection targets)
PER_INSTANCE = ("boxes", "labels", "masks", "area", "iscrowd", "keypoints")


def keep_instances(target: dict[str, Any], keep: torch.Tensor) -> dict[str, Any]:
    """A copy of ``target`` with only the instances ``keep`` (a bool per instance) selects, in every
    per-instance field alike (:data:`PER_INSTANCE`); tv_tensors stay tv_tensors (a box keeps its canvas)."""
    out = dict(target)
    for k in PER_INSTANCE:
        if k in out:
            v = out[k]
            kept = v[keep.to(v.device)]
            out[k] = tv_tensors.wrap(kept, like=v) if isinstance(v, tv_tensors.TVTensor) else kept
    return out


def drop_crowd(target: dict[str, Any]) -> dict[str, Any]:
    """``target`` without its crowd regions (``iscrowd`` not 0), every per-instance field alike: what the model
    trains on. torchvision's references do the same (their ``ConvertCocoPolysToMask`` keeps ``iscrowd == 0``
    only), while their evaluation keeps crowd regions, which COCOeval treats as regions to ignore."""
    crowd = target.get("iscrowd")
    if not isinstance(crowd, torch.Tensor) or not bool(crowd.any()):
        return target
    return keep_instances(target, crowd == 0)


class DropCrowd(v2.Transform):
    """:func:`drop_crowd` as an ``(image, target)`` transform: the first step of every training pipeline
    (:func:`reference.training.fit.transforms_for`), so that no augmentation sees crowd regions, as in the
    references."""

    def forward(self, *inputs: Any) -> Any:
        image, target = inputs if len(inputs) == 2 else inputs[0]
        return image, drop_crowd(target)


def _sanitize() -> v2.Transform:
    """Filter degenerate boxes and every per-instance field with them (area and iscrowd included)."""
    major, minor = (int(x) for x in torchvision.__version__.split(".")[:2])
    if (major, minor) < (0, 17):  # labels_getter may return only one tensor there
        return _SanitizeInstances(min_size=1.0)
    return v2.SanitizeBoundingBoxes(min_size=1.0, labels_getter=_labels_getter)


class RecomputeArea(v2.Transform):
    """Box area after geometric transforms, which leave ``area`` as it was."""

    def forward(self, *inputs: Any) -> Any:
        image, target = inputs if len(inputs) == 2 else inputs[0]
        target = dict(target)
        b = target["boxes"]
        target["area"] = box_area(b.as_subclass(torch.Tensor))
        return image, target


def tutorial(train: bool) -> v2.Compose:
    """Seed 001's ``get_transform``: flip when training, then float in [0, 1], then plain tensors."""
    steps: list = [v2.RandomHorizontalFlip(0.5)] if train else []
    return v2.Compose(steps + [v2.ToDtype(torch.float, scale=True), v2.ToPureTensor()])


def tutorial_legacy(train: bool) -> Compose:
    """Seed 000's ``get_transform`` with the references' legacy classes (expects a PIL image): the legacy
    ``RandomHorizontalFlip`` of :mod:`reference.transforms.legacy`, not v2's."""
    steps: list = [PILToTensor(), ToDtype(torch.float, scale=True)]
    if train:
        steps.append(RandomHorizontalFlip(0.5))
    return Compose(steps)


def mills(train: bool, size: int = 160) -> v2.Compose:
    """Seed 002's pipeline: IoU crop with jitter, longest side to ``size``, pad square, photometric noise."""
    if not train:
        return v2.Compose([resize_max(size), PadSquare(), v2.Resize([size, size], antialias=True),
                           v2.ToDtype(torch.float, scale=True), v2.ToPureTensor()])
    return v2.Compose([
        # 1.0 ("leave as is") among the options: without it an image whose only box sits within a pixel of
        # the right or bottom border has no valid crop, and the crop loop would never end
        v2.RandomIoUCrop(min_scale=0.5, sampler_options=[0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0], trials=20),
        _sanitize(),
        resize_max(size),
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


def evaluation() -> v2.Compose:
    """What evaluation needs: float in [0, 1], plain tensors, nothing random."""
    return tutorial(train=False)


def _evaluation_preset(train: bool) -> v2.Compose:
    """The ``eval`` preset: the evaluation transforms for training too (a run without augmentation)."""
    return evaluation()


PRESETS: dict[str, Callable[[bool], Callable]] = {
    "tutorial": tutorial,
    "tutorial-legacy": tutorial_legacy,
    "mills": mills,
    "eval": _evaluation_preset,
}


def get_preset(name: str, train: bool) -> Callable:
    if name not in PRESETS:
        raise ValueError(f"unknown transform preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name](train)
