"""A catalogue of realistic regressions, injected at runtime, to show that the suite goes red when results change.

Each is a small in-process monkeypatch of torchvision or ``reference`` (the kind of change a torch upgrade or a
careless edit brings). This file is both:

- a **pytest plugin**: with ``ci/`` on ``PYTHONPATH``, ``pytest -p regressions`` plus ``TVREF_REGRESSION=NAME``
  applies NAME in ``pytest_configure`` of every process (xdist workers too) and deselects, with a printed reason,
  the tests that cannot tell a catch from a harness artifact (see :data:`ARTIFACT_REASONS`).
- a **runner**: ``.venv/bin/python ci/regressions.py [NAME ...] [--list] [--json PATH] [--pytest-args "..."]``
  runs the default tier (``-x``) once per regression plus a clean run and prints ``name | category | result |
  first test that caught it | seconds`` and "N of M caught (P%)". pytest exit 0 = missed; a collection, internal
  or usage error = HARNESS ERROR (missed, output tail shown). Exit 0 iff the clean run is green and >= 95% caught.
  ``--gate-only`` runs the accuracy gate's tests alone (``-m gate``) instead of the tier: whether the gate by
  itself catches each regression (the training-quality category exists for it).

Patches replace the name the caller looks up at call time (``transform.paste_masks_in_image``, which
``GeneralizedRCNNTransform.postprocess`` calls, not ``roi_heads.paste_masks_in_image``); a missing target fails
loudly, naming it. All targets exist in torchvision 0.16.2, 0.20.1 and 0.29.1 unless a description says
otherwise. Patches live in the pytest process only: subprocesses a test starts (``torchrun``) do not see them.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import importlib.util
import inspect
import json
import os
import re
import shlex
import subprocess
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

ENV_VAR = "TVREF_REGRESSION"
ROOT = Path(__file__).resolve().parent.parent
DET = "torchvision.models.detection"
# Tests that cannot tell a catch from a harness artifact while a regression is injected: deselected, with the reason.
ARTIFACT_REASONS = {
    "torchscript": "torch.jit.script cannot compile a monkeypatched Python wrapper",
    "two_process_run": "compares processes started by torchrun, which lack the patch, with this patched process",
}
TV, CONTRACT, TRANSFORMS, ENGINE, EVALUATION, DATASETS, TRAINING = (
    "torchvision", "contract", "transforms", "engine", "evaluation", "datasets", "training quality")


@dataclass(frozen=True)
class Regression:
    name: str
    category: str
    description: str
    apply: Callable[[], None]


REGISTRY: list[Regression] = []


def regression(category: str, description: str) -> Callable[[Callable[[], None]], Callable[[], None]]:
    """Register the decorated function as a regression; the function's name is the regression's name."""
    def register(apply: Callable[[], None]) -> Callable[[], None]:
        REGISTRY.append(Regression(apply.__name__, category, description, apply))
        return apply
    return register


def get(name: str) -> Regression:
    found = [reg for reg in REGISTRY if reg.name == name]
    if not found:
        raise KeyError(f"unknown regression {name!r}; known: {', '.join(r.name for r in REGISTRY)}")
    return found[0]


# --- patch helpers -------------------------------------------------------------------------------------------

class RegressionTargetMissing(AttributeError):
    """A patch target does not exist, or is no longer what the regression expects, in the installed code."""


def _resolve(target: str) -> tuple[Any, str, Any]:
    """``"pkg.module:Class.attr"`` -> (owner, attribute name, current value); fails loudly when missing."""
    module_name, _, qualname = target.partition(":")
    *path, attr = qualname.split(".")
    owner = functools.reduce(lambda obj, part: getattr(obj, part, None), path, importlib.import_module(module_name))
    if owner is None or not hasattr(owner, attr):
        version = importlib.import_module("torchvision").__version__
        raise RegressionTargetMissing(f"patch target {target} does not exist (torchvision {version})")
    return owner, attr, getattr(owner, attr)


def _patch(target: str, make: Callable[[Any], Any], also_in: tuple[str, ...] = ()) -> None:
    """Replace ``target`` by ``make(original)``; ``also_in``: modules that imported the same object by name."""
    importers = [importlib.import_module(m) for m in also_in]  # imported first, so that they bind the original
    owner, attr, original = _resolve(target)
    new = make(original)
    setattr(owner, attr, new)
    for module in importers:
        if getattr(module, attr, None) is not original:
            raise RegressionTargetMissing(f"{module.__name__}.{attr} is not {target} any more")
        setattr(module, attr, new)


def _around(target: str, advice: Callable[..., Any], also_in: tuple[str, ...] = ()) -> None:
    """Replace ``target`` by a wrapper that returns ``advice(original, *args, **kwargs)``."""
    def make(original: Callable) -> Callable:
        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return advice(original, *args, **kwargs)
        return wrapper
    _patch(target, make, also_in)


def _forcing(target: str, also_in: tuple[str, ...] = (), **forced: Any) -> None:
    """``target`` called with these keyword arguments overridden."""
    _around(target, lambda original, *args, **kwargs: original(*args, **{**kwargs, **forced}), also_in)


def _after_init(cls_target: str, adjust: Callable[[Any], None]) -> None:
    """Run ``adjust(self)`` after the original ``__init__`` of ``cls_target``."""
    def init(original: Callable, self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        adjust(self)
    _around(f"{cls_target}.__init__", init)


def _default_changed(cls_target: str, attr_path: str, old: Any, new: Any) -> None:
    """After construction ``self.<attr_path>`` becomes ``new`` wherever it holds the default ``old``."""
    *parents, attr = attr_path.split(".")

    def adjust(self: Any) -> None:
        owner = functools.reduce(getattr, parents, self)
        if getattr(owner, attr) == old:
            setattr(owner, attr, new)
    _after_init(cls_target, adjust)


def _namespace_with(module: types.ModuleType, **overrides: Any) -> types.SimpleNamespace:
    """A stand-in for ``module`` under one importer's global name, with some attributes replaced."""
    return types.SimpleNamespace(**{**vars(module), **overrides})


def _drop_rule(check: str, code: str) -> None:
    """``reference.contract.checks.<check>`` silently stops reporting ``code``."""
    contract = importlib.import_module("reference.contract")
    if code not in contract.RULES:
        raise RegressionTargetMissing(f"reference.contract.RULES has no rule {code}")

    def without_rule(original: Callable, *args: Any) -> Any:
        collector = next(a for a in args if isinstance(a, contract.Collector))
        start = len(collector.items)
        result = original(*args)
        collector.items[start:] = [v for v in collector.items[start:] if v.code != code]
        return result
    _around(f"reference.contract.checks:{check}", without_rule)


def _flip_forgetting(key: str) -> None:
    """The legacy ``RandomHorizontalFlip`` flips everything but ``target[key]`` (same random draw)."""
    def flip(forward: Callable, self: Any, image: Any, target: Any = None) -> Any:
        if target is None or key not in target:
            return forward(self, image, target)
        image, out = forward(self, image, {k: v for k, v in target.items() if k != key})
        return image, {k: target[key] if k == key else out[k] for k in target}
    _around("reference.transforms.legacy:RandomHorizontalFlip.forward", flip)


def _ground_truth_add(edit_target: Callable[[dict], None] | None = None,
                      edit_added: Callable[[list[dict]], None] | None = None) -> None:
    """``GroundTruth.add`` with the target edited before, or the annotations it appended edited after."""
    def add(original: Callable, self: Any, image_id: int, height: int, width: int, target: Any) -> None:
        start = len(self.annotations)
        if edit_target is not None:
            target = dict(target)
            edit_target(target)
        original(self, image_id, height, width, target)
        if edit_added is not None:
            edit_added(self.annotations[start:])
    _around("reference.engine.coco_eval:GroundTruth.add", add)


# --- torchvision: numerics and configuration -----------------------------------------------------------------

# Defaults torchvision builds the detection models with, changed after construction, only where an instance holds
# the default (as a changed default would): (name, "torchvision.<module>:Class", attribute path, default, drifted).
_RH, _RPN = "models.detection.roi_heads:RoIHeads", "models.detection.rpn:RegionProposalNetwork"
_DEFAULTS = [
    ("box_score_thresh_raised", _RH, "score_thresh", 0.05, 0.2),
    ("box_nms_thresh_raised", _RH, "nms_thresh", 0.5, 0.6),
    ("detections_per_img_halved", _RH, "detections_per_img", 100, 50),
    ("roi_box_coder_weights", _RH, "box_coder.weights", (10.0, 10.0, 5.0, 5.0), (10.0,) * 4),
    ("roi_fg_iou_raised", _RH, "proposal_matcher.high_threshold", 0.5, 0.6),
    ("roi_positive_fraction_raised", _RH, "fg_bg_sampler.positive_fraction", 0.25, 0.5),
    ("rpn_nms_thresh_lowered", _RPN, "nms_thresh", 0.7, 0.6),
    ("size_divisible_16", "models.detection.transform:GeneralizedRCNNTransform", "size_divisible", 32, 16),
    ("roi_align_sampling_ratio_1", "ops.poolers:MultiScaleRoIAlign", "sampling_ratio", 2, 1),
    ("level_mapper_canonical_256", "ops.poolers:LevelMapper", "s0", 224, 256),  # RoIs move to finer FPN levels
]
REGISTRY += [Regression(name, TV, f"{cls.partition(':')[2]}.{attr} default {old} -> {new}",
                        functools.partial(_default_changed, f"torchvision.{cls}", attr, old, new))
             for name, cls, attr, old, new in _DEFAULTS]

REGISTRY += [Regression(*row) for row in [  # one-line patches: (name, category, description, apply)
    ("paste_masks_padding_0", TV, "transform.paste_masks_in_image pastes with padding 0 instead of 1",
     lambda: _forcing(f"{DET}.transform:paste_masks_in_image", padding=0)),
    ("normalize_std_flat", TV, "GeneralizedRCNNTransform normalises with std 0.25 for every channel",
     lambda: _after_init(f"{DET}.transform:GeneralizedRCNNTransform", lambda t: setattr(t, "image_std", [0.25] * 3))),
    ("roi_align_aligned", TV, "MultiScaleRoIAlign calls roi_align with aligned=True (half-pixel offset)",
     lambda: _forcing("torchvision.ops.poolers:roi_align", aligned=True)),
    ("mask_probs_thresholded", TV, "maskrcnn_inference returns masks thresholded at 0.5, not probabilities",
     lambda: _around(f"{DET}.roi_heads:maskrcnn_inference",
                     lambda inference, x, labels: [(p > 0.5).to(p.dtype) for p in inference(x, labels)])),
    ("resize_boxes_ratios_swapped", TV, "transform.resize_boxes scales x by the height ratio, y by the width ratio",
     lambda: _around(f"{DET}.transform:resize_boxes", lambda orig, boxes, old, new: orig(boxes, old[::-1], new[::-1]))),
]]


@regression(TV, "GeneralizedRCNNTransform normalises with the ImageNet mean and std in BGR order")
def normalize_bgr_order() -> None:
    def reverse(self: Any) -> None:
        self.image_mean, self.image_std = list(self.image_mean)[::-1], list(self.image_std)[::-1]
    _after_init(f"{DET}.transform:GeneralizedRCNNTransform", reverse)


@regression(TV, "_resize_image_and_masks rounds the scale factor to one decimal (1.25 -> 1.2, 1.333 -> 1.3)")
def resize_scale_rounded() -> None:
    def rounded(resize: Callable, image: Any, min_size: float, max_size: float, target: Any = None,
                fixed_size: Any = None) -> Any:
        if fixed_size is None:
            h, w = (int(s) for s in image.shape[-2:])
            scale = round(min(min_size / min(h, w), max_size / max(h, w)), 1)
            fixed_size = (int(w * scale), int(h * scale))  # (width, height), as torchvision takes it
        return resize(image, min_size, max_size, target, fixed_size)
    _around(f"{DET}.transform:_resize_image_and_masks", rounded)


@regression(TV, "AnchorGenerator cell anchors 1.1x the configured sizes (.sizes itself unchanged)")
def anchor_sizes_scaled() -> None:
    def scale(self: Any) -> None:
        self.cell_anchors = [self.generate_anchors([s * 1.1 for s in size], ratios)
                             for size, ratios in zip(self.sizes, self.aspect_ratios)]
    _after_init(f"{DET}.anchor_utils:AnchorGenerator", scale)


@regression(TV, "AnchorGenerator reads aspect ratios as width/height instead of height/width")
def anchor_ratios_inverted() -> None:
    def inverted(generate: Callable, self: Any, scales: Any, ratios: Any, *args: Any, **kwargs: Any) -> Any:
        return generate(self, scales, [1.0 / float(r) for r in ratios], *args, **kwargs)
    _around(f"{DET}.anchor_utils:AnchorGenerator.generate_anchors", inverted)


@regression(TV, "fastrcnn_loss divides the box loss by the number of positives instead of labels.numel()")
def fastrcnn_box_loss_per_positive() -> None:
    def per_positive(loss: Callable, logits: Any, box_regression: Any, labels: Any, targets: Any) -> Any:
        cls_loss, box_loss = loss(logits, box_regression, labels, targets)
        positives = sum(int((lab > 0).sum()) for lab in labels)
        return cls_loss, box_loss * sum(int(lab.numel()) for lab in labels) / max(positives, 1)
    _around(f"{DET}.roi_heads:fastrcnn_loss", per_positive)


@regression(TV, "RPN box regression smooth-L1 beta 1/9 -> 1.0 (rpn.py's F.smooth_l1_loss)")
def rpn_smooth_l1_beta() -> None:
    _patch(f"{DET}.rpn:F", lambda F: _namespace_with(
        F, smooth_l1_loss=lambda *a, **k: F.smooth_l1_loss(*a, **{**k, "beta": 1.0})))


@regression(TV, "RPN post-NMS proposals kept at test time halved")
def rpn_post_nms_test_halved() -> None:
    def halve(self: Any) -> None:
        self._post_nms_top_n = {**self._post_nms_top_n, "testing": self._post_nms_top_n["testing"] // 2}
    _after_init(f"{DET}.rpn:RegionProposalNetwork", halve)


# --- the contract, transforms ----------------------------------------------------------------------------------

REGISTRY += [Regression(f"contract_drops_{code.lower()}", CONTRACT, f"{code} silently no longer reported ({check})",
                        functools.partial(_drop_rule, check, code))
             for check, code in (("check_boxes", "BOX_DEGENERATE"), ("check_labels", "LABEL_BACKGROUND"),
                                 ("check_masks", "MASKS_VALUES"), ("check_counts", "COUNT_MISMATCH"))]

REGISTRY += [Regression(*row) for row in [
    ("legacy_flip_forgets_masks", TRANSFORMS, "legacy RandomHorizontalFlip flips image and boxes, not the masks",
     functools.partial(_flip_forgetting, "masks")),
    ("legacy_flip_forgets_keypoints", TRANSFORMS, "legacy RandomHorizontalFlip flips image and boxes, not the "
     "keypoints", functools.partial(_flip_forgetting, "keypoints")),
    ("sanitize_forgets_area_iscrowd", TRANSFORMS, "v2 SanitizeBoundingBoxes filters labels but not area/iscrowd "
     "(_labels_getter; torchvision >= 0.17 only: 0.16 uses _SanitizeInstances)",
     lambda: _around("reference.transforms:_labels_getter", lambda getter, sample: getter(sample)[:1])),
    ("rescale_forgets_area_keypoints", TRANSFORMS, "legacy ScaleJitter/RandomShortestSize leave area, keypoints "
     "unscaled", lambda: _around("reference.transforms.legacy:_rescale", lambda orig, *a: orig(*a[:4], False))),
]]


@regression(TRANSFORMS, "legacy RandomIoUCrop keeps area/iscrowd of every box, neither filtered nor recomputed")
def iou_crop_stale_area_iscrowd() -> None:
    def stale(crop: Callable, self: Any, image: Any, target: dict, *args: Any) -> Any:
        image, out = crop(self, image, target, *args)
        return image, {**out, **{k: target[k] for k in ("area", "iscrowd") if k in target}}
    _around("reference.transforms.legacy:RandomIoUCrop._crop", stale)


# --- the engine ------------------------------------------------------------------------------------------------

def _warmup(start_factor: float, extra_iterations: int) -> None:
    """``reference.engine.loops.warmup_scheduler`` with another start factor or length."""
    import torch

    def warmup(original: Callable, optimizer: Any, iterations: int) -> Any:
        return torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=start_factor,
                                                 total_iters=min(1000, iterations - 1 + extra_iterations))
    _around("reference.engine.loops:warmup_scheduler", warmup)


REGISTRY += [Regression(*row) for row in [
    ("warmup_factor_1_100", ENGINE, "epoch-0 warmup starts at 1/100 of the learning rate instead of 1/1000",
     functools.partial(_warmup, 1.0 / 100, 0)),
    ("warmup_iters_off_by_one", ENGINE, "epoch-0 warmup lasts min(1000, len(loader)) iterations, not len - 1",
     functools.partial(_warmup, 1.0 / 1000, 1)),
]]


@regression(ENGINE, "train_one_epoch backpropagates (and logs) the mean of the loss dict instead of its sum")
def loss_mean_not_sum() -> None:
    engine = importlib.import_module("reference.engine.loops")
    if "sum(loss for loss in loss_dict.values())" not in inspect.getsource(engine.train_one_epoch):
        raise RegressionTargetMissing("reference.engine.loops.train_one_epoch no longer sums loss_dict with sum()")

    def mean(values: Any, start: Any = 0) -> Any:
        values = list(values)
        return sum(values, start) / max(len(values), 1)
    engine.sum = mean  # a module global shadows the builtin, for engine.py only


@regression(ENGINE, "gradients accumulate across iterations (optimizer.zero_grad dropped in train_one_epoch)")
def zero_grad_dropped() -> None:
    def accumulating(train: Callable, model: Any, optimizer: Any, *args: Any, **kwargs: Any) -> Any:
        optimizer.zero_grad = lambda *a, **k: None  # an instance attribute shadows the method
        try:
            return train(model, optimizer, *args, **kwargs)
        finally:
            del optimizer.zero_grad
    _around("reference.engine.loops:train_one_epoch", accumulating, also_in=("reference.training.fit",))


@regression(ENGINE, "fit's per-epoch LR scheduler (step, cosine) advances twice per epoch")
def epoch_scheduler_stepped_twice() -> None:
    def twice(make_scheduler: Callable, recipe: Any, *args: Any) -> Any:
        scheduler = make_scheduler(recipe, *args)
        if recipe.schedule != "onecycle":
            base = type(scheduler)

            def step(self: Any, *a: Any, **k: Any) -> None:
                base.step(self, *a, **k)
                base.step(self, *a, **k)
            scheduler.__class__ = type(base.__name__, (base,), {"step": step})  # state_dict stays picklable
        return scheduler
    _around("reference.training.fit:make_scheduler", twice)


# --- evaluation ------------------------------------------------------------------------------------------------

REGISTRY += [Regression(*row) for row in [
    ("mask_threshold_0_4", EVALUATION, "predicted masks binarised at 0.4 instead of 0.5 for segm scoring",
     lambda: _forcing("reference.engine.coco_eval:detections_to_coco", ("reference.engine.loops",),
                      mask_threshold=0.4)),
    ("gt_iscrowd_dropped", EVALUATION, "ground-truth iscrowd dropped (crowd regions become ordinary objects)",
     lambda: _ground_truth_add(edit_target=lambda target: target.update(iscrowd=target["iscrowd"] * 0))),
]]


@regression(EVALUATION, "detections reach COCO as XYXY instead of XYWH (ground truth still XYWH)")
def detections_xyxy() -> None:
    def xyxy(to_coco: Callable, image_id: int, output: Any, iou_type: str, *args: Any, **kwargs: Any) -> Any:
        dets = to_coco(image_id, output, iou_type, *args, **kwargs)
        if iou_type == "bbox":
            for det, box in zip(dets, output["boxes"].tolist()):
                det["bbox"] = box
        return dets
    _around("reference.engine.coco_eval:detections_to_coco", xyxy, also_in=("reference.engine.loops",))


@regression(EVALUATION, "ground-truth area taken from the mask instead of the target's area (a box area here)")
def gt_area_from_mask() -> None:
    def mask_area(target: dict) -> None:
        if target.get("masks") is not None:
            target["area"] = target["masks"].sum(dim=(-1, -2)).float()
    _ground_truth_add(edit_target=mask_area)


@regression(EVALUATION, "ground-truth annotation ids start at 0 (pycocotools reads id 0 as 'unmatched')")
def gt_ann_ids_from_zero() -> None:
    def shift(added: list[dict]) -> None:
        for ann in added:
            ann["id"] -= 1
    _ground_truth_add(edit_added=shift)


# --- datasets --------------------------------------------------------------------------------------------------

REGISTRY.append(Regression(
    "masks_plain_tensor", DATASETS, "the targets' masks are plain tensors, not tv_tensors.Mask, so v2 flips "
    "leave them", lambda: _patch("reference.data.records:tv_tensors",
                                 lambda tvt: _namespace_with(tvt, Mask=lambda data: data))))


@regression(DATASETS, "PennFudan boxes one pixel wider (x2 + 1), area recomputed from them")
def pennfudan_x2_plus_1() -> None:
    box_area = importlib.import_module("torchvision.ops").box_area

    def wider(make_target: Callable, self: Any, idx: int, record: Any) -> Any:
        target = make_target(self, idx, record)
        boxes = target["boxes"].clone()
        boxes[:, 2] += 1
        return {**target, "boxes": boxes, "area": box_area(boxes)}
    _around("reference.data.pennfudan:PennFudanDataset._target", wider)


@regression(DATASETS, "PennFudan takes the background id 0 as an instance (torch.unique(mask) without [1:])")
def pennfudan_background_instance() -> None:
    import torch

    def with_background(instance_ids: Callable, ids: Any) -> Any:
        found = instance_ids(ids)
        return torch.cat([found.new_zeros(1), found]) if bool((ids == 0).any()) else found
    _around("reference.data.pennfudan:instance_ids", with_background)


@regression(DATASETS, "COCO category ids mapped to labels from 0 instead of 1")
def coco_labels_from_zero() -> None:
    def shift(self: Any) -> None:
        self.cat_id_to_label = {c: label - 1 for c, label in self.cat_id_to_label.items()}
        self.label_to_cat_id = {label: c for c, label in self.cat_id_to_label.items()}
    _after_init("reference.data.coco:CocoInstancesDataset", shift)


@regression(DATASETS, "LabelMe class names mapped to labels from 0 instead of 1")
def labelme_labels_from_zero() -> None:
    def shifted(parse: Callable, self: Any, path: Any) -> Any:
        entry = parse(self, path)
        return dataclasses.replace(entry, labels=tuple(label - 1 for label in entry.labels))
    _around("reference.data.labelme:LabelMeDataset._parse", shifted)


# --- training quality: the demo's fine-tuning recipe changed, the model code untouched ---------------------------
# What the accuracy gate exists for: the goldens and the snapshot check inference of fixed weights and cannot see
# a training run go worse. The gate's own test is spec_tests/app/test_demo.py::test_demo_lands_within_the_accuracy_gate.

def _demo_recipe(**changes: Any) -> None:
    """``reference.training.fit.RECIPES["ci"]`` (the demo's and the gate's recipe) with ``changes``."""
    training = importlib.import_module("reference.training.fit")
    training.RECIPES["ci"] = dataclasses.replace(training.RECIPES["ci"], **changes)


def _demo_recipe_scaled(field: str, factor: float) -> None:
    recipe = importlib.import_module("reference.training.fit").RECIPES["ci"]
    _demo_recipe(**{field: type(getattr(recipe, field))(getattr(recipe, field) * factor)})


REGISTRY += [Regression(*row) for row in [
    ("lr_halved", TRAINING, "the demo's learning rate halved",
     functools.partial(_demo_recipe_scaled, "lr", 0.5)),
    ("lr_doubled", TRAINING, "the demo's learning rate doubled",
     functools.partial(_demo_recipe_scaled, "lr", 2.0)),
    ("one_epoch_fewer", TRAINING, "the demo trains one epoch fewer",
     lambda: _demo_recipe(epochs=importlib.import_module("reference.training.fit").RECIPES["ci"].epochs - 1)),
    ("weight_decay_x100", TRAINING, "the demo's weight decay 100 times larger",
     functools.partial(_demo_recipe_scaled, "weight_decay", 100.0)),
    ("mask_loss_halved", TRAINING, "Mask R-CNN's mask loss weighted 0.5 (roi_heads.maskrcnn_loss halved)",
     lambda: _around(f"{DET}.roi_heads:maskrcnn_loss", lambda original, *a, **k: 0.5 * original(*a, **k))),
    ("flip_lost", TRAINING, "the demo's training transforms lose their horizontal flip",
     lambda: _patch("reference.transforms:PRESETS", lambda presets: {
         **presets, "tutorial": lambda train: presets["tutorial"](False)})),
]]


# --- the pytest plugin -----------------------------------------------------------------------------------------

def pytest_configure(config: Any) -> None:
    """Apply the regression named by ``TVREF_REGRESSION`` (in the controller and in every xdist worker)."""
    name = os.environ.get(ENV_VAR)
    if not name:
        return
    import pytest

    try:
        get(name).apply()
    except (KeyError, RegressionTargetMissing) as exc:
        raise pytest.UsageError(f"regression {name} cannot be injected: {exc.args[0]}") from exc


def _artifact(item: Any) -> str | None:
    """Why ``item`` cannot tell a catch from a harness artifact (a name with ``torchscript``, a test using the
    ``two_process_run`` fixture), or None."""
    if "torchscript" in item.name.lower():
        return "torchscript"
    return "two_process_run" if "two_process_run" in getattr(item, "fixturenames", ()) else None


def pytest_collection_modifyitems(config: Any, items: list) -> None:
    """With a regression injected, deselect the tests that cannot tell a catch from a harness artifact."""
    if not os.environ.get(ENV_VAR):
        return
    deselected = [item for item in items if _artifact(item)]
    if not deselected:
        return
    items[:] = [item for item in items if not _artifact(item)]
    config.hook.pytest_deselected(items=deselected)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:  # None in an xdist worker: the controller's summary says it
        reporter.write_line(f"regressions: deselected {', '.join(item.name for item in deselected)}: "
                            + "; ".join(ARTIFACT_REASONS.values()) + " (harness artifacts, not catches)")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    name = os.environ.get(ENV_VAR)
    if name:
        under_xdist = config.pluginmanager.hasplugin("dsession")  # the workers deselected, silently
        terminalreporter.write_line(f"regressions: {name} injected ({get(name).description})" + (
            f"; deselected tests: {', '.join(ARTIFACT_REASONS)} ({'; '.join(ARTIFACT_REASONS.values())})"
            if under_xdist else ""))


# --- the runner ------------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    name: str
    category: str
    result: str  # caught / missed / HARNESS ERROR; green / RED for the clean run
    first_failure: str
    seconds: float
    exit_code: int


def default_markers() -> str:
    """The default tier's ``-m`` expression, as ``pyproject.toml``'s addopts set it."""
    import tomllib

    addopts = shlex.split(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
                          ["addopts"])
    return addopts[addopts.index("-m") + 1]


def build_command(extra: str, clean: bool, markers: str | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "regressions", "-p", "no:randomly",
           "-p", "no:cacheprovider"] + ([] if clean else ["-x"]) + (["-m", markers] if markers else [])
    if importlib.util.find_spec("xdist") is not None:
        cmd += ["-n", "2", "--dist", "loadfile", "--no-loadscope-reorder"]
    elif importlib.util.find_spec("pytest_benchmark") is not None:
        cmd += ["--benchmark-skip"]  # as under xdist, where the benchmarks skip themselves
    return cmd + shlex.split(extra)


def first_failure(output: str) -> str:
    """The node id of the first ``FAILED nodeid - msg`` / ``ERROR nodeid`` line of pytest's short summary."""
    match = re.search(r"^(?:FAILED|ERROR) (\S+)", output, re.MULTILINE)
    return match.group(1) if match else ""


def verdict(exit_code: int, output: str) -> bool | None:
    """True: a test failed; False: green; None: a harness error (collection, internal, usage, no tests). xdist
    ends a ``-x`` run stopped by a failure with exit 2, so 2 with a failed test and no collection error is True."""
    if exit_code in (0, 1):
        return bool(exit_code)
    return True if exit_code == 2 and "::" in first_failure(output) and "during collection" not in output else None


def run_one(reg: Regression | None, extra: str, gate_only: bool = False) -> Outcome:
    """One pytest run: ``reg`` injected, or clean (no ``-x``, no variable) when ``reg`` is None; ``gate_only``:
    the accuracy gate's tests alone."""
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "ci"), os.environ.get("PYTHONPATH", "")) if p)
    if reg is not None:
        env[ENV_VAR] = reg.name
    start = time.perf_counter()
    if gate_only:
        proc = subprocess.run(build_command(extra, reg is None, f"{default_markers()} and gate"), cwd=ROOT, env=env,
                              capture_output=True, text=True)
    elif reg is None:
        proc = subprocess.run(build_command(extra, clean=True), cwd=ROOT, env=env, capture_output=True, text=True)
    else:
        # the default tier in two passes, so that a catch does not wait for the gate's minute of training: every
        # test but the gate's training first (stopping at the first failure), then, if all passed, that one
        proc = subprocess.run(build_command(extra, False, f"{default_markers()} and not gate"), cwd=ROOT, env=env,
                              capture_output=True, text=True)
        if proc.returncode == 0:
            proc = subprocess.run(build_command(extra, False, f"{default_markers()} and gate"), cwd=ROOT, env=env,
                                  capture_output=True, text=True)
    seconds = time.perf_counter() - start
    output = proc.stdout + proc.stderr
    failed = verdict(proc.returncode, output)
    if failed is None:
        result = "HARNESS ERROR"
        print(f"--- {reg.name if reg else 'clean run'}: pytest exited {proc.returncode}; last lines:")
        print("\n".join(output.rstrip().splitlines()[-30:]))
    else:
        result = ("green", "RED")[failed] if reg is None else ("missed", "caught")[failed]
    return Outcome(reg.name if reg else "(clean run)", reg.category if reg else "-", result, first_failure(output),
                   seconds, proc.returncode)


def table(rows: list[Outcome]) -> str:
    cells = [("name", "category", "result", "first test that caught it", "seconds")]
    cells += [(o.name, o.category, o.result, o.first_failure or "-", f"{o.seconds:.1f}") for o in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return "\n".join(" | ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


_DRIFT_SCRIPT = """
import json, sys
sys.path.insert(0, {ci!r})
import regressions
regressions.get({name!r}).apply()
from reference.testing import golden
stored = json.loads(golden.path_for(golden.TRAINED_NAME).read_text())
print(json.dumps(golden.drift(golden.compute_trained(golden.trained_model()), stored)))
"""


def golden_drift(reg: Regression) -> dict[str, float] | None:
    """The largest drift of the trained golden record with ``reg`` applied (a fresh process), or None when the
    record cannot be computed under it."""
    proc = subprocess.run([sys.executable, "-c", _DRIFT_SCRIPT.format(ci=str(ROOT / "ci"), name=reg.name)],
                          cwd=ROOT, capture_output=True, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None


def print_golden_drift(chosen: list[Regression]) -> None:
    """What each regression does to the trained golden record, against the tolerances that guard it."""
    from reference.testing import golden

    tol = golden.TRAINED_TOLERANCES
    print(f"tolerances: box {tol.box_atol} px, score {tol.score_atol}, 1 - mask IoU {1 - tol.mask_iou_min:.3g}, "
          f"loss rel {golden.LOSS_RTOL}")
    print(f"{'regression':34} {'box px':>8} {'score':>8} {'1-maskIoU':>9} {'loss rel':>9} {'unpaired':>8}")
    for reg in chosen:
        d = golden_drift(reg)
        if d is None:
            print(f"{reg.name:34} (the record cannot be computed under it)")
            continue
        print(f"{reg.name:34} {d['box_px']:8.3f} {d['score']:8.5f} {d['mask_1_minus_iou']:9.4f} "
              f"{d['loss_rel']:9.2e} {d['unpaired']:8d}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the default test tier once per injected regression.")
    parser.add_argument("names", nargs="*", help="regressions to run (default: all, plus a clean run)")
    parser.add_argument("--list", action="store_true", help="list names, categories and descriptions")
    parser.add_argument("--golden-drift", action="store_true",
                        help="instead of running the tier: each regression's drift of the trained golden record")
    parser.add_argument("--gate-only", action="store_true",
                        help="run only the accuracy gate's tests (-m gate) for each regression: whether the gate "
                        "alone catches it")
    parser.add_argument("--json", type=Path, help="write the table as JSON to this file")
    parser.add_argument("--pytest-args", default="",
                        help='extra pytest arguments as one string (--pytest-args="-k x" when it starts with -)')
    args = parser.parse_args(argv)
    if args.list:
        for reg in REGISTRY:
            print(f"{reg.name:34} {reg.category:11} {reg.description}")
        return 0
    try:
        chosen = [get(n) for n in args.names] if args.names else list(REGISTRY)
    except KeyError as exc:
        parser.error(str(exc))
    if args.golden_drift:
        print_golden_drift(chosen)
        return 0
    if importlib.util.find_spec("xdist") is None:
        print("note: pytest-xdist is not installed; running without -n 2 (benchmarks skipped as under xdist)")
    outcomes = []
    runs: list[Regression | None] = ([] if args.names else [None]) + chosen  # None: the clean run, first
    for reg in runs:
        outcomes.append(run_one(reg, args.pytest_args, gate_only=args.gate_only))
        print(f"{outcomes[-1].name}: {outcomes[-1].result} {outcomes[-1].first_failure}", flush=True)
    clean = None if args.names else outcomes.pop(0)
    caught = sum(o.result == "caught" for o in outcomes)
    percent = 100.0 * caught / len(outcomes)
    print(table(outcomes + ([clean] if clean else [])))
    print(f"{caught} of {len(outcomes)} caught ({percent:.0f}%)" + (f"; clean run {clean.result}" if clean else ""))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "regressions": [dataclasses.asdict(o) for o in outcomes],
            "clean": dataclasses.asdict(clean) if clean else None,
            "caught": caught, "total": len(outcomes), "percent": percent}, indent=2))
    clean_ok = clean is None or clean.result == "green"
    return 0 if clean_ok and percent >= 95.0 else 1


if __name__ == "__main__":
    sys.exit(main())
