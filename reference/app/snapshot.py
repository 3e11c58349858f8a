"""Snapshots: a model's detections and COCO stats on a few images, recorded once and checked after an upgrade.

A snapshot is a JSON record (format ``tvref-snapshot/1``) of what a model outputs on the first N images of a
dataset: per image its boxes, scores, labels and (Mask R-CNN) RLE masks, plus the COCO stats over those
images, the versions that made it and the tolerances to check it with. :func:`compare` re-pairs the
detections of two records by label and box IoU and reports what moved beyond the tolerances.

    snap = record(model, dataset, max_images=20, tolerances=Tolerances(), meta={})
    save("snap.json", snap)
    ...  # upgrade torch / torchvision
    diff = compare(load("snap.json"), record(model, dataset, max_images=20, tolerances=Tolerances(), meta={}),
                   Tolerances())
    print(diff.summary())
"""

from __future__ import annotations

import json
import logging
import shlex
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from pycocotools import mask as mask_utils
from torch import nn
from torch.utils.data import Dataset, Subset
from torchvision.ops import box_iou

from ..atomic_io import atomic_write_json
from ..errors import UserError
from ..contract import image_id_of
from ..data.coco import encode_rle
from ..engine.evaluator import Batch, COCOEvaluator, DatasetEvaluator, Outputs, inference_on_dataset

log = logging.getLogger(__name__)

FORMAT = "tvref-snapshot/1"
_CORE_KEYS = ("format", "versions", "tolerances", "score_floor", "batch_size", "mask_threshold", "images", "coco")


class SnapshotError(UserError, ValueError):
    """A snapshot file is missing, unreadable, or not a snapshot of this project (CLI exit code 2)."""


@dataclass(frozen=True)
class Tolerances:
    """How far a re-recorded snapshot may drift from the stored one and still pass.

    Defaults are for a user's model checked on another machine or device than the one that recorded it: 1 px
    and 0.01 in score (torchvision's own model tests use atol 0.01 for scores) allow other CPUs' and GPUs'
    kernels; masks are binarised at 0.5, so a float drift flips only boundary pixels, and IoU 0.9 still allows
    a one-pixel contour shift on a 30x30 object; COCO stats over a few images move in steps of one
    detection's rank, so 0.01 flags any change that is more than rounding. On one machine drift is far
    smaller: the suite's trained golden record (``reference.testing.golden``) measured none at 1e-3 px and 1e-5 in
    score across torch 2.1 to 2.14, and checks with much tighter tolerances; pass tighter ones when recording
    and checking on the same machine.
    """

    match_iou: float = 0.5
    box_atol: float = 1.0
    score_atol: float = 0.01
    mask_iou_min: float = 0.9
    ap_atol: float = 0.01

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Tolerances":
        """Tolerances from a dict; missing keys take the defaults, unknown keys or non-numbers raise ValueError."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown tolerance(s) {sorted(unknown)}; known: {sorted(known)}")
        for k, v in d.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"tolerance {k} must be a number, got {v!r}")
        return cls(**{k: float(v) for k, v in d.items()})


# ---------------------------------------------------------------------------------------------- recording


def detections_record(output: Mapping[str, torch.Tensor], *, mask_threshold: float = 0.5) -> dict[str, Any]:
    """One image's detections as JSON-ready lists, in the order given (masks as COCO RLEs of ``>= threshold``)."""
    boxes = output["boxes"].detach().to("cpu", torch.float64)
    rec: dict[str, Any] = {
        "boxes": [[round(float(x), 3) for x in b] for b in boxes.tolist()],
        "scores": [round(float(s), 5) for s in output["scores"].detach().cpu().tolist()],
        "labels": [int(x) for x in output["labels"].detach().cpu().tolist()],
    }
    if "masks" in output:
        binary = (output["masks"].detach().cpu() >= mask_threshold).numpy()
        rec["masks"] = [encode_rle(m[0] if m.ndim == 3 else m) for m in binary]
    return rec


def score_floor_of(model: nn.Module) -> float | None:
    """The model's score threshold (``roi_heads.score_thresh``), below which it drops detections."""
    heads = getattr(model, "roi_heads", None)
    floor = getattr(heads, "score_thresh", None)
    return float(floor) if floor is not None else None


@dataclass
class _SnapshotEvaluator(DatasetEvaluator):
    """Per image its detections record (in loader order), and the COCO stats over the images processed."""

    iou_types: Sequence[str]
    mask_threshold: float
    images: list[dict[str, Any]] = field(init=False, repr=False)
    coco: COCOEvaluator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.images = []
        self.coco = COCOEvaluator(self.iou_types, console=False)

    def process(self, inputs: Batch, outputs: Outputs) -> None:
        self.coco.process(inputs, outputs)
        for target, output in zip(inputs[1], outputs):
            self.images.append({"index": len(self.images), "image_id": image_id_of(target),
                                "detections": detections_record(output, mask_threshold=self.mask_threshold)})

    def evaluate(self) -> tuple[list[dict[str, Any]], dict[str, dict[str, float]]]:
        return self.images, self.coco.evaluate().named()


def record(model: nn.Module, dataset: Dataset, *, max_images: int | None = None, device: str | torch.device = "cpu",
           batch_size: int = 2, tolerances: Tolerances = Tolerances(), meta: Mapping[str, Any] | None = None,
           mask_threshold: float = 0.5) -> dict[str, Any]:
    """Run ``model`` (moved to ``device``, eval mode, inference mode) on the first ``max_images`` samples.

    ``dataset`` yields ``(float image in [0, 1], target)``. Returns the snapshot record: per-image detections
    and the COCO stats over those images, with versions, tolerances, score floor and ``meta`` merged in.
    """
    from ..models import iou_types
    from ..reporting.run_report import versions
    from ..training.fit import make_loader

    meta = dict(meta or {})
    clash = set(meta) & set(_CORE_KEYS)
    if clash:
        raise ValueError(f"meta keys {sorted(clash)} would overwrite the snapshot's own fields")
    n = len(dataset) if max_images is None else min(max_images, len(dataset))  # type: ignore[arg-type]
    model = model.to(device).eval()
    loader = make_loader(Subset(dataset, range(n)), batch_size, train=False, seed=0, epoch=0)
    evaluator = _SnapshotEvaluator(iou_types(model), mask_threshold)
    images, coco = inference_on_dataset(model, loader, evaluator, device, console=False)
    log.info("recorded %d images, %d detections", len(images),
             sum(len(im["detections"]["scores"]) for im in images))
    return {"format": FORMAT, "versions": versions(), "tolerances": tolerances.to_dict(),
            "score_floor": score_floor_of(model), "batch_size": batch_size, "mask_threshold": mask_threshold,
            "images": images, "coco": coco, **meta}


def record_checkpoint(checkpoint: Path, data: Path, *, fmt: str | None = None, device: str = "cpu",
                      max_images: int = 20, batch_size: int = 2, tolerances: Tolerances = Tolerances(),
                      mask_threshold: float = 0.5) -> dict[str, Any]:
    """:func:`record` for a project checkpoint on a dataset folder (its ``val/`` part if present), loaded as
    ``tvref evaluate`` loads them: the checkpoint's recipe's evaluation transforms, class counts checked."""
    from ..errors import JobError
    from ..training.fit import get_recipe
    from .checkpoints import load_model, resolve_device
    from .datasets import num_classes, open_for_recipe

    dev = resolve_device(device)
    model, state = load_model(Path(checkpoint), dev)
    try:
        recipe = get_recipe(state.get("recipe", "ci"))
    except ValueError as exc:
        raise JobError(f"{checkpoint}: {exc}") from exc
    folder = data / "val" if (data / "val").is_dir() else data
    ds = open_for_recipe(folder, fmt, recipe, False)
    if num_classes(ds) != int(state["num_classes"]):
        raise JobError(f"{data}: {num_classes(ds)} classes, the checkpoint's model has {state['num_classes']}")
    meta = {"checkpoint": str(checkpoint), "data": str(folder), "data_format": fmt,
            "model_name": state["model_name"], "recipe": recipe.name}
    return record(model, ds, max_images=max_images, device=dev, batch_size=batch_size, tolerances=tolerances,
                  meta=meta, mask_threshold=mask_threshold)


@dataclass(frozen=True)
class Recorded:
    """A snapshot written by ``tvref snapshot record``."""

    path: Path
    snapshot: dict[str, Any]

    def line(self) -> str:
        images = self.snapshot["images"]
        count = sum(len(im["detections"]["scores"]) for im in images)
        return f"snapshot of {len(images)} images ({count} detections) written to {self.path}"


def record_file(out: Path, checkpoint: Path, data: Path, *, fmt: str | None = None, device: str = "cpu",
                max_images: int = 20, tolerances: Tolerances = Tolerances(), overwrite: bool = False) -> Recorded:
    """:func:`record_checkpoint` saved to ``out``; an ``out`` that is a folder, or exists without ``overwrite``,
    is refused before anything runs."""
    from .outputs import check_output_file

    check_output_file(out, "--out")
    if out.exists() and not overwrite:
        raise SnapshotError(f"{out} exists; pass --overwrite to replace it")
    snap = record_checkpoint(checkpoint, data, fmt=fmt, device=device, max_images=max_images, tolerances=tolerances)
    save(out, snap)
    return Recorded(out, snap)


# ------------------------------------------------------------------------------------------------ files


def save(path: str | Path, snapshot: Mapping[str, Any]) -> None:
    """Write ``snapshot`` as JSON, atomically (an interrupted save leaves the old file intact)."""
    atomic_write_json(Path(path), dict(snapshot))


def load(path: str | Path) -> dict[str, Any]:
    """Read a snapshot; a missing file, bad JSON, a wrong format tag or bad tolerances raise SnapshotError."""
    path = Path(path)
    if not path.is_file():
        raise SnapshotError(f"{path}: no such snapshot file")
    try:
        snap = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SnapshotError(f"{path}: not a snapshot (invalid JSON: {exc})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SnapshotError(f"{path}: cannot read the snapshot ({type(exc).__name__}: {exc})") from exc
    tag = snap.get("format") if isinstance(snap, dict) else None
    if tag != FORMAT:
        raise SnapshotError(f"{path}: not a snapshot of this project (format tag {tag!r}, expected {FORMAT!r})")
    if not isinstance(snap.get("images"), list) or not isinstance(snap.get("coco"), dict):
        raise SnapshotError(f"{path}: snapshot lacks its 'images' list or 'coco' stats")
    if not snap["images"]:
        raise SnapshotError(f"{path}: snapshot holds no images")
    try:
        Tolerances.from_dict(snap.get("tolerances", {}))
    except (TypeError, ValueError) as exc:
        raise SnapshotError(f"{path}: bad tolerances: {exc}") from exc
    return snap


# ------------------------------------------------------------------------------------------------ comparing


def _fmt_box(box: list[float]) -> list[float]:
    return [round(x, 2) for x in box]


@dataclass(frozen=True)
class Unmatched:
    """A detection without a partner: ``side`` is "lost" (expected only) or "new" (actual only)."""

    side: str
    detection: int
    label: int
    score: float
    box: list[float]
    borderline: bool

    def line(self, where: str, tol: Tolerances, floor: float | None) -> str:
        own, other = ("expected", "actual") if self.side == "lost" else ("actual", "expected")
        text = (f"{where} {own} detection {self.detection} (label {self.label}, score {self.score:.4f}, box "
                f"{_fmt_box(self.box)}): {self.side}: no {other} detection with label {self.label} at box IoU >= "
                f"{tol.match_iou}")
        if self.borderline:
            text += f" (borderline: score below score floor {floor} + score_atol {tol.score_atol})"
        return text


DRIFT_KINDS = ("box", "score", "mask")


@dataclass(frozen=True)
class Drift:
    """A matched detection that moved beyond a tolerance: ``kind`` is "box" (``value``: the largest coordinate
    change, px), "score" (the score change) or "mask" (the mask IoU, expected vs actual); ``line`` says it in full."""

    kind: str
    where: str
    detection: int
    label: int
    score: float
    value: float
    line: str

    @property
    def size(self) -> float:
        """How far it moved, larger is farther: the value itself, or 1 - IoU for a mask."""
        return 1.0 - self.value if self.kind == "mask" else self.value

    def brief(self) -> str:
        """One line naming the amount, the image and the expected detection."""
        amount = {"box": f"box moved {self.value:.3f} px", "score": f"score moved {self.value:.5f}",
                  "mask": f"mask IoU {self.value:.4f}"}[self.kind]
        return (f"{amount}: {self.where} expected detection {self.detection} (label {self.label}, score "
                f"{self.score:.4f})")


@dataclass
class ImageDiff:
    """One image compared: pairs found, the largest drifts among them, unpaired detections, failure lines."""

    index: int | None
    image_id: Any
    expected_count: int
    actual_count: int
    matched: int = 0
    max_box_drift: float = 0.0
    max_score_drift: float = 0.0
    min_mask_iou: float | None = None
    lost: list[Unmatched] = field(default_factory=list)
    new: list[Unmatched] = field(default_factory=list)
    drifts: list[Drift] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    tolerances: Tolerances = Tolerances()
    score_floor: float | None = None

    @property
    def where(self) -> str:
        idx = "?" if self.index is None else self.index
        return f"image {idx}" + (f" (id {self.image_id})" if self.image_id is not None else "")

    @property
    def count_delta(self) -> int:
        return self.actual_count - self.expected_count

    @property
    def borderline(self) -> list[Unmatched]:
        return [u for u in self.lost + self.new if u.borderline]

    def failures(self) -> list[str]:
        unpaired = [u.line(self.where, self.tolerances, self.score_floor) for u in self.lost + self.new
                    if not u.borderline]
        return self.problems + [d.line for d in self.drifts] + unpaired

    @property
    def ok(self) -> bool:
        return not self.failures()


def _mask_iou(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    if list(a["size"]) != list(b["size"]):
        return 0.0
    if mask_utils.area(dict(a)) == 0 and mask_utils.area(dict(b)) == 0:
        return 1.0
    return float(mask_utils.iou([dict(a)], [dict(b)], [0])[0][0])


def _match(exp: Mapping[str, Any], act: Mapping[str, Any], match_iou: float) -> list[tuple[int, int]]:
    """Pairs (expected, actual): expected by descending score, each taking the unused same-label actual
    detection of highest box IoU, if that IoU reaches ``match_iou``."""
    ne, na = len(exp["scores"]), len(act["scores"])
    if not ne or not na:
        return []
    ious = box_iou(torch.tensor(exp["boxes"], dtype=torch.float64), torch.tensor(act["boxes"], dtype=torch.float64))
    act_labels = torch.tensor(act["labels"])
    free = torch.ones(na, dtype=torch.bool)
    pairs = []
    for j in sorted(range(ne), key=lambda i: -exp["scores"][i]):
        cand = torch.where(free & (act_labels == exp["labels"][j]), ious[j], torch.full_like(ious[j], -1.0))
        c = int(torch.argmax(cand))
        if cand[c] >= match_iou:
            free[c] = False
            pairs.append((j, c))
    return pairs


def _unmatched(side: str, dets: Mapping[str, Any], used: set[int], floor: float | None,
               tol: Tolerances) -> list[Unmatched]:
    limit = None if floor is None else floor + tol.score_atol
    return [Unmatched(side, i, int(dets["labels"][i]), float(dets["scores"][i]), list(dets["boxes"][i]),
                      limit is not None and dets["scores"][i] < limit)
            for i in range(len(dets["scores"])) if i not in used]


def compare_detections(expected_dets: Mapping[str, Any], actual_dets: Mapping[str, Any], tol: Tolerances,
                       score_floor: float | None, *, index: int | None = None, image_id: Any = None) -> ImageDiff:
    """Pair one image's expected and actual detections (see :func:`_match`) and measure what moved.

    A lost or new detection scoring below ``score_floor + tol.score_atol`` is borderline (it sits at the
    model's threshold, so any drift may drop or admit it) and does not fail; ``score_floor=None``: none is.
    """
    diff = ImageDiff(index, image_id, len(expected_dets["scores"]), len(actual_dets["scores"]),
                     tolerances=tol, score_floor=score_floor)
    pairs = _match(expected_dets, actual_dets, tol.match_iou)
    diff.matched = len(pairs)
    has_masks = "masks" in expected_dets and "masks" in actual_dets
    if ("masks" in expected_dets) != ("masks" in actual_dets) and (diff.expected_count or diff.actual_count):
        side = "expected" if "masks" in expected_dets else "actual"
        diff.problems.append(f"{diff.where}: only the {side} detections have masks")
    for j, c in pairs:
        _compare_pair(diff, expected_dets, actual_dets, j, c, has_masks)
    diff.lost = _unmatched("lost", expected_dets, {j for j, _ in pairs}, score_floor, tol)
    diff.new = _unmatched("new", actual_dets, {c for _, c in pairs}, score_floor, tol)
    return diff


def _compare_pair(diff: ImageDiff, exp: Mapping[str, Any], act: Mapping[str, Any], j: int, c: int,
                  has_masks: bool) -> None:
    tol = diff.tolerances
    e_box, a_box = exp["boxes"][j], act["boxes"][c]
    head = f"{diff.where} expected detection {j} (label {exp['labels'][j]}, score {exp['scores'][j]:.4f})"

    def drift(kind: str, value: float, text: str) -> None:
        diff.drifts.append(Drift(kind, diff.where, j, int(exp["labels"][j]), float(exp["scores"][j]), value,
                                 f"{head}: {text}"))

    box_drift = max(abs(x - y) for x, y in zip(e_box, a_box))
    diff.max_box_drift = max(diff.max_box_drift, box_drift)
    if box_drift > tol.box_atol:
        drift("box", box_drift, f"box moved {box_drift:.3f} px > box_atol {tol.box_atol}: expected "
                                f"{_fmt_box(e_box)}, actual {_fmt_box(a_box)}")
    score_drift = abs(exp["scores"][j] - act["scores"][c])
    diff.max_score_drift = max(diff.max_score_drift, score_drift)
    if score_drift > tol.score_atol:
        drift("score", score_drift, f"score expected {exp['scores'][j]:.5f}, actual {act['scores'][c]:.5f}, "
                                    f"drift {score_drift:.5f} > score_atol {tol.score_atol}")
    if has_masks:
        iou = _mask_iou(exp["masks"][j], act["masks"][c])
        diff.min_mask_iou = iou if diff.min_mask_iou is None else min(diff.min_mask_iou, iou)
        if iou < tol.mask_iou_min:
            drift("mask", iou, f"mask IoU expected vs actual {iou:.4f} < mask_iou_min {tol.mask_iou_min}")


@dataclass(frozen=True)
class ApDelta:
    iou_type: str
    stat: str
    expected: float
    actual: float | None

    @property
    def delta(self) -> float:
        return float("inf") if self.actual is None else self.actual - self.expected

    def brief(self) -> str:
        """One line: the stat, its expected and actual values and the change."""
        if self.actual is None:
            return f"coco {self.iou_type} {self.stat}: {self.expected:.4f} -> missing"
        return f"coco {self.iou_type} {self.stat}: {self.expected:.4f} -> {self.actual:.4f} ({self.delta:+.4f})"


@dataclass
class SnapshotDiff:
    """Two snapshot records compared: per-image diffs, COCO stat deltas, and record-level problems."""

    tolerances: Tolerances
    images: list[ImageDiff] = field(default_factory=list)
    ap_deltas: list[ApDelta] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    versions: tuple[dict, dict] = ({}, {})

    @property
    def ok(self) -> bool:
        return not self.failures()

    def failures(self) -> list[str]:
        """One line per change beyond tolerance: record problems, then per image, then COCO stats."""
        lines = list(self.problems)
        for im in self.images:
            lines += im.failures()
        for d in self.moved_stats():
            actual = "missing" if d.actual is None else f"{d.actual:.4f}"
            lines.append(f"coco {d.iou_type} {d.stat}: expected {d.expected:.4f}, actual {actual}, delta "
                         f"{d.delta:+.4f} beyond ap_atol {self.tolerances.ap_atol}")
        return lines

    def moved_stats(self) -> list[ApDelta]:
        """The COCO stats that moved more than ``ap_atol`` (or are missing now), in record order."""
        return [d for d in self.ap_deltas if abs(d.delta) > self.tolerances.ap_atol]

    def digest(self, top: int = 3) -> list[str]:
        """For a failed comparison, how many of each change there are and the ``top`` largest drifts of each
        kind (box, score, mask, COCO stat) with their image and detection; no lines for a pass."""
        if self.ok:
            return []
        drifts = [d for im in self.images for d in im.drifts]
        counts = {kind: sum(d.kind == kind for d in drifts) for kind in DRIFT_KINDS}
        lost = sum(1 for im in self.images for u in im.lost if not u.borderline)
        new = sum(1 for im in self.images for u in im.new if not u.borderline)
        moved = self.moved_stats()
        lines = [f"changed: {counts['box']} boxes, {counts['score']} scores, {counts['mask']} masks, {lost} lost, "
                 f"{new} new, {len(moved)} stats moved"]
        largest = [d.brief() for kind in DRIFT_KINDS
                   for d in sorted((d for d in drifts if d.kind == kind), key=lambda d: -d.size)[:top]]
        largest += [d.brief() for d in sorted(moved, key=lambda d: -abs(d.delta))[:top]]
        if largest:
            lines.append("largest drifts:")
            lines += [f"  {line}" for line in largest]
        return lines

    def summary(self) -> str:
        """A compact table of what was compared and the largest drifts, headed PASS or FAIL."""
        tol = self.tolerances
        ims = self.images
        masks = [im.min_mask_iou for im in ims if im.min_mask_iou is not None]
        worst_ap = max(self.ap_deltas, key=lambda d: abs(d.delta), default=None)
        exp_v, act_v = self.versions
        rows = [
            ("images compared", f"{len(ims)}", ""),
            ("matched", f"{sum(im.matched for im in ims)} of {sum(im.expected_count for im in ims)} expected", ""),
            ("lost", f"{sum(1 for im in ims for u in im.lost if not u.borderline)}", "expected, no partner"),
            ("new", f"{sum(1 for im in ims for u in im.new if not u.borderline)}", "actual, no partner"),
            ("borderline", f"{sum(len(im.borderline) for im in ims)}", "lost/new at the score floor: pass"),
            ("max box drift", f"{max((im.max_box_drift for im in ims), default=0.0):.3f} px",
             f"box_atol {tol.box_atol}"),
            ("max score drift", f"{max((im.max_score_drift for im in ims), default=0.0):.5f}",
             f"score_atol {tol.score_atol}"),
            ("min mask IoU", f"{min(masks):.4f}" if masks else "-", f"mask_iou_min {tol.mask_iou_min}"),
            ("largest AP delta", "-" if worst_ap is None else
             f"{worst_ap.delta:+.4f} ({worst_ap.iou_type} {worst_ap.stat})", f"ap_atol {tol.ap_atol}"),
        ]
        lines = [f"snapshot check: {'PASS' if self.ok else 'FAIL'}"]
        if exp_v or act_v:
            lines.append(f"  recorded with torch {exp_v.get('torch', '?')} / torchvision "
                         f"{exp_v.get('torchvision', '?')}; now torch {act_v.get('torch', '?')} / torchvision "
                         f"{act_v.get('torchvision', '?')}")
        lines += [f"  {name:<17} {value:<26} {note}".rstrip() for name, value, note in rows]
        if self.problems:
            lines.append(f"  {len(self.problems)} record-level problem(s), see the failure lines")
        return "\n".join(lines)


def compare(expected: Mapping[str, Any], actual: Mapping[str, Any], tol: Tolerances) -> SnapshotDiff:
    """Compare two snapshot records image by image (by position) and stat by stat."""
    diff = SnapshotDiff(tol, versions=(dict(expected.get("versions", {})), dict(actual.get("versions", {}))))
    exp_images, act_images = expected["images"], actual["images"]
    if len(exp_images) != len(act_images):
        diff.problems.append(f"snapshot has {len(exp_images)} images, the actual run {len(act_images)}")
    # the borderline rule uses the recorded model's threshold: a changed threshold is itself a change
    floor = expected.get("score_floor")
    if floor != actual.get("score_floor"):
        diff.problems.append(f"score threshold: recorded {floor}, now {actual.get('score_floor')}")
    for e, a in zip(exp_images, act_images):
        if e.get("image_id") != a.get("image_id"):
            diff.problems.append(f"image {e.get('index')}: expected image id {e.get('image_id')}, actual "
                                 f"{a.get('image_id')} (a different dataset or order)")
            continue
        diff.images.append(compare_detections(e["detections"], a["detections"], tol, floor,
                                              index=e.get("index"), image_id=e.get("image_id")))
    for iou_type, stats in expected.get("coco", {}).items():
        got = actual.get("coco", {}).get(iou_type, {})
        diff.ap_deltas += [ApDelta(iou_type, s, float(v), None if got.get(s) is None else float(got[s]))
                           for s, v in stats.items()]
    return diff


# ------------------------------------------------------------------------------------------ checking a file


class MissingSnapshotError(SnapshotError):
    """The snapshot file to check does not exist; the message names the command that records it."""


def record_command(path: str | Path, checkpoint: str | Path, data: str | Path, *, fmt: str | None = None,
                   device: str = "cpu") -> str:
    """The ``tvref snapshot record`` command line that writes ``path`` from ``checkpoint`` on ``data``."""
    args = ["tvref", "snapshot", "record", "--checkpoint", str(checkpoint), "--data", str(data)]
    if fmt:
        args += ["--format", fmt]
    if device != "cpu":
        args += ["--device", device]
    return shlex.join(args + ["--out", str(path)])


def recording_settings(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    """The :func:`record_checkpoint` arguments that re-record ``snapshot`` as it was made: its tolerances, image
    count, batch size and mask threshold."""
    return {"max_images": len(snapshot["images"]), "batch_size": int(snapshot.get("batch_size", 2)),
            "tolerances": Tolerances.from_dict(snapshot.get("tolerances", {})),
            "mask_threshold": float(snapshot.get("mask_threshold", 0.5))}


@dataclass(frozen=True)
class CheckResult:
    """A snapshot file compared with a fresh recording of the checkpoint (``tvref snapshot check``)."""

    path: Path
    diff: SnapshotDiff

    @property
    def ok(self) -> bool:
        return self.diff.ok

    def lines(self, max_changes: int | None = None) -> list[str]:
        """The report: one ``- `` line per change (the first ``max_changes`` of them, then how many more), the
        summary table, then on a failure the counts of each change and the largest drifts."""
        changes = self.diff.failures()
        shown = changes if max_changes is None else changes[:max_changes]
        lines = [f"- {line}" for line in shown]
        if len(changes) > len(shown):
            lines.append(f"- ... and {len(changes) - len(shown)} more")
        return lines + self.diff.summary().splitlines() + self.diff.digest()


def check_snapshot(path: str | Path, checkpoint: str | Path, data: str | Path, *, fmt: str | None = None,
                   device: str = "cpu") -> CheckResult:
    """Re-record ``checkpoint`` on ``data`` with the snapshot's settings and compare with the snapshot at ``path``.

    A missing file raises :class:`MissingSnapshotError` naming the ``tvref snapshot record`` line that makes
    it; an unreadable one :class:`SnapshotError` (from :func:`load`).
    """
    path = Path(path)
    if not path.exists():
        raise MissingSnapshotError(f"{path}: no such snapshot file; record it with: "
                                   f"{record_command(path, checkpoint, data, fmt=fmt, device=device)}")
    expected = load(path)
    settings = recording_settings(expected)
    actual = record_checkpoint(Path(checkpoint), Path(data), fmt=fmt, device=device, **settings)
    return CheckResult(path, compare(expected, actual, settings["tolerances"]))


@dataclass(frozen=True)
class UpdateResult:
    """A snapshot file re-recorded: the new record and, when a snapshot was there, how it compared with the old."""

    path: Path
    snapshot: dict[str, Any]
    previous: SnapshotDiff | None

    def line(self) -> str:
        """What was written, in one line."""
        images = self.snapshot["images"]
        count = sum(len(im["detections"]["scores"]) for im in images)
        head = f"{self.path}: snapshot written, {len(images)} images, {count} detections"
        if self.previous is None:
            return f"{head} (a new file, with the default tolerances of tvref snapshot record)"
        changes = len(self.previous.failures())
        was = "unchanged within tolerance" if not changes else f"{changes} changes beyond tolerance"
        return f"{head} (tolerances and image count kept from the previous snapshot: {was})"


def update_snapshot(path: str | Path, checkpoint: str | Path, data: str | Path, *, fmt: str | None = None,
                    device: str = "cpu") -> UpdateResult:
    """Record ``checkpoint`` on ``data`` into ``path``, atomically, with the settings of the snapshot already
    there (see :func:`recording_settings`), or :func:`record_checkpoint`'s defaults for a new file.

    An existing file that is not a snapshot raises :class:`SnapshotError` and is left as it is.
    """
    path = Path(path)
    previous = load(path) if path.exists() else None
    settings = recording_settings(previous) if previous is not None else {}
    fresh = record_checkpoint(Path(checkpoint), Path(data), fmt=fmt, device=device, **settings)
    save(path, fresh)
    diff = None if previous is None else compare(previous, fresh, settings["tolerances"])
    return UpdateResult(path, fresh, diff)
