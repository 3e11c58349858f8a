"""The quick check: samples described by arrays, their masks by their RLE statistics, proved clean without
building tensors or decoding a mask.

A loader that can describe samples this way offers ``sample_summaries(indices, decode=...)`` (the COCO loader
does: areas and boxes of its masks come from pycocotools' RLE functions), giving a :class:`SummaryBatch`.
:func:`quick_check_batch` says of each sample whether every rule of
:func:`~reference.contract.checks.check_sample` provably passes on it; the traversal checks the others the
full way, so the report is the one the full check gives, word for word. Each condition mirrors one check, on
the same float32 values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .rules import AREA_REL_TOLERANCE, BOUNDS_EPS_PX, MASK_BOX_TOLERANCE_PX


@dataclass(frozen=True)
class SummaryBatch:
    """The summaries of several samples as one set of arrays (a loader's ``sample_summaries``): sample
    ``indices[k]`` has size ``sizes[k]``, id ``image_ids[k]`` and the ``counts[k]`` instance rows starting at
    ``starts[k]`` of each per-instance array; the notes its loader made reading it in ``findings[k]``."""

    indices: list[int]
    sizes: np.ndarray  # int64 [C, 2], (H, W)
    image_ids: list[int]
    counts: np.ndarray  # int64 [C]
    boxes: np.ndarray  # float32 [N, 4], XYXY
    labels: np.ndarray  # int64 [N]
    area: np.ndarray  # float32 [N]
    iscrowd: np.ndarray  # int64 [N]
    findings: list[list]
    mask_area: np.ndarray | None = None  # int64 [N], None when the targets hold no masks
    mask_box: np.ndarray | None = None  # float64 [N, 4], exclusive corners, as check_masks measures them
    keypoints: np.ndarray | None = None  # float32 [N, K, 3], None when the targets hold no keypoints

    @property
    def starts(self) -> np.ndarray:
        return np.concatenate(([0], np.cumsum(self.counts)[:-1])).astype(np.int64)

    def owner(self) -> np.ndarray:
        """The batch position of each instance row's sample."""
        return np.repeat(np.arange(len(self.indices)), self.counts)


def quick_check_batch(b: SummaryBatch, *, num_classes: int | None, num_keypoints: int | None,
                      require_masks: bool | None) -> np.ndarray:
    """For each sample of the batch, whether no rule of the full check reports anything on it."""
    fails = np.zeros(len(b.indices), dtype=bool)
    if require_masks and b.mask_area is None:
        return fails
    if b.keypoints is not None and (b.keypoints.ndim != 3 or b.keypoints.shape[-1] != 3 or (
            num_keypoints is not None and b.keypoints.shape[1] != num_keypoints)):
        return fails
    owner = b.owner()
    h, w = (b.sizes[owner, d].astype(np.float64) for d in (0, 1))
    x = b.boxes.astype(np.float64)
    ok = (np.isfinite(x).all(1) & (x[:, 2] > x[:, 0]) & (x[:, 3] > x[:, 1])
          & (x[:, :2] >= -BOUNDS_EPS_PX).all(1) & (x[:, 2] <= w + BOUNDS_EPS_PX) & (x[:, 3] <= h + BOUNDS_EPS_PX))
    ok &= b.labels > 0
    if num_classes is not None:
        ok &= b.labels < num_classes
    ok &= (b.iscrowd == 0) | (b.iscrowd == 1)
    a = b.area.astype(np.float64)
    area_ok = np.isfinite(a) & (a >= 0)
    box_area = np.maximum(x[:, 2] - x[:, 0], 0.0) * np.maximum(x[:, 3] - x[:, 1], 0.0)
    consistent = np.abs(a - box_area) <= AREA_REL_TOLERANCE * box_area + 1.0
    if b.mask_area is not None:
        assert b.mask_box is not None
        m = b.mask_area.astype(np.float64)
        consistent |= np.abs(a - m) <= AREA_REL_TOLERANCE * m + 1.0
        ok &= (b.mask_area > 0) & (np.abs(b.mask_box - x) <= MASK_BOX_TOLERANCE_PX).all(1)
    ok &= area_ok & consistent
    if b.keypoints is not None:
        v = b.keypoints[..., 2]
        ok &= ((v == 0) | (v == 1) | (v == 2)).all(1)
    return np.bincount(owner, weights=~ok, minlength=len(b.indices)) == 0
