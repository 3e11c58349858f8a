"""The main job and its parts, as functions the CLI and the tests share: train, evaluate, predict, demo.

Library code: results are returned, files written atomically, progress reported through ``logging``.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from . import distributed
from .checkpoint import CheckpointError, load_checkpoint
from .coco_eval import CocoResult
from .contract import Report, validate_dataset
from .datasets import open_dataset
from .engine import evaluate, predict
from .gate import GateUnavailable, check_gate, gate_for
from .models import build_model
from .paths import fixtures_dir
from .render import save_png, side_by_side
from .report import build_report, write_report
from .training import FitConfig, FitResult, Recipe, fit, get_recipe, make_loader, transforms_for

log = logging.getLogger(__name__)


class JobError(ValueError):
    """Bad input to a job (unknown names, unusable device, data of the wrong layout); exit code 2."""


def resolve_device(name: str) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise JobError("--device cuda: CUDA is not available on this machine")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise JobError("--device mps: MPS is not available on this machine")
    if name not in ("cpu", "cuda", "mps") and not name.startswith("cuda:"):
        raise JobError(f"--device {name!r}: choose cpu, cuda or mps")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _open(root: Path, fmt: str | None, recipe: Recipe, train: bool, classes: list[str] | None = None):
    try:
        return open_dataset(root, fmt, transforms_for(recipe, train), classes)
    except ValueError as exc:
        raise JobError(str(exc)) from exc


def split_datasets(data: Path, fmt: str | None, recipe: Recipe, seed: int) -> tuple[Dataset, Dataset, int]:
    """Train and validation datasets, and the class count (background included).

    A folder with ``train/`` and ``val/`` inside is used as given; a single folder is split as the tutorial
    does it (a seeded permutation, the last ``min(50, len // 5)`` samples held out).
    """
    if (data / "train").is_dir() and (data / "val").is_dir():
        train = _open(data / "train", fmt, recipe, True)
        classes = getattr(train, "class_names", None)
        val = _open(data / "val", fmt, recipe, False, classes)
    else:
        train_all = _open(data, fmt, recipe, True)
        val_all = _open(data, fmt, recipe, False)
        order = torch.randperm(len(train_all), generator=torch.Generator().manual_seed(seed)).tolist()
        held = max(1, min(50, len(order) // 5))
        train, val = Subset(train_all, order[:-held]), Subset(val_all, order[-held:])
    base = train.dataset if isinstance(train, Subset) else train
    num_classes = _num_classes(base)
    return train, val, num_classes


def _num_classes(ds: Any) -> int:
    if hasattr(ds, "classes"):
        return len(ds.classes)
    if hasattr(ds, "class_to_idx"):
        return len(ds.class_to_idx)
    return 2  # PennFudan: person + background


@dataclass
class TrainOptions:
    data: Path
    out: Path
    model: str = "small_maskrcnn"
    recipe: str = "ci"
    fmt: str | None = None
    weights: str | None = None
    epochs: int | None = None
    seed: int = 0
    device: str = "cpu"
    amp: bool = False
    resume: Path | None = None
    print_freq: int = 10
    group_factor: int = -1


def run_train(opts: TrainOptions, on_epoch=None) -> tuple[FitResult, dict[str, Any]]:
    """Train per ``opts`` and write the report; returns the fit result and the report dict."""
    try:
        recipe = get_recipe(opts.recipe)
    except ValueError as exc:
        raise JobError(str(exc)) from exc
    device = resolve_device(opts.device)
    if not opts.data.is_dir():
        raise JobError(f"--data {opts.data}: no such folder")
    dist = distributed.init_from_env(device)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    seed_everything(opts.seed)
    train, val, num_classes = split_datasets(opts.data, opts.fmt, recipe, opts.seed)
    try:
        model = build_model(opts.model, num_classes, opts.weights)
    except (ValueError, FileNotFoundError) as exc:
        raise JobError(str(exc)) from exc
    cfg = FitConfig(opts.model, num_classes, recipe, opts.epochs or recipe.epochs, opts.seed, str(device),
                    opts.amp, opts.print_freq, group_factor=opts.group_factor)
    try:
        result = fit(model, train, val, cfg, opts.out, resume=opts.resume, on_epoch=on_epoch)
    except CheckpointError as exc:
        raise JobError(str(exc)) from exc
    meta = {"title": f"{opts.model} / {opts.recipe}", "model": opts.model, "recipe": opts.recipe,
            "data": str(opts.data), "epochs_run": cfg.epochs, "seed": opts.seed, "device": str(device),
            "num_classes": num_classes}
    report = build_report(result, meta)
    return result, report


def run_gate(recipe: str = "ci", seed: int = 0, epochs: int | None = None) -> CocoResult:
    """The accuracy gate's run: the recipe's small Mask R-CNN trained from random weights on the bundled data,
    evaluated once at the end on the bundled validation split.

    The same training as ``tvref demo`` with the same seed (the demo's per-epoch validation runs on a forked
    RNG and does not change the weights), without the per-epoch validation passes.
    """
    import tempfile

    data = fixtures_dir() / "pennfudan"
    rec = get_recipe(recipe)
    seed_everything(seed)
    train, val, num_classes = split_datasets(data, None, rec, seed)
    model = build_model("small_maskrcnn", num_classes)
    cfg = FitConfig("small_maskrcnn", num_classes, rec, epochs or rec.epochs, seed, "cpu", print_freq=10**9)
    with tempfile.TemporaryDirectory(prefix="tvref-gate-") as tmp:
        fit(model, train, None, cfg, tmp)
    return evaluate(model, make_loader(val, 4, train=False, seed=seed, epoch=0), "cpu")


def load_model(checkpoint: Path, device: torch.device):
    """The model a checkpoint was trained as, with its weights; refuses files that are not checkpoints."""
    try:
        state = load_checkpoint(checkpoint)
        model = build_model(state["model_name"], int(state["num_classes"]))
        model.load_state_dict(state["model"])
    except (CheckpointError, KeyError, ValueError, RuntimeError) as exc:
        raise JobError(str(exc).splitlines()[0]) from exc
    return model.to(device).eval(), state


def run_evaluate(checkpoint: Path, data: Path, fmt: str | None, device: str, backend: str) -> CocoResult:
    dev = resolve_device(device)
    model, state = load_model(checkpoint, dev)
    recipe = get_recipe(state.get("recipe", "ci"))
    ds = _open(data / "val" if (data / "val").is_dir() else data, fmt, recipe, False)
    classes = _num_classes(ds)
    if classes != int(state["num_classes"]):
        raise JobError(f"{data}: {classes} classes, the checkpoint's model has {state['num_classes']}")
    return evaluate(model, make_loader(ds, 4, train=False, seed=0, epoch=0), dev, backend=backend)


def run_predict(checkpoint: Path, image: Path, out: Path, score_threshold: float, mask_threshold: float,
                device: str = "cpu") -> int:
    """Draw the predictions for one image file; returns how many detections passed the threshold."""
    from torchvision.transforms.v2 import functional as F

    from .datasets.common import read_rgb
    from .render import draw_instances, with_caption

    dev = resolve_device(device)
    model, state = load_model(checkpoint, dev)
    try:
        img = read_rgb(image)
    except ValueError as exc:
        raise JobError(str(exc)) from exc
    x = F.to_dtype(img, torch.float32, scale=True)
    with torch.inference_mode():
        output = {k: v.cpu() for k, v in model([x.to(dev)])[0].items()}
    keep = output["scores"] >= score_threshold
    masks = output.get("masks")
    # Mask R-CNN pastes masks at the input resolution already; resize in case the input was transformed
    if masks is not None and tuple(masks.shape[-2:]) != tuple(img.shape[-2:]):
        masks = F.resize(masks, list(img.shape[-2:]))
    drawn = draw_instances(img, output["boxes"][keep], (masks[keep, 0] > mask_threshold) if masks is not None
                           else None, [f"{int(lab)} {float(s):.2f}" for lab, s in
                                       zip(output["labels"][keep], output["scores"][keep])], colors="orange",
                           scale=max(1, 480 // max(img.shape[-2:])))
    save_png(with_caption(drawn, [f"{int(keep.sum())} detections, score >= {score_threshold}"]), out)
    return int(keep.sum())


def write_prediction_pictures(checkpoint: Path, val: Dataset, out_dir: Path, count: int = 4) -> list[Path]:
    model, _ = load_model(checkpoint, torch.device("cpu"))
    loader = make_loader(Subset(val, list(range(min(count, len(val))))), 4, train=False, seed=0, epoch=0)
    paths = []
    for k, (target, output, _) in enumerate(predict(model, loader, "cpu")):
        image = val[k][0]
        p = out_dir / f"predictions_{k}.png"
        save_png(side_by_side(image, target, output, class_names=["background", "person"]), p)
        paths.append(p)
    return paths


def _demo_gate(final: CocoResult | None, epochs: int | None) -> tuple[list[str], bool | None]:
    """The gate's lines for the report, and whether it passed (None when it was not checked)."""
    if epochs is not None:
        return ["not checked: --epochs differs from the recipe"], None
    try:
        checks = check_gate(final, gate_for("ci"))
    except GateUnavailable as exc:
        return [f"not checked: {exc}"], None
    return [str(c) for c in checks], all(c.passed for c in checks)


def run_demo(out: Path, epochs: int | None = None, seed: int = 0, on_epoch=None) -> dict[str, Any]:
    """The main job on the bundled data: validate, train the small model, evaluate, report, draw."""
    data = fixtures_dir() / "pennfudan"
    validation: dict[str, Report] = {}
    for split in ("train", "val"):
        validation[split] = validate_dataset(open_dataset(data / split, "pennfudan"), num_classes=2)
        if not validation[split].ok:
            raise JobError(f"bundled data {data / split} breaks the contract:\n{validation[split].render_text()}")
    result, report = run_train(TrainOptions(data=data, out=out, epochs=epochs, seed=seed), on_epoch=on_epoch)
    report["validation"] = {k: v.to_dict()["summary"] for k, v in validation.items()}
    report["gate"], report["gate_passed"] = _demo_gate(result.final, epochs)
    paths = write_report(report, out)
    val = open_dataset(data / "val", "pennfudan", transforms_for(get_recipe("ci"), False))
    pictures = write_prediction_pictures(out / "last.pt", val, out)
    return {"report": report, "paths": {**{k: str(v) for k, v in paths.items()},
                                        "checkpoint": str(out / "last.pt"), "metadata": str(out / "checkpoint.json"),
                                        "pictures": [str(p) for p in pictures]}}
