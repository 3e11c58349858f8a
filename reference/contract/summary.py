"""The quick check: a sample described by arrays, its masks by their RLE statistics, proved clean without
building tensors or decoding a mask.

A loader that can describe sample ``i`` this way offers ``sample_summary(i, decode=...)`` (the COCO loader
does: areas and boxes of its masks come from pycocotools' RLE functions). :func:`quick_check` returns what the
statistics need when every rule of :func:`~reference.contract.checks.check_sample` provably passes on that
sample, and None when any might not; the traversal then checks the sample the full way, so the report is the
one the full check gives, word for word. Each condition below mirrors one check, on the same float32 values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .checks import Parsed
from .rules import AREA_REL_TOLERANCE, BOUNDS_EPS_PX, MASK_BOX_TOLERANCE_PX


@dataclass(frozen=True)
class SampleSummary:
    """Sample ``i``'s target as its loader would build it, as arrays; ``size`` is the image's (H, W).

    ``mask_area`` and ``mask_box`` (exclusive corners, as ``check_masks`` measures them) describe the masks the
    target would hold, None when it holds no ``masks``; ``keypoints`` likewise."""

    size: tuple[int, int]
    image_id: int
    boxes: np.ndarray  # float32 [N, 4], XYXY
    labels: np.ndarray  # int64 [N]
    area: np.ndarray  # float32 [N]
    iscrowd: np.ndarray  # int64 [N]
    mask_area: np.ndarray | None = None  # int64 [N]
    mask_box: np.ndarray | None = None  # float64 [N, 4]
    keypoints: np.ndarray | None = None  # float32 [N, K, 3]


def _boxes_clean(boxes: np.ndarray, size: tuple[int, int]) -> bool:
    """BOXES_NONFINITE, BOX_DEGENERATE, BOX_OUT_OF_BOUNDS: none (``check_boxes``, on the same float32 values)."""
    b = boxes.astype(np.float64)
    h, w = size
    return bool(np.isfinite(b).all() and (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
                and (b[:, :2] >= -BOUNDS_EPS_PX).all() and (b[:, 2] <= w + BOUNDS_EPS_PX).all()
                and (b[:, 3] <= h + BOUNDS_EPS_PX).all())


def _areas_clean(s: SampleSummary) -> bool:
    """AREA_NEGATIVE and AREA_INCONSISTENT: none, proved by the box area or the mask area alone (the boundary
    allowance that ``check_area`` adds on top needs the mask's pixels: a sample needing it is checked in full)."""
    a = s.area.astype(np.float64)
    if not (np.isfinite(a).all() and (a >= 0).all()):
        return False
    b = s.boxes.astype(np.float64)
    box_area = np.maximum(b[:, 2] - b[:, 0], 0.0) * np.maximum(b[:, 3] - b[:, 1], 0.0)
    ok = np.abs(a - box_area) <= AREA_REL_TOLERANCE * box_area + 1.0
    if s.mask_area is not None:
        m = s.mask_area.astype(np.float64)
        ok |= np.abs(a - m) <= AREA_REL_TOLERANCE * m + 1.0
    return bool(ok.all())


def _masks_clean(s: SampleSummary) -> bool:
    """MASK_EMPTY and MASK_BOX_MISMATCH: none (the masks' shape, dtype and values are the loader's own)."""
    assert s.mask_area is not None and s.mask_box is not None
    if (s.mask_area <= 0).any():
        return False
    diff = np.abs(s.mask_box - s.boxes.astype(np.float64))
    return bool((diff <= MASK_BOX_TOLERANCE_PX).all())


def _keypoints_clean(kp: np.ndarray, n: int, num_keypoints: int | None) -> bool:
    if kp.ndim != 3 or kp.shape[0] != n or kp.shape[-1] != 3:
        return False
    if num_keypoints is not None and kp.shape[1] != num_keypoints:
        return False
    return bool(np.isin(kp[..., 2], (0.0, 1.0, 2.0)).all())


def quick_check(s: SampleSummary, *, num_classes: int | None, num_keypoints: int | None,
                require_masks: bool | None) -> Parsed | None:
    """What the statistics need of a sample on which no rule of the full check reports anything, else None."""
    n = len(s.boxes)
    if require_masks and s.mask_area is None:
        return None
    if not (len(s.labels) == len(s.area) == len(s.iscrowd) == n):
        return None
    if n:
        if not _boxes_clean(s.boxes, s.size):
            return None
        if (s.labels <= 0).any() or (num_classes is not None and (s.labels >= num_classes).any()):
            return None
        if not np.isin(s.iscrowd, (0, 1)).all():
            return None
        if s.mask_area is not None and (len(s.mask_area) != n or not _masks_clean(s)):
            return None
        if not _areas_clean(s):
            return None
    if s.keypoints is not None and not _keypoints_clean(s.keypoints, n, num_keypoints):
        return None
    return Parsed(size=s.size, boxes=s.boxes.tolist(), labels=s.labels.tolist())
