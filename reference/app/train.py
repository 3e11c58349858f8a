"""``tvref train``: everything that can be checked before training, then the training and its report."""

from __future__ import annotations

import dataclasses
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import Dataset, Subset

from ..engine import distributed
from ..engine.loops import NonFiniteLossError
from ..errors import JobError
from ..models import build_model, make_box_only, predicts_keypoints, predicts_masks
from ..reporting.run_report import build_report, write_report
from ..training.checkpoint import CheckpointError, load_checkpoint
from ..training.fit import FitConfig, FitResult, check_resumable, data_fingerprint, fit, get_recipe, planned_epochs
from .checkpoints import resolve_device
from .datasets import dataset_classes, dataset_root, split_datasets, target_keys
from .outputs import check_free_space, check_run_folder, check_writable_folder, checkpoint_bytes

__all__ = ["NonFiniteLossError", "TrainOptions", "TrainRun", "run_train", "train", "shown_epochs"]

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed Python's and torch's random sources."""
    random.seed(seed)
    torch.manual_seed(seed)


def fit_model_to_targets(model: torch.nn.Module, name: str, train: Dataset, val: Dataset | None) -> bool:
    """Fit the model built by name to what the training targets carry, or refuse in one line before training;
    returns whether the model was made box-only.

    Targets without masks (a COCO set of boxes only): a Mask R-CNN is made box-only
    (:func:`reference.models.make_box_only`), so it trains and predicts boxes and is evaluated on bbox only;
    said in one log line. Refused: a validation split without masks for a model trained on masks (its
    validation loss needs them), and a keypoint model on targets without keypoints.
    """
    keys = target_keys(train)
    if not keys:
        return False
    if predicts_keypoints(model) and "keypoints" not in keys:
        raise JobError(f"{dataset_root(train)}: the annotations have no keypoints, which --model {name} trains on; "
                       "choose a box or mask model (--model small_maskrcnn, fasterrcnn_resnet50_fpn)")
    if not predicts_masks(model):
        return False
    if "masks" not in keys:
        make_box_only(model)
        log.info("%s: the annotations have no masks: training %s as a box model (its mask branch removed); "
                 "evaluation reports bbox only", dataset_root(train), name)
        return True
    if val is not None and len(val) and "masks" not in target_keys(val):  # type: ignore[arg-type]
        raise JobError(f"{dataset_root(val)}: the annotations have no masks, but those of {dataset_root(train)} "
                       f"have: add segmentations to {dataset_root(val)}, or leave them out of "
                       f"{dataset_root(train)} to train a box model")
    return False


def crowd_regions(ds: Dataset) -> int:
    """How many crowd regions (``iscrowd`` not 0) the samples of ``ds`` hold, counted in the loader's annotation
    records (COCO's ``annotations``) without decoding an image; 0 for layouts without crowd regions."""
    base, indices = (ds.dataset, ds.indices) if isinstance(ds, Subset) else (ds, range(len(ds)))  # type: ignore
    records = getattr(base, "annotations", None)
    if not isinstance(records, list):
        return 0
    return sum(1 for i in indices for a in records[i] if isinstance(a, dict) and int(a.get("iscrowd") or 0) != 0)


def log_crowd_regions(train: Dataset) -> None:
    """One line saying how many crowd regions training leaves out (:class:`reference.transforms.DropCrowd`)."""
    n = crowd_regions(train)
    if n:
        log.info("%s: %d crowd region(s) (iscrowd 1) left out of training, as torchvision's references leave them "
                 "out; evaluation keeps them as regions to ignore", dataset_root(train), n)


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
    overwrite: bool = False
    batch_size: int | None = None  # the recipe's unless given
    lr: float | None = None  # the recipe's unless given
    workers: int = 0  # DataLoader worker processes; 0 loads in this process
    classes: str | None = None  # the object classes, as validate's --classes takes them (FILE or A,B,...)
    merge_similar_names: str | None = None  # "whitespace" or "case": near-duplicate class names as one class


def shown_epochs(opts: TrainOptions) -> int | None:
    """The epoch count to show before training: ``opts.epochs``, else the recipe's; None for a resume without
    ``epochs`` (it runs to the checkpoint's planned count)."""
    return opts.epochs or (None if opts.resume else get_recipe(opts.recipe).epochs)


def run_train(opts: TrainOptions, on_epoch: Callable | None = None) -> tuple[FitResult, dict[str, Any]]:
    """Train per ``opts``; returns the fit result and the report dict (not written).

    Everything that can be checked before training is: names, device, epochs, the output folder (an earlier
    run there is refused unless resumed or ``overwrite``), its writability and free space, the resume
    checkpoint (readable, and from a run with these settings). With ``overwrite`` the earlier run's files
    are deleted just before training starts.
    """
    try:
        recipe = get_recipe(opts.recipe)
    except ValueError as exc:
        raise JobError(str(exc)) from exc
    if opts.batch_size is not None or opts.lr is not None:
        recipe = dataclasses.replace(recipe, batch_size=opts.batch_size or recipe.batch_size, lr=opts.lr or recipe.lr)
    if opts.epochs is not None and opts.epochs < 1:
        raise JobError(f"--epochs {opts.epochs}: must be at least 1")
    device = resolve_device(opts.device)
    if not opts.data.is_dir():
        raise JobError(f"--data {opts.data}: no such folder")
    replaced = check_run_folder(opts.out, opts.resume, opts.overwrite)
    dist = distributed.init_from_env(device)
    if dist.is_main:
        check_writable_folder(opts.out, "--out")
    state = None
    if opts.resume is not None:
        try:
            state = load_checkpoint(opts.resume)
        except CheckpointError as exc:
            raise JobError(f"--resume {exc}") from exc
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    seed_everything(opts.seed)
    train, val, num_classes = split_datasets(opts.data, opts.fmt, recipe, opts.seed, opts.classes,
                                             opts.merge_similar_names)
    try:
        model = build_model(opts.model, num_classes, opts.weights)
    except (ValueError, FileNotFoundError) as exc:
        raise JobError(str(exc)) from exc
    box_only = fit_model_to_targets(model, opts.model, train, val)
    log_crowd_regions(train)
    epochs = opts.epochs or (planned_epochs(state) if state is not None else None) or recipe.epochs
    classes = dataset_classes(train, num_classes)
    cfg = FitConfig(opts.model, num_classes, recipe, epochs, opts.seed, str(device), opts.amp, opts.print_freq,
                    group_factor=opts.group_factor, data=str(opts.data.resolve()), classes=classes,
                    workers=opts.workers, box_only=box_only)
    if state is not None:
        try:
            check_resumable(state, cfg, opts.resume, data_fingerprint(train, val))  # type: ignore[arg-type]
        except CheckpointError as exc:
            raise JobError(str(exc)) from exc
    if dist.is_main:
        # last.pt and best.pt, a temporary copy while one is saved, and 10 MB for reports and pictures
        check_free_space(opts.out, 3 * checkpoint_bytes(model, recipe) + 10_000_000, "--out")
        for p in replaced:
            p.unlink()
        if replaced:
            log.warning("--overwrite: removed the earlier run's %s from %s", ", ".join(p.name for p in replaced),
                        opts.out)
    try:
        result = fit(model, train, val, cfg, opts.out, resume=opts.resume, on_epoch=on_epoch, resume_state=state)
    except CheckpointError as exc:
        raise JobError(str(exc)) from exc
    meta = {"title": f"{opts.model} / {opts.recipe}", "model": opts.model, "recipe": opts.recipe,
            "data": str(opts.data), "weights": opts.weights, "epochs_run": cfg.epochs, "seed": opts.seed,
            "device": str(device), "num_classes": num_classes, "classes": classes}
    return result, build_report(result, meta)


def stats_lines(named: dict[str, dict[str, float]]) -> list[str]:
    """The end summary's AP lines: ``bbox: AP 0.603  AP50 0.912  AP75 0.650`` per IoU type."""
    return [f"{t}: AP {s['AP']:.3f}  AP50 {s['AP50']:.3f}  AP75 {s['AP75']:.3f}" for t, s in named.items()]


@dataclass(frozen=True)
class TrainRun:
    """A finished ``tvref train``: the fit result, and the report files (None on processes other than the main
    one, which write nothing)."""

    result: FitResult
    out: Path
    report_paths: dict[str, Path] | None

    def lines(self) -> list[str]:
        """The summary printed at the end: the final AP lines, the epochs and time, the checkpoint and report."""
        if self.report_paths is None:
            return []
        head = stats_lines(self.result.final.named()) if self.result.final else []
        return head + [f"trained {len(self.result.history)} epoch(s) in {self.result.train_seconds:.0f} s",
                       f"checkpoint: {self.out / 'last.pt'}", f"report: {self.report_paths['md']}"]


def train(opts: TrainOptions, on_epoch: Callable | None = None) -> TrainRun:
    """:func:`run_train`, then the report written into ``opts.out`` by the main process."""
    result, report = run_train(opts, on_epoch=on_epoch)
    paths = write_report(report, opts.out) if distributed.info().is_main else None
    return TrainRun(result, opts.out, paths)
