"""Hypothesis strategies: valid detection samples of both flavours, and samples breaking one chosen rule.

    from reference.testing.strategies import valid_samples, broken_samples

    @given(valid_samples(masks=True))
    def test_my_transform_keeps_the_contract(s):
        image, target = my_transform(s.image, s.target)
        assert not [v for v in validate_sample(image, target) if v.severity == "error"]

Tensors are built from one drawn seed (not drawn pixel by pixel), so examples are cheap and shrink well.
Boxes have integer corners and masks fill their box exactly, so ``masks_to_boxes`` (+1) equals the box.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st
from PIL import Image
from torchvision import tv_tensors
from torchvision.ops import box_area

from ..contract import RULES

DATASET_CODES = ("GETITEM_FAILED", "NOT_PICKLABLE", "SIZE_MISMATCH", "IMAGE_ID_DUPLICATE", "IMAGE_ID_MIXED",
                 "DATASET_EMPTY", "EXIF_FRAME_MISMATCH", "EXIF_STORED_FRAME")
# Rules about annotation files, class statistics and pairs of splits: no in-memory sample breaks them; the
# loaders' and the dataset rules' own tests (test_annotation_defects, test_tool_exports, test_dataset_rules) do.
FILE_AND_SPLIT_CODES = ("ANNOTATION_INVALID", "ANNOTATION_DROPPED", "ANNOTATION_REPAIRED", "ANNOTATION_ID_DUPLICATE",
                        "DECLARED_SIZE_MISMATCH", "IMAGE_ENTRY_INVALID", "LABEL_UNKNOWN", "CLASS_UNUSED",
                        "CLASS_IMBALANCE", "BOX_SIZE_OUTLIER",
                        "SPLIT_DUPLICATE_IMAGE", "SPLIT_CLASS_MISSING", "SPLIT_CLASS_ID_MISMATCH",
                        "CLASS_NAME_SIMILAR", "CLASS_NAMES_MERGED", "CATEGORY_NAME_DUPLICATE", "IMAGE_FILE_SHARED",
                        "IMAGE_PATH_RESOLVED", "FILE_SKIPPED")
SAMPLE_CODES = tuple(c for c in RULES if c not in DATASET_CODES and c not in FILE_AND_SPLIT_CODES)


@dataclass(frozen=True)
class Sample:
    """An ``(image, target)`` pair and the validator options it is meant for."""

    image: Any
    target: Any
    flavour: str
    num_classes: int
    num_keypoints: int | None = None
    model_ready: bool = False
    expected: str | None = None  # the rule a broken sample breaks

    def kwargs(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes, "num_keypoints": self.num_keypoints,
                "model_ready": self.model_ready}


def _boxes(g: torch.Generator, n: int, h: int, w: int, min_side: int) -> torch.Tensor:
    x1 = torch.randint(0, w - min_side + 1, (n,), generator=g)
    y1 = torch.randint(0, h - min_side + 1, (n,), generator=g)
    bw = (torch.rand(n, generator=g) * (w - x1 - min_side + 1)).floor().long() + min_side
    bh = (torch.rand(n, generator=g) * (h - y1 - min_side + 1)).floor().long() + min_side
    return torch.stack([x1, y1, x1 + bw, y1 + bh], dim=1).float()


def _masks(boxes: torch.Tensor, h: int, w: int) -> torch.Tensor:
    m = torch.zeros((len(boxes), h, w), dtype=torch.uint8)
    for i, (x1, y1, x2, y2) in enumerate(boxes.long().tolist()):
        m[i, y1:y2, x1:x2] = 1
    return m


def build_sample(seed: int, *, flavour: str, n: int, h: int, w: int, num_classes: int, with_masks: bool,
                 num_keypoints: int | None, model_ready: bool, float_image: bool, image_id: int,
                 min_side: int = 1) -> Sample:
    """A valid sample, deterministic in its arguments."""
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
    boxes = _boxes(g, n, h, w, min_side)
    target: dict[str, Any] = {
        "boxes": boxes,
        "labels": torch.randint(1, num_classes, (n,), generator=g, dtype=torch.int64),
        "image_id": image_id,
        "area": box_area(boxes),
        "iscrowd": torch.randint(0, 2, (n,), generator=g, dtype=torch.int64),
    }
    if with_masks:
        target["masks"] = _masks(boxes, h, w)
    if num_keypoints is not None:
        k = num_keypoints
        fx, fy = torch.rand((n, k), generator=g), torch.rand((n, k), generator=g)
        xs = boxes[:, 0:1] + fx * (boxes[:, 2:3] - boxes[:, 0:1])
        ys = boxes[:, 1:2] + fy * (boxes[:, 3:4] - boxes[:, 1:2])
        vis = torch.randint(0, 3, (n, k), generator=g).float()
        target["keypoints"] = torch.stack([xs, ys, vis], dim=-1)
    if flavour == "legacy":
        image: Any = Image.fromarray(pixels.permute(1, 2, 0).numpy(), mode="RGB")
        if model_ready:
            image = pixels.float() / 255
        target["image_id"] = torch.tensor([image_id])
    else:
        img = pixels.float() / 255 if (float_image or model_ready) else pixels
        image = tv_tensors.Image(img)
        target["boxes"] = tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(h, w))
        if with_masks:
            target["masks"] = tv_tensors.Mask(target["masks"])
    return Sample(image, target, flavour, num_classes, num_keypoints, model_ready)


# Strategies built once and reused: building one per example (and hypothesis validating each new one on its
# first draw) costs more than drawing from it. A reused strategy makes the same choices as a new equal one,
# so the examples drawn are the same.
_FLAVOURS = st.sampled_from(["v2", "legacy"])
_SEEDS = st.integers(0, 2**31 - 1)
_BOOLS = st.booleans()
_CLASS_COUNTS = st.integers(2, 6)
_KEYPOINT_COUNTS = st.integers(1, 5)
_IMAGE_IDS = st.integers(0, 10**6)
_VARIANTS = st.integers(0, 1000)


@lru_cache(maxsize=None, typed=True)
def _ints(lo: int, hi: int) -> st.SearchStrategy[int]:
    """``st.integers(lo, hi)``, one object per range."""
    return st.integers(lo, hi)


@st.composite
def valid_samples(draw, flavour: str | None = None, masks: bool | None = None, keypoints: bool | None = None,
                  model_ready: bool = False, min_instances: int = 0, max_instances: int = 5,
                  min_side: int = 1, min_size: int = 4, max_size: int = 40) -> Sample:
    """Valid samples: flavour 'v2' or 'legacy' (both when None), with or without masks and keypoints."""
    fl = flavour or draw(_FLAVOURS)
    min_size = max(min_size, min_side)
    sizes = _ints(min_size, max_size)
    return build_sample(
        draw(_SEEDS), flavour=fl,
        n=draw(_ints(min_instances, max_instances)),
        h=draw(sizes), w=draw(sizes),
        num_classes=draw(_CLASS_COUNTS),
        with_masks=draw(_BOOLS) if masks is None else masks,
        num_keypoints=(draw(_KEYPOINT_COUNTS) if (draw(_BOOLS) if keypoints is None else keypoints)
                       else None),
        model_ready=model_ready, float_image=draw(_BOOLS), image_id=draw(_IMAGE_IDS),
        min_side=min_side)


@lru_cache(maxsize=None)
def _cached_valid_samples(**kwargs: Any) -> st.SearchStrategy[Sample]:
    """``valid_samples(**kwargs)``, one strategy per set of arguments (all of them scalars)."""
    return valid_samples(**kwargs)


def _plain(t: torch.Tensor) -> torch.Tensor:
    return t.as_subclass(torch.Tensor).clone()


def _with(s: Sample, **changes: Any) -> dict[str, Any]:
    target = dict(s.target)
    target.update(changes)
    return target


def _pixels(image: Any) -> torch.Tensor:
    """A sample's image as a plain [C, H, W] tensor the caller may change (a copy)."""
    if isinstance(image, Image.Image):
        return torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous()
    return _plain(image)


def _as_uint8(img: torch.Tensor) -> torch.Tensor:
    """``img`` as uint8 pixels: a float image in [0, 1] scaled back to 0-255."""
    return (img * 255).round().to(torch.uint8) if img.is_floating_point() else img


_IMAGE_CODES = ("IMAGE_TYPE", "IMAGE_SHAPE", "IMAGE_CHANNELS", "IMAGE_DTYPE", "IMAGE_NONFINITE", "IMAGE_RANGE")


def _break_image(code: str, s: Sample, k: int) -> Sample:
    """Break the image rule ``code`` in ``s``; only these rules need the pixels as a tensor, so only they
    convert the image."""
    img = _pixels(s.image)
    if code == "IMAGE_TYPE":
        return replace(s, image=img.permute(1, 2, 0).numpy())
    if code == "IMAGE_SHAPE":
        return replace(s, image=img[None] if k % 2 else img[0])
    if code == "IMAGE_CHANNELS":
        if k % 3 == 0:
            return replace(s, image=torch.cat([img, img[:1]]))
        if k % 3 == 1:
            return replace(s, image=img[:1])
        return replace(s, image=Image.fromarray(_as_uint8(img).permute(1, 2, 0).numpy()).convert("RGBA"))
    if code == "IMAGE_DTYPE":
        if k % 2:
            return replace(s, image=_as_uint8(img), model_ready=True)
        return replace(s, image=_as_uint8(img).to(torch.int32))
    base = img.float() if img.is_floating_point() else img.float() / 255
    if code == "IMAGE_NONFINITE":
        h, w = base.shape[-2:]
        base[k % 3, k % h, k % w] = (float("nan"), float("inf"), float("-inf"))[k % 3]
        return replace(s, image=base)
    if code == "IMAGE_RANGE":
        return replace(s, image=base * 255 + 2.0, model_ready=True)
    raise ValueError(f"{code!r} is not an image rule")


def _break(code: str, s: Sample, k: int) -> Sample:
    """Break rule ``code`` in the valid sample ``s`` (``k`` picks a variant and an instance)."""
    if code in _IMAGE_CODES:
        return _break_image(code, s, k)
    t = s.target
    n = int(t["boxes"].shape[0])
    i = k % max(n, 1)
    h, w = (s.image.height, s.image.width) if isinstance(s.image, Image.Image) else tuple(s.image.shape[-2:])
    boxes = _plain(t["boxes"])
    new: Any
    if code == "TARGET_TYPE":
        return replace(s, target=[(key, v) for key, v in t.items()] if k % 2 else None)
    if code == "MISSING_KEY":
        target = dict(t)
        del target[("boxes", "labels", "image_id", "area", "iscrowd")[k % 5]]
        return replace(s, target=target)
    if code == "UNKNOWN_KEY":
        return replace(s, target=_with(s, **{("label", "bbox", "scores")[k % 3]: t["labels"].clone()}))
    if code == "COUNT_MISMATCH":
        key = ("labels", "area", "iscrowd")[k % 3]
        v = _plain(t[key])
        return replace(s, target=_with(s, **{key: torch.cat([v, v[:1] if n else torch.ones(1, dtype=v.dtype)])}))
    if code == "BOXES_TYPE":
        return replace(s, target=_with(s, boxes=boxes.tolist() if k % 2 else boxes.numpy()))
    if code == "BOXES_SHAPE":
        variants = [torch.zeros(0), torch.cat([boxes, torch.zeros((n, 1))], dim=1), boxes.flatten()]
        new = variants[k % 3] if n else variants[0]
        return replace(s, target=_with(s, boxes=new))
    if code == "BOXES_DTYPE":
        return replace(s, target=_with(s, boxes=boxes.long()))
    if code == "BOXES_NONFINITE":
        boxes[i, k % 4] = (float("nan"), float("inf"), float("-inf"))[k % 3]
        return replace(s, target=_with(s, boxes=boxes))
    if code == "BOX_DEGENERATE":
        if k % 2:
            boxes[i, 2] = boxes[i, 0]
        else:
            boxes[i, 1], boxes[i, 3] = boxes[i, 3].item(), boxes[i, 1].item()
        return replace(s, target=_with(s, boxes=boxes))
    if code == "BOX_OUT_OF_BOUNDS":
        if k % 2:
            boxes[i, 2] = w + 1 + k % 7
        else:
            boxes[i, 1] = -1 - k % 5
        return replace(s, target=_with(s, boxes=boxes))
    if code == "CANVAS_MISMATCH":
        new = tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(h + 1 + k % 3, w))
        return replace(s, target=_with(s, boxes=new))
    if code == "LABELS_TYPE":
        labels = _plain(t["labels"])
        return replace(s, target=_with(s, labels=labels.tolist() if k % 2 else labels.numpy()))
    if code == "LABELS_SHAPE":
        return replace(s, target=_with(s, labels=_plain(t["labels"])[:, None]))
    if code == "LABELS_DTYPE":
        return replace(s, target=_with(s, labels=_plain(t["labels"]).to((torch.int32, torch.float32)[k % 2])))
    if code in ("LABEL_BACKGROUND", "LABEL_NEGATIVE", "LABEL_OUT_OF_RANGE"):
        labels = _plain(t["labels"])
        labels[i] = {"LABEL_BACKGROUND": 0, "LABEL_NEGATIVE": -1 - k % 3,
                     "LABEL_OUT_OF_RANGE": s.num_classes + k % 3}[code]
        return replace(s, target=_with(s, labels=labels))
    if code == "NEGATIVE_SAMPLE_ENCODING":
        target = {"boxes": torch.zeros((1, 4)), "labels": torch.zeros(1, dtype=torch.int64),
                  "image_id": t["image_id"], "area": torch.zeros(1), "iscrowd": torch.zeros(1, dtype=torch.int64)}
        return replace(s, target=target)
    if code == "IMAGE_ID_TYPE":
        bad_ids = ("img_7", 7.0, True, torch.tensor([1, 2]), torch.tensor([1.0]), torch.tensor([True]))
        return replace(s, target=_with(s, image_id=bad_ids[k % len(bad_ids)]))
    if code == "AREA_TYPE":
        area = _plain(t["area"])
        return replace(s, target=_with(s, area=area.tolist() if k % 2 else area.numpy()))
    if code == "AREA_NEGATIVE":
        area = _plain(t["area"])
        area[i] = -1.0 - k % 5
        return replace(s, target=_with(s, area=area))
    if code == "AREA_INCONSISTENT":
        return replace(s, target=_with(s, area=_plain(t["area"]) * 3 + 10))
    if code == "ISCROWD_TYPE":
        iscrowd = _plain(t["iscrowd"])
        return replace(s, target=_with(s, iscrowd=iscrowd.tolist() if k % 2 else iscrowd.numpy()))
    if code == "ISCROWD_VALUES":
        iscrowd = _plain(t["iscrowd"])
        iscrowd[i] = (2, -1, 5)[k % 3]
        return replace(s, target=_with(s, iscrowd=iscrowd))
    masks = _plain(t["masks"]) if "masks" in t else None
    if code == "MASKS_TYPE":
        return replace(s, target=_with(s, masks=masks.numpy() if k % 2 else masks.tolist()))
    if code == "MASKS_SHAPE":
        return replace(s, target=_with(s, masks=torch.zeros((n, h + 1, w), dtype=torch.uint8) if k % 2
                                       else masks.flatten(1)))
    if code == "MASKS_DTYPE":
        return replace(s, target=_with(s, masks=masks.bool() if k % 2 else masks.float()))
    if code == "MASKS_VALUES":
        return replace(s, target=_with(s, masks=masks * (255 if k % 2 else 2)))
    if code == "MASK_EMPTY":
        masks[i] = 0
        return replace(s, target=_with(s, masks=masks))
    if code == "MASK_BOX_MISMATCH":
        x1, y1 = int(boxes[i, 0]), int(boxes[i, 1])
        masks[i] = 0
        masks[i, y1, x1] = 1  # the box is at least 4 px on a side, so its mask's box is >= 3 px off
        return replace(s, target=_with(s, masks=masks))
    kps = _plain(t["keypoints"]) if "keypoints" in t else None
    if code == "KEYPOINTS_TYPE":
        return replace(s, target=_with(s, keypoints=kps.numpy() if k % 2 else kps.tolist()))
    if code == "KEYPOINTS_SHAPE":
        return replace(s, target=_with(s, keypoints=kps[..., :2] if k % 2 else torch.cat([kps, kps[:, :1]], 1)))
    if code == "KEYPOINTS_DTYPE":
        return replace(s, target=_with(s, keypoints=kps.long()))
    if code == "KEYPOINTS_VISIBILITY":
        kps[i, 0, 2] = (3.0, -1.0, 0.5)[k % 3]
        return replace(s, target=_with(s, keypoints=kps))
    raise ValueError(f"no strategy breaks {code!r}; dataset-wide codes are in broken_datasets")


# What a rule needs of the valid sample it breaks.
_NEEDS: dict[str, dict[str, Any]] = {
    **{c: {"min_instances": 1} for c in (
        "COUNT_MISMATCH", "LABEL_BACKGROUND", "LABEL_NEGATIVE", "LABEL_OUT_OF_RANGE", "AREA_NEGATIVE",
        "AREA_INCONSISTENT", "ISCROWD_VALUES")},
    # broken box coordinates would also break the masks' agreement with them
    **{c: {"min_instances": 1, "masks": False} for c in ("BOXES_NONFINITE", "BOX_DEGENERATE", "BOX_OUT_OF_BOUNDS")},
    "MASKS_TYPE": {"masks": True}, "MASKS_SHAPE": {"masks": True}, "MASKS_DTYPE": {"masks": True},
    "MASKS_VALUES": {"masks": True, "min_instances": 1}, "MASK_EMPTY": {"masks": True, "min_instances": 1},
    "MASK_BOX_MISMATCH": {"masks": True, "min_instances": 1, "min_side": 4},
    "KEYPOINTS_SHAPE": {"keypoints": True, "min_instances": 1},
    "KEYPOINTS_TYPE": {"keypoints": True},
    "KEYPOINTS_DTYPE": {"keypoints": True}, "KEYPOINTS_VISIBILITY": {"keypoints": True, "min_instances": 1},
    "CANVAS_MISMATCH": {"flavour": "v2"},
}


@st.composite
def broken_samples(draw, code: str) -> Sample:
    """A sample that breaks rule ``code`` (a sample-level code) and no other error rule."""
    if code not in SAMPLE_CODES:
        raise ValueError(f"{code!r} is not a sample-level code; see broken_datasets")
    s = draw(_cached_valid_samples(**{"masks": False, "keypoints": False, **_NEEDS.get(code, {})}))
    return replace(_break(code, s, draw(_VARIANTS)), expected=code)


def tagged_photo(height: int, width: int, *, orientation: int, seed: int = 0) -> Image.Image:
    """A JPEG as a camera writes it, opened with Pillow: ``height`` x ``width`` stored pixels and an EXIF
    Orientation tag (1-8) saying how to turn them upright."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", exif=exif.tobytes())
    buf.seek(0)
    return Image.open(buf)


class SampleListDataset(torch.utils.data.Dataset):
    """A dataset over prepared samples; ``fail_at`` indices raise, ``size_hint`` overrides the header size."""

    def __init__(self, samples: list[tuple[Any, Any]], fail_at: tuple[int, ...] = (),
                 size_hint: tuple[int, int] | None = None):
        self.samples, self.fail_at, self.size_hint = samples, fail_at, size_hint

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        if i in self.fail_at:
            raise OSError(f"image file for sample {i} is truncated")
        return self.samples[i]

    def get_height_and_width(self, i: int) -> tuple[int, int]:
        if self.size_hint is not None:
            return self.size_hint
        image = self.samples[i][0]
        return (image.height, image.width) if isinstance(image, Image.Image) else tuple(image.shape[-2:])


class _UnpicklableDataset(SampleListDataset):
    def __init__(self, samples):
        super().__init__(samples)
        self.transforms = lambda image, target: (image, target)  # a lambda cannot be pickled


@st.composite
def valid_datasets(draw, min_len: int = 1, max_len: int = 6, **sample_kwargs) -> tuple[SampleListDataset, int]:
    """A dataset of valid samples with unique image ids, and the class count they were drawn for."""
    flavour = sample_kwargs.pop("flavour", None) or draw(_FLAVOURS)
    length = draw(_ints(min_len, max_len))
    for key in ("masks", "keypoints"):  # one dataset, one set of fields
        if sample_kwargs.get(key) is None:
            sample_kwargs[key] = draw(_BOOLS)
    sample_strategy = _cached_valid_samples(flavour=flavour, **sample_kwargs)
    samples = [draw(sample_strategy) for _ in range(length)]
    num_classes = max(s.num_classes for s in samples)
    out = []
    for idx, s in enumerate(samples):
        target = dict(s.target)
        target["image_id"] = torch.tensor([idx]) if flavour == "legacy" else idx
        out.append((s.image, target))
    return SampleListDataset(out), num_classes


_DATASETS_TO_BREAK = valid_datasets(min_len=2, masks=False, keypoints=False)


@st.composite
def broken_datasets(draw, code: str) -> tuple[SampleListDataset, int]:
    """A dataset breaking the dataset-wide rule ``code``, and its class count."""
    if code not in DATASET_CODES:
        raise ValueError(f"{code!r} is not a dataset-wide code; see broken_samples")
    ds, num_classes = draw(_DATASETS_TO_BREAK)
    samples = ds.samples
    if code == "DATASET_EMPTY":
        return SampleListDataset([]), num_classes
    if code == "GETITEM_FAILED":
        return SampleListDataset(samples, fail_at=(draw(_ints(0, len(samples) - 1)),)), num_classes
    if code == "NOT_PICKLABLE":
        return _UnpicklableDataset(samples), num_classes
    if code == "SIZE_MISMATCH":
        image = samples[0][0]
        h, w = (image.height, image.width) if isinstance(image, Image.Image) else tuple(image.shape[-2:])
        return SampleListDataset(samples, size_hint=(h + 1, w)), num_classes
    j = draw(_ints(1, len(samples) - 1))
    target = dict(samples[j][1])
    if code in ("EXIF_FRAME_MISMATCH", "EXIF_STORED_FRAME"):
        # a phone photo stored 20 wide and 10 tall, tagged "turn 90 degrees" (upright 10 wide, 20 tall), given as
        # stored; its box fits only the upright frame (a mismatch) or only the stored one (annotated as stored)
        box = [1.0, 12.0, 8.0, 18.0] if code == "EXIF_FRAME_MISMATCH" else [1.0, 1.0, 18.0, 8.0]
        target = {"boxes": torch.tensor([box]), "labels": torch.tensor([1]), "image_id": target["image_id"],
                  "area": torch.tensor([(box[2] - box[0]) * (box[3] - box[1])]),
                  "iscrowd": torch.zeros((1,), dtype=torch.int64)}
        samples = samples[:j] + [(tagged_photo(10, 20, orientation=6), target)] + samples[j + 1:]
        return SampleListDataset(samples), max(num_classes, 2)
    if code == "IMAGE_ID_MIXED":  # the same id, in the other flavour
        iid = target["image_id"]
        target["image_id"] = int(iid.item()) if isinstance(iid, torch.Tensor) else torch.tensor([iid])
    else:  # IMAGE_ID_DUPLICATE
        target["image_id"] = samples[0][1]["image_id"]
    samples = samples[:j] + [(samples[j][0], target)] + samples[j + 1:]
    return SampleListDataset(samples), num_classes
