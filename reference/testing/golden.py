"""Golden outputs: what the models compute for fixed weights and inputs, stored, and compared with stated
tolerances.

Two sets, both in ``fixtures/golden/``:

- **trained** (``small_maskrcnn_ci.json``): the small Mask R-CNN trained from random weights for 14 epochs with an
  earlier ``ci`` recipe (AdamW, cosine, the references' warmup; ``small_maskrcnn_ci.pt``, weights stored as
  float16), on bundled validation scenes, two of them at odd sizes so that the model's resize and the box and mask
  paste-back run with real scale factors. Every detection is stored (boxes, scores, labels, mask RLEs) with the
  train-mode losses. Trained weights give scores spread over (0.05, 1) and masks with structure, so a drift in
  torchvision's numerics or settings shows. Compared by :func:`compare_trained`: the model's settings, each
  image's detections (:func:`reference.app.snapshot.compare_detections` with :data:`TRAINED_TOLERANCES`) and
  the losses (:data:`LOSS_RTOL`).
- **architecture** (one file per builder): every builder with random weights on two synthetic images: the
  top detections, mask mean and standard deviation, the loss dict. Random weights score every detection
  alike, so these files pin the builders' structure (heads, sizes, loss keys), not numeric drift. Compared by
  :func:`compare`.

Both compare functions take ``(expected, actual)``, as :func:`reference.app.snapshot.compare` does.

    python -m reference.testing.golden --out fixtures/golden   # regenerate both sets (trained weights kept)
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Any, Sequence

import torch
import torchvision
from torch import nn
from torchvision.ops import box_iou, masks_to_boxes

from ..atomic_io import atomic_write_json
from ..models import BUILDERS, build_model
from ..paths import fixtures_dir
from ..app.snapshot import Tolerances, compare_detections, detections_record, score_floor_of

# Architecture records (random weights): scores and losses with rtol = atol = 0.01 as torchvision's own model
# tests; boxes within BOX_ATOL pixels; random weights score many boxes alike, so NMS may swap near-ties and
# only MIN_MATCHED of the stored detections must find a partner. Numeric drift is the trained record's job.
RTOL = ATOL = 0.01
BOX_ATOL = 1.0
TOP_K = 20  # detections kept per image
MIN_MATCHED = 0.9
MATCH_IOU = 0.9
# Zoo models run on small inputs so that the whole golden set computes in seconds on a CPU.
SMALL_INPUT = {"min_size": 96, "max_size": 128}
NUM_CLASSES = 3


def golden_inputs(with_keypoints: bool = False) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Two images with bright blobs and matching targets, from a fixed CPU generator."""
    g = torch.Generator().manual_seed(1234)
    images, targets = [], []
    for h, w in ((96, 128), (112, 96)):
        img = torch.rand((3, h, w), generator=g) * 0.3
        boxes = torch.tensor([[10.0, 12.0, 50.0, 80.0], [60.0, 20.0, 90.0, 70.0]])
        masks = torch.zeros((2, h, w), dtype=torch.uint8)
        for k, (x1, y1, x2, y2) in enumerate(boxes.long().tolist()):
            img[:, y1:y2, x1:x2] += torch.rand((3, 1, 1), generator=g) * 0.7
            masks[k, y1:y2, x1:x2] = 1
        t = {"boxes": boxes, "labels": torch.tensor([1, 2]), "masks": masks}
        if with_keypoints:
            kp = torch.rand((2, 17, 3), generator=g)
            kp[..., 0] = boxes[:, None, 0] + kp[..., 0] * (boxes[:, None, 2] - boxes[:, None, 0])
            kp[..., 1] = boxes[:, None, 1] + kp[..., 1] * (boxes[:, None, 3] - boxes[:, None, 1])
            kp[..., 2] = 2.0
            t["keypoints"] = kp
            t["labels"] = torch.tensor([1, 1])
        images.append(img.clamp(0, 1))
        targets.append(t)
    return images, targets


def golden_model(name: str) -> nn.Module:
    """A builder's model with seeded random weights, keeping only the top detections (random weights score
    every box alike, so the rest adds nothing but time: Keypoint R-CNN decodes keypoints per detection)."""
    torch.manual_seed(0)
    kwargs = {"box_detections_per_img": TOP_K} | ({} if name == "small_maskrcnn" else dict(SMALL_INPUT))
    classes = 2 if name.startswith("keypoint") else NUM_CLASSES
    return build_model(name, classes, None, **kwargs)


def _compact(output: dict[str, torch.Tensor]) -> dict[str, Any]:
    order = torch.argsort(output["scores"], descending=True)[:TOP_K]
    out: dict[str, Any] = {
        "count": int(output["scores"].numel()),
        "boxes": output["boxes"][order].tolist(),
        "scores": output["scores"][order].tolist(),
        "labels": output["labels"][order].tolist(),
    }
    if "masks" in output:
        m = output["masks"].float()
        out["mask_mean"] = float(m.mean()) if m.numel() else 0.0
        out["mask_std"] = float(m.std()) if m.numel() > 1 else 0.0
    if "keypoints" in output:
        out["keypoints_mean"] = float(output["keypoints"][order][..., :2].mean()) if len(order) else 0.0
    return out


def compute(model: nn.Module, name: str, device: torch.device | str = "cpu",
            dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Eval-mode compacted outputs and the train-mode loss dict, for the golden inputs."""
    device = torch.device(device)
    images, targets = golden_inputs(with_keypoints=name.startswith("keypoint"))
    model = model.to(device=device, dtype=dtype)
    imgs = [i.to(device=device, dtype=dtype) for i in images]
    tgts = [{k: (v.to(device=device, dtype=dtype) if v.is_floating_point() else v.to(device)) for k, v in t.items()}
            for t in targets]
    model.eval()
    with torch.inference_mode():
        outputs = [{k: v.to("cpu", torch.float64) for k, v in o.items()} for o in model(imgs)]
    model.train()
    torch.manual_seed(0)  # the samplers of the RPN and RoI heads draw from the global RNG
    losses = {k: float(v.detach()) for k, v in model(imgs, tgts).items()}
    model.eval()
    return {"model": name, "outputs": [_compact(o) for o in outputs], "losses": losses}


def _close(a: float, b: float, rtol: float = RTOL, atol: float = ATOL) -> bool:
    return abs(a - b) <= atol + rtol * abs(b)


def compare(expected: dict[str, Any], actual: dict[str, Any], rtol: float = RTOL, atol: float = ATOL) -> list[str]:
    """Readable differences between the stored architecture record ``expected`` and a fresh one ``actual`` (the
    order of :func:`reference.app.snapshot.compare`); empty when they agree within tolerance."""
    diffs: list[str] = []
    for k, v in expected["losses"].items():
        got = actual["losses"].get(k)
        if got is None or not _close(got, v, rtol, atol):
            diffs.append(f"loss {k}: expected {v:.5f}, got {got}")
    for i, (a, e) in enumerate(zip(actual["outputs"], expected["outputs"])):
        for key in ("mask_mean", "mask_std", "keypoints_mean"):
            if key in e and not _close(a.get(key, float("nan")), e[key], rtol, atol):
                diffs.append(f"image {i} {key}: expected {e[key]:.5f}, got {a.get(key)}")
        if a["count"] != e["count"]:
            diffs.append(f"image {i}: {a['count']} detections, {e['count']} stored")
        if not e["scores"]:
            if a["scores"]:
                diffs.append(f"image {i}: expected no detections, got {len(a['scores'])}")
            continue
        if not a["scores"]:
            diffs.append(f"image {i}: expected {len(e['scores'])} detections, got none")
            continue
        ious = box_iou(torch.tensor(e["boxes"], dtype=torch.float64), torch.tensor(a["boxes"], dtype=torch.float64))
        used: set[int] = set()
        matched = 0
        for j in range(len(e["scores"])):
            cands = [c for c in torch.argsort(ious[j], descending=True).tolist()
                     if c not in used and ious[j, c] >= MATCH_IOU and a["labels"][c] == e["labels"][j]]
            if not cands:
                continue
            c = cands[0]
            used.add(c)
            matched += 1
            if not _close(a["scores"][c], e["scores"][j], rtol, atol):
                diffs.append(f"image {i} detection {j}: score expected {e['scores'][j]:.4f}, got {a['scores'][c]:.4f}")
            if not all(_close(x, y, rtol, BOX_ATOL) for x, y in zip(a["boxes"][c], e["boxes"][j])):
                diffs.append(f"image {i} detection {j}: box expected {[round(x, 2) for x in e['boxes'][j]]}, "
                             f"got {[round(x, 2) for x in a['boxes'][c]]}")
        if matched < MIN_MATCHED * len(e["scores"]):
            diffs.append(f"image {i}: only {matched} of {len(e['scores'])} stored detections matched (IoU >= "
                         f"{MATCH_IOU}, same label)")
    return diffs


# --- trained ----------------------------------------------------------------------------------------------

TRAINED_NAME = "small_maskrcnn_ci"
# Each tolerance sits above the drift measured across torch 2.1.2 / 2.5.1 / 2.14.1, threads and memory formats
# (``python -m reference.testing.golden --drift`` in each tox env: none at the stored precision) and below the
# smallest effect of the regressions it exists to see (``python ci/regressions.py --golden-drift``); docs/testing.md,
# "Golden outputs", has both tables.
TRAINED_TOLERANCES = Tolerances(match_iou=0.5, box_atol=0.02, score_atol=2e-4, mask_iou_min=0.99, ap_atol=0.0)
LOSS_RTOL = 1e-4
# float64 against float32 moves scores by 1e-5 (measured), within the trained tolerances
PARITY_DTYPE_TOLERANCES = TRAINED_TOLERANCES
PARITY_DTYPE_LOSS_RTOL = None  # not compared: which anchors the samplers pick flips with near-threshold IoUs
# an accelerator runs other kernels (cuDNN, MPS): not measured here (no device), so deliberately looser; the
# GPU leg, where it runs, is where these get measured
PARITY_DEVICE_TOLERANCES = Tolerances(match_iou=0.5, box_atol=0.5, score_atol=0.01, mask_iou_min=0.9, ap_atol=0.0)
VAL_IMAGES = tuple(range(10))  # bundled validation scenes at their own size (160x128)
PADDED = (10, (157, 203))  # scene 10 on a larger grey canvas: the model scales it down by 0.788
CROPPED = (11, (117, 149))  # the top-left of scene 11: the model scales it up by 1.074


# The settings that decide what a torchvision detector computes, beyond its weights. A release that changes a
# default, or code that sets one by mistake, shows here by name before any number moves.
CONFIG_PATHS = (
    "transform.min_size", "transform.max_size", "transform.image_mean", "transform.image_std",
    "transform.size_divisible", "transform.fixed_size",
    "rpn.anchor_generator.sizes", "rpn.anchor_generator.aspect_ratios", "rpn._pre_nms_top_n", "rpn._post_nms_top_n",
    "rpn.nms_thresh", "rpn.score_thresh", "rpn.min_size", "rpn.box_coder.weights", "rpn.box_coder.bbox_xform_clip",
    "rpn.fg_bg_sampler.batch_size_per_image", "rpn.fg_bg_sampler.positive_fraction",
    "rpn.proposal_matcher.high_threshold", "rpn.proposal_matcher.low_threshold",
    "rpn.proposal_matcher.allow_low_quality_matches",
    "roi_heads.score_thresh", "roi_heads.nms_thresh", "roi_heads.detections_per_img", "roi_heads.box_coder.weights",
    "roi_heads.box_coder.bbox_xform_clip", "roi_heads.fg_bg_sampler.batch_size_per_image",
    "roi_heads.fg_bg_sampler.positive_fraction", "roi_heads.proposal_matcher.high_threshold",
    "roi_heads.proposal_matcher.low_threshold", "roi_heads.box_roi_pool.featmap_names",
    "roi_heads.box_roi_pool.output_size", "roi_heads.box_roi_pool.sampling_ratio",
    "roi_heads.box_roi_pool.canonical_scale", "roi_heads.box_roi_pool.canonical_level",
    "roi_heads.mask_roi_pool.output_size", "roi_heads.mask_roi_pool.sampling_ratio",
    # built on the first forward pass: which FPN level an RoI of a given size is pooled from
    "roi_heads.box_roi_pool.map_levels.s0", "roi_heads.box_roi_pool.map_levels.lvl0",
    "roi_heads.box_roi_pool.map_levels.k_min", "roi_heads.box_roi_pool.map_levels.k_max",
)


def model_config(model: nn.Module) -> dict[str, Any]:
    """The values at :data:`CONFIG_PATHS` (JSON-ready; None where this torchvision has no such attribute, or
    before the first forward pass)."""
    def value(path: str) -> Any:
        obj: Any = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
        return json.loads(json.dumps(obj, default=list))  # tuples and nested tuples become lists

    return {path: value(path) for path in CONFIG_PATHS}


def trained_checkpoint() -> Path:
    return golden_dir() / f"{TRAINED_NAME}.pt"


def trained_model(path: Path | None = None) -> nn.Module:
    """The trained small Mask R-CNN in float32, eval mode (its float16 weights cast up on load)."""
    from ..training.checkpoint import load_checkpoint

    state = load_checkpoint(path or trained_checkpoint())
    model = build_model(state["model_name"], int(state["num_classes"]))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state["model"].items()})
    return model.eval()


def _target_from_masks(masks: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    keep = masks.flatten(1).bool().any(1)
    masks, labels = masks[keep], labels[keep]
    boxes = masks_to_boxes(masks.bool()).float()
    boxes[:, 2:] += 1  # pixel-inclusive extremes to XYXY edges
    return {"boxes": boxes, "labels": labels, "masks": masks}


def trained_inputs() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Twelve bundled validation scenes: ten as they are, one padded and one cropped to odd sizes (plain tensor
    operations only, so the inputs are the same bytes under every torchvision)."""
    from ..data import PennFudanDataset
    from ..transforms import evaluation

    ds = PennFudanDataset(fixtures_dir() / "pennfudan" / "val", evaluation())
    images, targets = [], []
    for i in VAL_IMAGES:
        img, t = ds[i]
        images.append(img)
        targets.append({"boxes": t["boxes"], "labels": t["labels"], "masks": t["masks"]})
    (i, (h, w)) = PADDED
    img, t = ds[i]
    canvas = torch.full((3, h, w), 0.5)
    canvas[:, :img.shape[1], :img.shape[2]] = img
    masks = torch.zeros((len(t["masks"]), h, w), dtype=torch.uint8)
    masks[:, :img.shape[1], :img.shape[2]] = t["masks"]
    images.append(canvas)
    targets.append(_target_from_masks(masks, t["labels"]))
    (i, (h, w)) = CROPPED
    img, t = ds[i]
    images.append(img[:, :h, :w].contiguous())
    targets.append(_target_from_masks(t["masks"][:, :h, :w].contiguous(), t["labels"]))
    return images, targets


def compute_trained(model: nn.Module, device: torch.device | str = "cpu",
                    dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """The model's settings, every detection per input image (eval mode) and the train-mode losses (samplers
    seeded)."""
    device = torch.device(device)
    images, targets = trained_inputs()
    model = model.to(device=device, dtype=dtype).eval()
    imgs = [i.to(device=device, dtype=dtype) for i in images]
    with torch.inference_mode():
        outputs = [{k: v.to("cpu", torch.float64) for k, v in o.items()} for o in model(imgs)]
    # train mode updates BatchNorm statistics: a copy keeps the caller's model as it was
    trainee = copy.deepcopy(model).train()
    tgts = [{k: (v.to(device=device, dtype=dtype) if v.is_floating_point() else v.to(device)) for k, v in t.items()}
            for t in targets]
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)  # the samplers of the RPN and RoI heads draw from the global RNG
        with torch.no_grad():
            losses = {k: float(v) for k, v in trainee(imgs, tgts).items()}
    return {"model": TRAINED_NAME, "score_floor": score_floor_of(model), "config": model_config(model),
            "images": [detections_record(o) for o in outputs], "losses": losses}  # config after the forward


def compare_trained(expected: dict[str, Any], actual: dict[str, Any],
                    tol: Tolerances = TRAINED_TOLERANCES, loss_rtol: float | None = LOSS_RTOL) -> list[str]:
    """Readable differences between the stored trained record ``expected`` and a fresh one ``actual``: the
    model's settings and the image count; per image, detections paired and checked (boxes, scores, masks, lost
    and new, count); then the losses (``loss_rtol`` None: not compared) and any loss the record lacks. Empty
    when everything agrees within tolerance."""
    diffs: list[str] = []
    for path, stored in expected["config"].items():
        if actual["config"].get(path) != stored:
            diffs.append(f"setting {path}: stored {stored}, now {actual['config'].get(path)}")
    if len(actual["images"]) != len(expected["images"]):
        diffs.append(f"{len(actual['images'])} images computed, {len(expected['images'])} stored")
    for i, (a, e) in enumerate(zip(actual["images"], expected["images"])):
        d = compare_detections(e, a, tol, expected["score_floor"], index=i)
        diffs += d.failures()
        if abs(d.count_delta) > len(d.borderline):
            diffs.append(f"image {i}: {d.actual_count} detections, {d.expected_count} stored "
                         f"({len(d.borderline)} borderline)")
    for k, v in (expected["losses"] if loss_rtol is not None else {}).items():
        got = actual["losses"].get(k)
        if got is None or abs(got - v) > loss_rtol * abs(v):
            diffs.append(f"loss {k}: expected {v:.6f}, got {got} (rtol {loss_rtol})")
    extra = set(actual["losses"]) - set(expected["losses"])
    if extra:
        diffs.append(f"losses not stored: {sorted(extra)}")
    return diffs


def drift(actual: dict[str, Any], expected: dict[str, Any]) -> dict[str, float]:
    """The largest drift of each compared quantity (for measuring tolerances): box px, score, 1 - mask IoU,
    relative loss, unpaired detections."""
    loose = Tolerances(match_iou=0.5, box_atol=1e9, score_atol=0.0, mask_iou_min=0.0, ap_atol=1e9)
    out = {"box_px": 0.0, "score": 0.0, "mask_1_minus_iou": 0.0, "loss_rel": 0.0, "unpaired": 0}
    for a, e in zip(actual["images"], expected["images"]):
        d = compare_detections(e, a, loose, None)
        out["box_px"] = max(out["box_px"], d.max_box_drift)
        out["score"] = max(out["score"], d.max_score_drift)
        out["mask_1_minus_iou"] = max(out["mask_1_minus_iou"], 1 - (d.min_mask_iou if d.min_mask_iou is not None
                                                                     else 1.0))
        out["unpaired"] += len(d.lost) + len(d.new)
    for k, v in expected["losses"].items():
        out["loss_rel"] = max(out["loss_rel"], abs(actual["losses"].get(k, float("inf")) - v) / abs(v))
    return out


def save_trained_checkpoint(source: Path, path: Path | None = None) -> None:
    """Store a training checkpoint's model as the golden weights: float16, no optimizer state."""
    from ..training.checkpoint import load_checkpoint, save_checkpoint

    state = load_checkpoint(source)
    save_checkpoint(path or trained_checkpoint(), {
        "model_name": state["model_name"], "num_classes": state["num_classes"], "recipe": state.get("recipe"),
        "epoch": state.get("epoch"), "seed": state.get("seed"),
        "model": {k: v.half() if v.is_floating_point() else v for k, v in state["model"].items()}})


def golden_dir() -> Path:
    return fixtures_dir() / "golden"


def path_for(name: str, folder: Path | None = None) -> Path:
    return (folder or golden_dir()) / f"{name}.json"


def save(record: dict[str, Any], path: Path) -> None:
    atomic_write_json(path, {**record, "torch": torch.__version__, "torchvision": torchvision.__version__})


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reference.testing.golden",
                                description="Regenerate golden outputs, or measure how far this install drifts "
                                "from them.")
    p.add_argument("--out", default=str(golden_dir()))
    p.add_argument("--models", nargs="*", default=list(BUILDERS), choices=list(BUILDERS),
                   help="architecture records to regenerate (default: all builders)")
    p.add_argument("--weights-from", type=Path, help="a training checkpoint to store as the trained weights first")
    p.add_argument("--no-trained", action="store_true", help="leave the trained record as it is")
    p.add_argument("--drift", action="store_true", help="write nothing; print this install's largest drift from "
                   "the stored trained record as JSON")
    a = p.parse_args(argv)
    out = Path(a.out)
    if a.drift:
        stored = json.loads(path_for(TRAINED_NAME, out).read_text())
        actual = compute_trained(trained_model(out / f"{TRAINED_NAME}.pt"))
        print(json.dumps({"torch": torch.__version__, "torchvision": torchvision.__version__,
                          "threads": torch.get_num_threads(), **drift(actual, stored)}))
        return 0
    if a.weights_from:
        save_trained_checkpoint(a.weights_from, out / f"{TRAINED_NAME}.pt")
    if not a.no_trained:
        record = compute_trained(trained_model(out / f"{TRAINED_NAME}.pt"))
        save(record, path_for(TRAINED_NAME, out))
        print(f"{TRAINED_NAME}: " + ", ".join(f"{len(im['scores'])} detections" for im in record["images"]))
    for name in a.models:
        record = compute(golden_model(name), name)
        save(record, path_for(name, out))
        print(f"{name}: {sum(o['count'] for o in record['outputs'])} detections, losses "
              f"{ {k: round(v, 4) for k, v in record['losses'].items()} }")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
