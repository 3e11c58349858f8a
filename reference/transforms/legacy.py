"""The references' legacy ``(image, target)`` transforms (``references/detection/transforms.py``).

Each class takes the same random draws, in the same order, as its counterpart in torchvision's references,
so a seeded pipeline reproduces the references' augmentation sequence. Where the references leave the
target out of step with the image (``RandomIoUCrop`` and ``RandomZoomOut`` ignore masks and keypoints,
``RandomIoUCrop`` and ``FixedSizeCrop`` filter boxes but not ``area`` / ``iscrowd``, no class updates
``area``), these classes keep every per-instance field in step; ``keep_in_step=False`` gives the
references' behaviour exactly, for comparison.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from PIL import Image
from torch import nn
from torchvision.ops import box_area, box_iou, masks_to_boxes
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as F
from torchvision.transforms import transforms as T

# COCO-person keypoints: the index each keypoint takes after a horizontal flip (left/right swapped).
COCO_PERSON_FLIP_INDEX = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
Target = dict[str, Any]


class Compose:
    """Apply ``(image, target)`` transforms in order."""

    def __init__(self, transforms: Sequence[Any]):
        self.transforms = list(transforms)

    def __call__(self, image, target):
        for t in self.transforms:
            image, target = t(image, target)
        return image, target


class PILToTensor(nn.Module):
    """PIL image to a uint8 [C, H, W] tensor; the target passes through."""

    def forward(self, image, target=None):
        return F.pil_to_tensor(image), target


class ToDtype(nn.Module):
    """Convert the image dtype, optionally scaling integer ranges to [0, 1] (``scale=True``)."""

    def __init__(self, dtype: torch.dtype, scale: bool = False):
        super().__init__()
        self.dtype, self.scale = dtype, scale

    def forward(self, image, target=None):
        if not self.scale:
            return image.to(dtype=self.dtype), target
        return F.convert_image_dtype(image, self.dtype), target


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


def _size(image) -> tuple[int, int]:
    _, h, w = F.get_dimensions(image)
    return h, w


def _crop_keypoints(kps: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """Keypoints in the crop's coordinates; points that fall outside it become (0, 0, 0), COCO's absent."""
    out = kps.clone()
    out[..., 0] -= left
    out[..., 1] -= top
    outside = (out[..., 0] < 0) | (out[..., 1] < 0) | (out[..., 0] > width) | (out[..., 1] > height)
    out[outside] = 0
    return out


def _select(target: Target, keep: torch.Tensor, keys: Sequence[str]) -> None:
    for k in keys:
        if k in target:
            target[k] = target[k][keep]


class RandomHorizontalFlip(nn.Module):
    """One ``torch.rand(1)`` draw per call whatever ``p``; boxes ``x1' = W - x2``, masks and keypoints too."""

    def __init__(self, p: float = 0.5, keypoint_flip_index: Sequence[int] = COCO_PERSON_FLIP_INDEX):
        super().__init__()
        self.p = p
        self.keypoint_flip_index = list(keypoint_flip_index)

    def forward(self, image, target=None):
        if torch.rand(1) >= self.p:
            return image, target
        image = F.hflip(image)
        if target is None:
            return image, target
        width = _size(image)[1]
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


class RandomIoUCrop(nn.Module):
    """SSD's crop: pick a minimum IoU option, then try crops until one keeps a box centre and meets it.

    Draws per attempt as the references: ``randint`` for the option, then per trial ``rand(2)`` for the size
    and, when the aspect ratio fits, ``rand(2)`` for the position.
    """

    def __init__(self, min_scale: float = 0.3, max_scale: float = 1.0, min_aspect_ratio: float = 0.5,
                 max_aspect_ratio: float = 2.0, sampler_options: Sequence[float] | None = None, trials: int = 40,
                 keep_in_step: bool = True):
        super().__init__()
        self.min_scale, self.max_scale = min_scale, max_scale
        self.min_aspect_ratio, self.max_aspect_ratio = min_aspect_ratio, max_aspect_ratio
        self.options = list(sampler_options) if sampler_options is not None else [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]
        self.trials = trials
        self.keep_in_step = keep_in_step

    def _propose(self, h: int, w: int, boxes: torch.Tensor, min_iou: float):
        """One trial: the crop (left, top, width, height) and the kept boxes, or None."""
        r = self.min_scale + (self.max_scale - self.min_scale) * torch.rand(2)
        new_w, new_h = int(w * r[0]), int(h * r[1])
        if new_h == 0 or not self.min_aspect_ratio <= new_w / new_h <= self.max_aspect_ratio:
            return None
        r = torch.rand(2)
        left, top = int((w - new_w) * r[0]), int((h - new_h) * r[1])
        right, bottom = left + new_w, top + new_h
        if left == right or top == bottom:
            return None
        cx, cy = 0.5 * (boxes[:, 0] + boxes[:, 2]), 0.5 * (boxes[:, 1] + boxes[:, 3])
        inside = (left < cx) & (cx < right) & (top < cy) & (cy < bottom)
        if not inside.any():
            return None
        crop = torch.tensor([[left, top, right, bottom]], dtype=boxes.dtype, device=boxes.device)
        if box_iou(boxes[inside], crop).max() < min_iou:
            return None
        return left, top, new_w, new_h, inside

    def forward(self, image, target=None):
        if target is None:
            raise ValueError("RandomIoUCrop needs the target")
        h, w = _size(image)
        while True:
            min_iou = self.options[int(torch.randint(low=0, high=len(self.options), size=(1,)))]
            if min_iou >= 1.0:  # the "leave as is" option
                return image, target
            for _ in range(self.trials):
                found = self._propose(h, w, target["boxes"], min_iou)
                if found is not None:
                    return self._crop(image, target, *found)

    def _crop(self, image, target: Target, left: int, top: int, width: int, height: int, inside: torch.Tensor):
        target = dict(target)
        boxes = target["boxes"][inside].clone()
        boxes[:, 0::2] = (boxes[:, 0::2] - left).clamp(min=0, max=width)
        boxes[:, 1::2] = (boxes[:, 1::2] - top).clamp(min=0, max=height)
        target["boxes"] = boxes
        target["labels"] = target["labels"][inside]
        if self.keep_in_step:
            _select(target, inside, ("area", "iscrowd", "masks", "keypoints"))
            if "masks" in target:
                target["masks"] = F.crop(target["masks"], top, left, height, width)
            if "keypoints" in target:
                target["keypoints"] = _crop_keypoints(target["keypoints"], top, left, height, width)
            if "area" in target:
                target["area"] = box_area(boxes)
        return F.crop(image, top, left, height, width), target


class RandomZoomOut(nn.Module):
    """Place the image on a larger canvas (side x1-x4) filled with ``fill``; draws ``rand(1)`` for p, then
    ``rand(1)`` for the scale and ``rand(2)`` for the offset, as the references."""

    def __init__(self, fill: Sequence[float] | None = None, side_range: tuple[float, float] = (1.0, 4.0),
                 p: float = 0.5, keep_in_step: bool = True):
        super().__init__()
        if side_range[0] < 1.0 or side_range[0] > side_range[1]:
            raise ValueError(f"invalid canvas side range {side_range}")
        self.fill = list(fill) if fill is not None else [0.0, 0.0, 0.0]
        self.side_range, self.p, self.keep_in_step = side_range, p, keep_in_step

    def forward(self, image, target=None):
        if torch.rand(1) >= self.p:
            return image, target
        h, w = _size(image)
        r = self.side_range[0] + torch.rand(1) * (self.side_range[1] - self.side_range[0])
        canvas_w, canvas_h = int(w * r), int(h * r)
        r = torch.rand(2)
        left, top = int((canvas_w - w) * r[0]), int((canvas_h - h) * r[1])
        padding = [left, top, canvas_w - left - w, canvas_h - top - h]
        if isinstance(image, Image.Image):
            image = F.pad(image, padding, fill=tuple(int(x) for x in self.fill))
        else:
            image = F.pad(image, padding, fill=0)
            inside = torch.zeros(image.shape[-2:], dtype=torch.bool)
            inside[top:top + h, left:left + w] = True
            image = torch.where(inside, image, torch.tensor(self.fill, dtype=image.dtype).view(-1, 1, 1))
        if target is None:
            return image, target
        target = dict(target)
        boxes = target["boxes"].clone()
        boxes[:, 0::2] += left
        boxes[:, 1::2] += top
        target["boxes"] = boxes
        if self.keep_in_step:
            if "masks" in target:
                target["masks"] = F.pad(target["masks"], padding, fill=0)
            if "keypoints" in target:
                kp = target["keypoints"].clone()
                visible = kp[..., 2] > 0
                kp[..., 0] += left * visible
                kp[..., 1] += top * visible
                target["keypoints"] = kp
        return image, target


class RandomPhotometricDistort(nn.Module):
    """Brightness, contrast (before or after), saturation, hue, channel shuffle; ``rand(7)`` then each
    ``ColorJitter``'s own draws and a ``randperm`` for the shuffle, in the references' order."""

    def __init__(self, contrast=(0.5, 1.5), saturation=(0.5, 1.5), hue=(-0.05, 0.05), brightness=(0.875, 1.125),
                 p: float = 0.5):
        super().__init__()
        self._brightness = T.ColorJitter(brightness=brightness)
        self._contrast = T.ColorJitter(contrast=contrast)
        self._hue = T.ColorJitter(hue=hue)
        self._saturation = T.ColorJitter(saturation=saturation)
        self.p = p

    def forward(self, image, target=None):
        r = torch.rand(7)
        if r[0] < self.p:
            image = self._brightness(image)
        contrast_first = r[1] < 0.5
        if contrast_first and r[2] < self.p:
            image = self._contrast(image)
        if r[3] < self.p:
            image = self._saturation(image)
        if r[4] < self.p:
            image = self._hue(image)
        if not contrast_first and r[5] < self.p:
            image = self._contrast(image)
        if r[6] < self.p:
            channels = F.get_dimensions(image)[0]
            order = torch.randperm(channels)
            if isinstance(image, Image.Image):
                image = F.to_pil_image(F.convert_image_dtype(F.pil_to_tensor(image))[order])
            else:
                image = image[..., order, :, :]
        return image, target


def _rescale(image, target: Target | None, r: float | torch.Tensor, interpolation: InterpolationMode,
             keep_in_step: bool):
    """Resize the image by ``r`` (sides truncated to ints, as the references) and its target with it."""
    oh, ow = _size(image)
    nh, nw = int(oh * r), int(ow * r)
    image = F.resize(image, [nh, nw], interpolation=interpolation)
    if target is None:
        return image, target
    target = dict(target)
    boxes = target["boxes"].clone()
    boxes[:, 0::2] *= nw / ow
    boxes[:, 1::2] *= nh / oh
    target["boxes"] = boxes
    if "masks" in target:
        target["masks"] = F.resize(target["masks"], [nh, nw], interpolation=InterpolationMode.NEAREST)
    if keep_in_step:
        if "keypoints" in target:
            kp = target["keypoints"].clone()
            kp[..., 0] *= nw / ow
            kp[..., 1] *= nh / oh
            target["keypoints"] = kp
        if "area" in target:
            target["area"] = target["area"] * (nw / ow) * (nh / oh)
    return image, target


class ScaleJitter(nn.Module):
    """Resize towards ``target_size`` (h, w) times a scale from ``scale_range``; one ``rand(1)`` draw."""

    def __init__(self, target_size: tuple[int, int], scale_range: tuple[float, float] = (0.1, 2.0),
                 interpolation: InterpolationMode = InterpolationMode.BILINEAR, keep_in_step: bool = True):
        super().__init__()
        self.target_size, self.scale_range = target_size, scale_range
        self.interpolation, self.keep_in_step = interpolation, keep_in_step

    def forward(self, image, target=None):
        h, w = _size(image)
        scale = self.scale_range[0] + torch.rand(1) * (self.scale_range[1] - self.scale_range[0])
        r = min(self.target_size[1] / h, self.target_size[0] / w) * scale  # a float32 tensor, as the references
        return _rescale(image, target, r, self.interpolation, self.keep_in_step)


class RandomShortestSize(nn.Module):
    """Shorter side to a size picked from ``min_size`` (one ``randint``), longer side capped at ``max_size``."""

    def __init__(self, min_size: int | Sequence[int], max_size: int,
                 interpolation: InterpolationMode = InterpolationMode.BILINEAR, keep_in_step: bool = True):
        super().__init__()
        self.min_size = [min_size] if isinstance(min_size, int) else list(min_size)
        self.max_size, self.interpolation, self.keep_in_step = max_size, interpolation, keep_in_step

    def forward(self, image, target=None):
        h, w = _size(image)
        size = self.min_size[int(torch.randint(len(self.min_size), (1,)).item())]
        r = min(size / min(h, w), self.max_size / max(h, w))
        return _rescale(image, target, r, self.interpolation, self.keep_in_step)


class FixedSizeCrop(nn.Module):
    """Crop (one ``rand(1)`` draw, shared by both axes, only when cropping) then pad to ``size`` (h, w)."""

    def __init__(self, size: int | tuple[int, int], fill: float = 0, padding_mode: str = "constant",
                 keep_in_step: bool = True):
        super().__init__()
        self.crop_height, self.crop_width = (size, size) if isinstance(size, int) else tuple(size)
        self.fill, self.padding_mode, self.keep_in_step = fill, padding_mode, keep_in_step

    def forward(self, image, target=None):
        h, w = _size(image)
        new_h, new_w = min(h, self.crop_height), min(w, self.crop_width)
        if (new_h, new_w) != (h, w):
            r = torch.rand(1)
            top, left = int(max(h - self.crop_height, 0) * r), int(max(w - self.crop_width, 0) * r)
            image = F.crop(image, top, left, new_h, new_w)
            if target is not None:
                target = self._crop_target(dict(target), top, left, new_h, new_w)
        pad_bottom, pad_right = max(self.crop_height - new_h, 0), max(self.crop_width - new_w, 0)
        if pad_bottom or pad_right:
            padding = [0, 0, pad_right, pad_bottom]
            image = F.pad(image, padding, self.fill, self.padding_mode)
            if target is not None and "masks" in target:
                target = dict(target)
                target["masks"] = F.pad(target["masks"], padding, 0, "constant")
        return image, target

    def _crop_target(self, target: Target, top: int, left: int, height: int, width: int) -> Target:
        boxes = target["boxes"].clone()
        boxes[:, 0::2] = (boxes[:, 0::2] - left).clamp(min=0, max=width)
        boxes[:, 1::2] = (boxes[:, 1::2] - top).clamp(min=0, max=height)
        valid = (boxes[:, 0] < boxes[:, 2]) & (boxes[:, 1] < boxes[:, 3])
        target["boxes"] = boxes[valid]
        _select(target, valid, ("labels", "masks") + (("area", "iscrowd", "keypoints") if self.keep_in_step else ()))
        if "masks" in target:
            target["masks"] = F.crop(target["masks"], top, left, height, width)
        if self.keep_in_step:
            if "area" in target:
                target["area"] = box_area(target["boxes"])
            if "keypoints" in target:
                target["keypoints"] = _crop_keypoints(target["keypoints"], top, left, height, width)
        return target


def _paste(image: torch.Tensor, target: Target, paste_image: torch.Tensor, paste_target: Target, blending: bool,
           interpolation: InterpolationMode, keep_in_step: bool) -> tuple[torch.Tensor, Target]:
    """Paste a random subset of ``paste_target``'s instances onto ``image`` (one ``randint`` draw)."""
    n = len(paste_target["masks"])
    if n < 1:
        return image, target
    pick = torch.unique(torch.randint(0, n, (n,), device=paste_image.device)).long()
    p_masks, p_boxes = paste_target["masks"][pick], paste_target["boxes"][pick]
    size, p_size = image.shape[-2:], paste_image.shape[-2:]
    sx, sy = size[1] / p_size[1], size[0] / p_size[0]
    if size != p_size:  # the paper pastes between equal-sized crops; the references resize instead
        paste_image = F.resize(paste_image, list(size), interpolation=interpolation)
        p_masks = F.resize(p_masks, list(size), interpolation=InterpolationMode.NEAREST)
        p_boxes = p_boxes * torch.tensor([sx, sy, sx, sy], dtype=p_boxes.dtype, device=p_boxes.device)
    alpha = p_masks.sum(dim=0) > 0
    if blending:  # a blurred bool mask stays bool: the edge moves by at most a pixel or two
        alpha = F.gaussian_blur(alpha.unsqueeze(0), kernel_size=[5, 5], sigma=[2.0])
    image = image * ~alpha + paste_image * alpha
    masks = target["masks"] * ~alpha
    keep = masks.sum((-1, -2)) > 0
    masks = masks[keep]
    out = dict(target)
    out["masks"] = torch.cat([masks, p_masks])
    out["boxes"] = torch.cat([masks_to_boxes(masks).to(p_boxes.dtype), p_boxes])
    out["labels"] = torch.cat([target["labels"][keep], paste_target["labels"][pick]])
    if "area" in target:
        out["area"] = out["masks"].sum((-1, -2)).to(torch.float32)
    if "iscrowd" in target and "iscrowd" in paste_target:
        if keep_in_step or len(target["iscrowd"]) == len(keep):
            out["iscrowd"] = torch.cat([target["iscrowd"][keep], paste_target["iscrowd"][pick]])
    if keep_in_step and "keypoints" in target and "keypoints" in paste_target:
        p_kps = paste_target["keypoints"][pick].clone()
        p_kps[..., 0] *= sx
        p_kps[..., 1] *= sy
        out["keypoints"] = torch.cat([target["keypoints"][keep], p_kps])
    valid = (out["boxes"][:, 2:] > out["boxes"][:, :2]).all(dim=1)
    if not valid.all():
        fields = ("masks", "labels", "area") + (("iscrowd", "keypoints") if keep_in_step else ())
        out["boxes"] = out["boxes"][valid]
        _select(out, valid, fields)
        if not keep_in_step and "iscrowd" in out and len(out["iscrowd"]) == len(valid):
            out["iscrowd"] = out["iscrowd"][valid]
    return image, out


class SimpleCopyPaste(nn.Module):
    """Copy-paste augmentation over a batch: image i receives a random subset of the instances of image i - 1.

    As the references: boxes of the instances that stay are recomputed from their masks (``masks_to_boxes``,
    last pixel's index), instances fully covered are dropped, ``area`` becomes the mask area, degenerate boxes
    are removed. Kept in step here (``keep_in_step``): ``iscrowd`` always, and keypoints, which the
    references leave with the old instance count.
    """

    def __init__(self, blending: bool = True, resize_interpolation: InterpolationMode = InterpolationMode.BILINEAR,
                 keep_in_step: bool = True):
        super().__init__()
        self.blending, self.resize_interpolation, self.keep_in_step = blending, resize_interpolation, keep_in_step

    def forward(self, images: Sequence[torch.Tensor], targets: Sequence[Target]):
        if len(images) != len(targets):
            raise ValueError(f"{len(images)} images but {len(targets)} targets")
        for i, t in enumerate(targets):
            missing = [k for k in ("masks", "boxes", "labels") if k not in t]
            if missing:
                raise ValueError(f"SimpleCopyPaste needs masks, boxes and labels; target {i} lacks {missing}")
        rolled = list(zip(images[-1:] + images[:-1], targets[-1:] + targets[:-1]))
        out_images, out_targets = [], []
        for image, target, (p_image, p_target) in zip(images, targets, rolled):
            image, target = _paste(image, target, p_image, p_target, self.blending, self.resize_interpolation,
                                   self.keep_in_step)
            out_images.append(image)
            out_targets.append(target)
        return out_images, out_targets
