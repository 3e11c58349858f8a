"""COCO-style evaluation: ground truth and detections in pycocotools' format, and the 12 summary stats.

Differences from torchvision's ``references/detection`` (deliberate, tested):

- Ground truth is collected from the targets of the evaluation pass itself (:class:`GroundTruth`), so no
  image is decoded twice and a ``Subset`` is evaluated as the subset, never unwrapped.
- An empty detection list gives AP 0 with a warning instead of a crash in ``loadRes``.
- pycocotools' console output is captured and returned (:attr:`CocoResult.log_lines`, the summary text);
  :class:`reference.engine.evaluator.COCOEvaluator` decides what to show.
- The backend is pluggable: ``pycocotools`` (default) or ``faster_coco_eval`` (same API, C++ core).
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torchvision.ops import box_convert

from ..data.coco import encode_rle

log = logging.getLogger(__name__)

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
BACKENDS = ("pycocotools", "faster_coco_eval")


def _xyxy_to_xywh(boxes: torch.Tensor) -> list[list[float]]:
    """XYWH in the boxes' own dtype, as the references compute it (float32 widths, not float64: IoUs sitting
    exactly on a threshold must fall the same way)."""
    return box_convert(boxes.as_subclass(torch.Tensor).detach().to("cpu"), "xyxy", "xywh").tolist()


@dataclass
class GroundTruth:
    """COCO ground truth accumulated image by image, as ``convert_to_coco_api`` builds it.

    Image ids as given; annotation ids from 1 in order; boxes to XYWH; ``area`` and ``iscrowd`` as given;
    masks RLE-encoded; ``num_keypoints`` = keypoints with non-zero visibility; categories = sorted labels seen.
    """

    images: list[dict] = field(default_factory=list)
    annotations: list[dict] = field(default_factory=list)
    categories: set[int] = field(default_factory=set)

    def add(self, image_id: int, height: int, width: int, target: Mapping[str, Any]) -> None:
        self.images.append({"id": image_id, "height": height, "width": width})
        boxes = target["boxes"]
        n = int(boxes.shape[0])
        xywh = _xyxy_to_xywh(boxes) if n else []
        labels = target["labels"].tolist()
        areas = target["area"].tolist()
        iscrowd = target["iscrowd"].tolist()
        masks = target.get("masks")
        masks_np = masks.as_subclass(torch.Tensor).cpu().numpy() if masks is not None else None
        kps = target.get("keypoints")
        for i in range(n):
            ann = {"image_id": image_id, "bbox": xywh[i], "category_id": int(labels[i]), "area": float(areas[i]),
                   "iscrowd": int(iscrowd[i]), "id": len(self.annotations) + 1}
            if masks_np is not None:
                ann["segmentation"] = encode_rle(masks_np[i])
            if kps is not None:
                k = kps[i].reshape(-1).tolist()
                ann["keypoints"] = k
                ann["num_keypoints"] = sum(v != 0 for v in k[2::3])
            self.annotations.append(ann)
            self.categories.add(int(labels[i]))

    def merge(self, parts: list["GroundTruth"]) -> "GroundTruth":
        """One ground truth from per-process parts; an image seen twice keeps its first copy."""
        out = GroundTruth()
        seen: set[int] = set()
        for part in [self, *parts]:
            keep = {im["id"] for im in part.images} - seen
            out.images += [im for im in part.images if im["id"] in keep]
            for ann in part.annotations:
                if ann["image_id"] in keep:
                    out.annotations.append({**ann, "id": len(out.annotations) + 1})
                    out.categories.add(ann["category_id"])
            seen |= keep
        return out

    def dataset(self) -> dict:
        return {"images": self.images, "annotations": self.annotations,
                "categories": [{"id": c} for c in sorted(self.categories)]}


def detections_to_coco(image_id: int, output: Mapping[str, torch.Tensor], iou_type: str,
                       mask_threshold: float = 0.5) -> list[dict]:
    """One image's model output as pycocotools result entries for ``iou_type``."""
    scores = output["scores"].tolist()
    labels = output["labels"].tolist()
    if not scores:
        return []
    if iou_type == "bbox":
        return [{"image_id": image_id, "category_id": int(c), "bbox": b, "score": float(s)}
                for b, c, s in zip(_xyxy_to_xywh(output["boxes"]), labels, scores)]
    if iou_type == "segm":
        masks = (output["masks"] > mask_threshold).cpu().numpy()
        return [{"image_id": image_id, "category_id": int(c), "segmentation": encode_rle(m[0]), "score": float(s)}
                for m, c, s in zip(masks, labels, scores)]
    if iou_type == "keypoints":
        kps = output["keypoints"].reshape(len(scores), -1).tolist()
        return [{"image_id": image_id, "category_id": int(c), "keypoints": k, "score": float(s)}
                for k, c, s in zip(kps, labels, scores)]
    raise ValueError(f"unknown IoU type {iou_type!r}")


def _api(backend: str):
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
        return COCO, COCOeval
    if backend == "faster_coco_eval":
        try:
            from faster_coco_eval import COCO
            from faster_coco_eval import COCOeval_faster as COCOeval
        except ImportError as exc:
            raise RuntimeError("backend 'faster_coco_eval' needs the extra: pip install faster-coco-eval") from exc
        return COCO, COCOeval
    raise ValueError(f"unknown COCO backend {backend!r}; choose from {BACKENDS}")


@dataclass
class CocoResult:
    """Per IoU type: the 12 standard stats (``stats[0]`` is AP@[.50:.95]) and pycocotools' summary text.

    Also answers as the references' ``CocoEvaluator`` does: ``coco_eval[iou_type]`` is the evaluated
    ``COCOeval`` (``.stats``, ``.eval``, ``.params``), ``coco_gt`` the ground truth's ``COCO``, ``iou_types``,
    and :meth:`summarize` prints the tables. ``log_lines`` holds what pycocotools printed while indexing the
    ground truth and accumulating (``creating index...``, ``Accumulating evaluation results...``, ``DONE``).
    """

    stats: dict[str, list[float]]
    summary: dict[str, str]
    coco_eval: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    coco_gt: Any = field(default=None, repr=False, compare=False)
    log_lines: list[str] = field(default_factory=list, repr=False, compare=False)

    @property
    def iou_types(self) -> list[str]:
        return list(self.stats)

    def summarize(self) -> None:
        """Print the COCO tables, as the references' ``CocoEvaluator.summarize`` does."""
        print(self.text())

    def named(self) -> dict[str, dict[str, float]]:
        return {t: dict(zip(STAT_NAMES, s)) for t, s in self.stats.items()}

    def text(self) -> str:
        return "\n".join(f"IoU metric: {t}\n{self.summary[t].rstrip()}" for t in self.stats)


def _index(coco_cls, dataset: dict, printed: list[str] | None = None):
    """A COCO object over ``dataset``; what pycocotools printed meanwhile is appended to ``printed``."""
    coco = coco_cls()
    coco.dataset = copy.deepcopy(dataset)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        coco.createIndex()
    if printed is not None:
        printed += buf.getvalue().splitlines()
    return coco


def score(gt: GroundTruth, detections: dict[str, list[dict]], backend: str = "pycocotools") -> CocoResult:
    """Run COCOeval per IoU type over every image in ``gt``; no detections gives AP 0, not a crash."""
    coco_cls, eval_cls = _api(backend)
    printed: list[str] = []
    gt_coco = _index(coco_cls, gt.dataset(), printed)
    img_ids = [im["id"] for im in gt.images]
    stats, summary, evals = {}, {}, {}
    for iou_type, dets in detections.items():
        with contextlib.redirect_stdout(io.StringIO()):  # loading and per-image evaluation: silent, as the references
            if dets:
                dt_coco = gt_coco.loadRes(copy.deepcopy(dets))
            else:
                log.warning("no detections for IoU type %s: every AP is 0", iou_type)
                dt_coco = _index(coco_cls, {**gt.dataset(), "annotations": []})
            ev = eval_cls(gt_coco, dt_coco, iou_type)
            ev.params.imgIds = img_ids
            ev.evaluate()
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            ev.accumulate()
        printed += buf.getvalue().splitlines()
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            ev.summarize()
        stats[iou_type] = [float(x) for x in ev.stats[:12]]
        summary[iou_type] = buf.getvalue()
        evals[iou_type] = ev
    return CocoResult(stats, summary, coco_eval=evals, coco_gt=gt_coco, log_lines=printed)


def ground_truth_from_dataset(dataset) -> GroundTruth:
    """The references' way: iterate the whole dataset (decoding every image) to learn the ground truth.

    Kept for comparison and benchmarks only; :func:`reference.engine.loops.evaluate` does not need it.
    """
    from ..contract import image_id_of

    gt = GroundTruth()
    for i in range(len(dataset)):
        image, target = dataset[i]
        h, w = image.shape[-2:]
        gt.add(image_id_of(target), int(h), int(w), target)
    return gt
