"""Recipes from the seeds and :func:`fit`, the resumable training loop around ``train_one_epoch``.

- ``tutorial`` (seeds 000/001): SGD lr 0.005, momentum 0.9, weight decay 5e-4, StepLR(3, 0.1), batch 2.
- ``mills`` (seed 002): AdamW lr 5e-4, OneCycleLR stepped per iteration, mixed precision.
- ``ci``: the tutorial's recipe shortened for the demo and the accuracy gate: the pretrained stand-in
  fine-tuned on the bundled data in about a minute on 2 CPU cores (see docs/training.md).

Every run, whatever its recipe, writes ``last.pt`` each epoch, ``best.pt`` when the validation loss improved
(seed 002's best-validation-loss checkpoint) and ``checkpoint.json`` (the run's settings, history and the files'
digests). Checkpoints hold model, optimizer, scheduler, scaler, epoch and RNG states and are written atomically.
Each epoch's shuffling comes from a generator seeded by ``(seed, epoch)`` and the global RNG state is saved
with every checkpoint, so a resumed run gives the same final weights as an uninterrupted one.

A resume is checked against the checkpoint first (:func:`check_resumable`): another recipe, model, class
count, seed, aspect-ratio grouping or data size is refused in one line naming the fields. A different
``epochs`` re-plans a cosine schedule (the remaining epochs follow the cosine of the new length), keeps a step
schedule (it does not depend on the length) and is refused for OneCycleLR (its length is fixed at the start).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, SequentialSampler

from ..engine import distributed
from ..atomic_io import atomic_write_json
from .checkpoint import (DIGEST_KEY, METADATA, CheckpointError, load_checkpoint, rng_state, save_checkpoint,
                         set_rng_state)
from ..engine.coco_eval import CocoResult
from ..engine.loops import EpochLog, evaluate, to_device, train_one_epoch
from ..data.sampling import GroupedBatchSampler, aspect_ratio_groups
from ..transforms import Compose, DropCrowd, drop_crowd, get_preset

log = logging.getLogger(__name__)


def collate_fn(batch):
    """The references' collate: a tuple of images and a tuple of targets (module level, so picklable)."""
    return tuple(zip(*batch))


@dataclass(frozen=True)
class Recipe:
    name: str
    optimizer: str  # "sgd" or "adamw"
    lr: float
    weight_decay: float
    batch_size: int
    epochs: int
    schedule: str  # "step" (per epoch), "cosine" (per epoch), "onecycle" (per iteration)
    transforms: str
    momentum: float = 0.9
    step_size: int = 3
    gamma: float = 0.1
    amp: bool = False
    warmup: bool = True  # the references' epoch-0 LinearLR warmup
    eval_every: int = 1


RECIPES: dict[str, Recipe] = {
    "tutorial": Recipe("tutorial", "sgd", 0.005, 5e-4, 2, 10, "step", "tutorial"),
    "mills": Recipe("mills", "adamw", 5e-4, 1e-2, 4, 10, "onecycle", "mills", amp=True, warmup=False),
    # the demo's and the gate's fine-tuning of the pretrained stand-in: the tutorial's recipe (SGD lr 0.005,
    # momentum 0.9, weight decay 5e-4, batch 2, StepLR gamma 0.1, the epoch-0 warmup, flip 0.5) shortened to 5
    # epochs with the learning-rate step after 4 (after 3, seed 0 lands lower: measured). Evaluated once, at the
    # end: evaluation changes no weight
    "ci": Recipe("ci", "sgd", 0.005, 5e-4, 2, 5, "step", "tutorial", step_size=4, eval_every=5),
}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose from {', '.join(RECIPES)}")
    return RECIPES[name]


def make_optimizer(recipe: Recipe, model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)


SCHEDULES = ("step", "cosine", "onecycle")


def make_scheduler(recipe: Recipe, optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int):
    """The recipe's learning-rate schedule; an unknown schedule name is refused (never a silent default)."""
    if recipe.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=recipe.step_size, gamma=recipe.gamma)
    if recipe.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    if recipe.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr,
                                                   total_steps=epochs * steps_per_epoch)
    raise ValueError(f"recipe {recipe.name!r}: unknown schedule {recipe.schedule!r}; choose from "
                     f"{', '.join(SCHEDULES)}")


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    losses: dict[str, float]
    seconds: float
    val_loss: float | None = None
    bbox_ap: float | None = None
    segm_ap: float | None = None


@dataclass
class FitResult:
    history: list[EpochRecord] = field(default_factory=list)
    final: CocoResult | None = None
    train_seconds: float = 0.0  # the whole run: training, validation, evaluation, checkpoints
    iterations: int = 0
    # the training epochs alone (no validation, evaluation or checkpoint writes): what an iteration costs
    iteration_seconds: float = 0.0
    losses_per_iteration: list[float] = field(default_factory=list)
    checkpoint: Path | None = None


def make_loader(dataset: Dataset, batch_size: int, *, train: bool, seed: int, epoch: int,
                group_factor: int = -1, workers: int = 0) -> DataLoader:
    """A loader whose order depends only on ``(seed, epoch)``; sharded under ``torchrun``.

    ``group_factor >= 0`` batches images of similar aspect ratio together (the references'
    ``--aspect-ratio-group-factor``; they use 3); the default keeps the tutorial's plain shuffled batches.
    ``workers > 0`` loads in that many worker processes, their random seeds drawn from ``(seed, epoch)`` rather
    than from the global RNG; ``0`` loads in this process, drawing as the references' loader does.
    """
    if distributed.info().enabled:
        sampler = DistributedSampler(dataset, shuffle=train, seed=seed)
        sampler.set_epoch(epoch)
    elif train:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    else:
        sampler = SequentialSampler(dataset)
    loading: dict[str, Any] = {"collate_fn": collate_fn, "num_workers": workers}
    if workers > 0:
        loading["generator"] = torch.Generator().manual_seed(seed * 100_003 + epoch + 50_021)
    if train and group_factor >= 0:
        batches = GroupedBatchSampler(sampler, aspect_ratio_groups(dataset, group_factor), batch_size)
        return DataLoader(dataset, batch_sampler=batches, **loading)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, **loading)


def _bn_frozen_train(model: nn.Module) -> None:
    """Train mode (so the model returns losses) without touching BatchNorm running statistics."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


@torch.no_grad()
def validation_loss(model: nn.Module, loader: DataLoader, device: torch.device) -> float:
    """Mean total loss over ``loader`` (seed 002's model-selection criterion); restores eval mode.

    In train mode the RPN and RoI samplers draw from torch's RNG: :func:`fit` runs it on a forked RNG. Crowd
    regions are left out of the targets (:func:`drop_crowd`), as training leaves them out.
    """
    _bn_frozen_train(model)
    total, batches = 0.0, 0
    with torch.no_grad():  # losses only: recording the graph for a backward that never comes costs time
        for images, targets in loader:
            images, targets = to_device(images, [drop_crowd(t) for t in targets], device)
            total += float(sum(model(images, targets).values()))
            batches += 1
    model.eval()
    return total / max(batches, 1)


@dataclass
class FitConfig:
    model_name: str
    num_classes: int
    recipe: Recipe
    epochs: int
    seed: int = 0
    device: str = "cpu"
    amp: bool = False
    print_freq: int = 10
    eval_every: int | None = None  # defaults to the recipe's; the last epoch is always evaluated
    group_factor: int = -1  # aspect-ratio grouping (the references use 3); -1 = plain shuffled batches
    workers: int = 0  # DataLoader worker processes for training and validation; 0 = load in this process
    data: str | None = None  # where the data came from, recorded in checkpoints (resume warns if it moved)
    # the class names, background first (the dataset's ``classes``), recorded in checkpoints so that predictions
    # are labelled with names; None when the dataset has none (labels are then shown as numbers)
    classes: list[str] | None = None
    # the model's mask branch was removed (models.make_box_only) because the training targets have no masks;
    # recorded in checkpoints, and a resume must agree
    box_only: bool = False


# recipe fields that do not change the training trajectory of the epochs still to run
_RECIPE_FIELDS_FREE = ("epochs", "eval_every")


def data_fingerprint(train_ds: Dataset, val_ds: Dataset | None) -> dict[str, int | None]:
    """What a resume compares to tell the same data from other data: the split sizes."""
    return {"train_samples": len(train_ds), "val_samples": None if val_ds is None else len(val_ds)}  # type: ignore[arg-type]


def planned_epochs(state: dict[str, Any]) -> int | None:
    """The epoch count a checkpoint's run was planned for (older checkpoints: from the scheduler's state)."""
    if isinstance(state.get("epochs"), int):
        return state["epochs"]
    sched = state.get("scheduler") or {}
    return int(sched["T_max"]) if isinstance(sched.get("T_max"), int) else None


def check_resumable(state: dict[str, Any], cfg: FitConfig, path: str | Path,
                    fingerprint: dict[str, int | None] | None = None) -> None:
    """Refuse, in one line naming every differing field, a checkpoint that another run configuration wrote.

    Compared: model name and whether it is box-only, class count and names, recipe (name and every setting
    that shapes training), seed, aspect-ratio grouping, the data's split sizes, and whether ``cfg.epochs`` can
    continue the schedule.
    The data's location may change (a warning): a moved folder holds the same data.
    """
    diffs: list[str] = []

    def differ(name: str, then: Any, now: Any) -> None:
        if then != now:
            diffs.append(f"{name} {then!r} in the checkpoint, {now!r} now")

    differ("model", state.get("model_name"), cfg.model_name)
    differ("num_classes", state.get("num_classes"), cfg.num_classes)
    if state.get("classes") is not None and cfg.classes is not None:  # checkpoints before class names have none
        differ("classes", state["classes"], cfg.classes)
    differ("box_only", bool(state.get("box_only", False)), cfg.box_only)
    differ("recipe", state.get("recipe"), cfg.recipe.name)
    params = state.get("recipe_params")
    if isinstance(params, dict) and state.get("recipe") == cfg.recipe.name:
        now = asdict(cfg.recipe)
        for k in sorted(set(params) | set(now)):
            if k not in _RECIPE_FIELDS_FREE:
                differ(f"recipe.{k}", params.get(k), now.get(k))
    if "seed" in state:
        differ("seed", state["seed"], cfg.seed)
    if "group_factor" in state:
        differ("aspect_ratio_group_factor", state["group_factor"], cfg.group_factor)
    then_fp = state.get("data_fingerprint")
    if isinstance(then_fp, dict) and fingerprint is not None:
        for k in sorted(set(then_fp) & set(fingerprint)):
            differ(f"data {k}", then_fp[k], fingerprint[k])
    done, planned = int(state.get("epoch", 0)), planned_epochs(state)
    if cfg.epochs < done:
        diffs.append(f"epochs: {done} are done already, {cfg.epochs} asked for")
    elif planned is not None and cfg.epochs != planned and cfg.recipe.schedule == "onecycle":
        diffs.append(f"epochs {planned} in the checkpoint, {cfg.epochs} now (OneCycleLR's length is fixed when a "
                     "run starts; resume with the planned epochs or start a new run)")
    if diffs:
        raise CheckpointError(f"{path}: cannot resume: " + "; ".join(diffs))
    if state.get("data") and cfg.data and state["data"] != cfg.data:
        log.warning("resuming a run trained on %s with data from %s (same split sizes)", state["data"], cfg.data)


def _plain_state(state: dict[str, Any]) -> dict[str, Any]:
    """A scheduler's state without the functions some torch releases keep in it (torch 2.1's OneCycleLR holds its
    bound ``anneal_func``, which a weights-only load refuses); the scheduler built for the resume has its own."""
    return {k: v for k, v in state.items() if not callable(v)}


def _replan_cosine(scheduler: torch.optim.lr_scheduler.CosineAnnealingLR, epochs: int) -> None:
    """Continue a cosine schedule as if it had been planned for ``epochs``: the closed form at the current
    epoch, from where the scheduler's own steps carry on (they follow the closed form from any point on it)."""
    scheduler.T_max = epochs
    t = scheduler.last_epoch
    lrs = [scheduler.eta_min + (base - scheduler.eta_min) * (1 + math.cos(math.pi * t / epochs)) / 2
           for base in scheduler.base_lrs]
    for group, lr in zip(scheduler.optimizer.param_groups, lrs):
        group["lr"] = lr
    scheduler._last_lr = lrs  # what get_last_lr() reports


@dataclass
class _Run:
    """What one training run works with: the model (``net`` wraps it for DistributedDataParallel), its
    optimizer, schedule, gradient scaler (CUDA mixed precision only) and where it runs."""

    model: nn.Module
    net: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler | None
    device: torch.device
    is_main: bool


def _check_config(cfg: FitConfig) -> None:
    if cfg.epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {cfg.epochs}")
    if cfg.classes is not None and len(cfg.classes) != cfg.num_classes:
        raise ValueError(f"{len(cfg.classes)} class names {cfg.classes} for {cfg.num_classes} classes")


def _set_up(model: nn.Module, train_ds: Dataset, cfg: FitConfig) -> _Run:
    """Distributed setup, optimizer, schedule (planned for the epochs and the batches per epoch) and AMP."""
    device, recipe, dist = torch.device(cfg.device), cfg.recipe, distributed.info()
    model.to(device)
    net: nn.Module = model
    if dist.enabled:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = make_optimizer(recipe, model)
    steps = len(make_loader(train_ds, recipe.batch_size, train=True, seed=cfg.seed, epoch=0,
                            group_factor=cfg.group_factor))  # a length: no worker is started
    scheduler = make_scheduler(recipe, optimizer, cfg.epochs, steps)
    use_amp = cfg.amp or recipe.amp
    scaler = torch.amp.GradScaler(device.type) if use_amp and device.type == "cuda" else None
    if use_amp and scaler is None:
        log.warning("mixed precision requested on %s: running in float32 (autocast with a scaler needs CUDA)",
                    device.type)
    return _Run(model, net, optimizer, scheduler, scaler, device, dist.is_main)


@dataclass
class _Progress:
    """Where a run stands: the next epoch, the best validation loss, the epochs done and the files written."""

    epoch: int = 0
    best: float = math.inf
    history: list[EpochRecord] = field(default_factory=list)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)


def _resume(run: _Run, cfg: FitConfig, resume: str | Path, state: dict[str, Any] | None,
            fingerprint: dict[str, int | None], out: Path) -> _Progress:
    """Every state from the checkpoint (after :func:`check_resumable`), the RNG last, so that the remaining
    epochs draw what they would have drawn uninterrupted."""
    state = state if state is not None else load_checkpoint(resume)
    check_resumable(state, cfg, resume, fingerprint)
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    if cfg.recipe.schedule == "cosine" and run.scheduler.T_max != cfg.epochs:
        _replan_cosine(run.scheduler, cfg.epochs)
        log.info("cosine schedule re-planned for %d epochs (was %d): learning rate %.3g at epoch %d",
                 cfg.epochs, planned_epochs(state), run.scheduler.get_last_lr()[0], int(state["epoch"]))
    if run.scaler is not None and state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    progress = _Progress(int(state["epoch"]), float(state.get("best_val_loss", math.inf)),
                         [EpochRecord(**h) for h in state.get("history", [])],
                         _recorded_files(out) if Path(resume).parent.resolve() == out.resolve() else {})
    log.info("resumed from %s at epoch %d", resume, progress.epoch)
    return progress


def _train_epoch(run: _Run, train_ds: Dataset, cfg: FitConfig, epoch: int) -> tuple[EpochRecord, EpochLog]:
    """One epoch of training, its shuffling seeded by ``(seed, epoch)``; the schedule steps per iteration
    (OneCycleLR) or once at the end. ``seconds`` is the training alone."""
    t0 = time.perf_counter()
    recipe = cfg.recipe
    loader = make_loader(train_ds, recipe.batch_size, train=True, seed=cfg.seed, epoch=epoch,
                         group_factor=cfg.group_factor, workers=cfg.workers)
    iter_sched = run.scheduler if recipe.schedule == "onecycle" else None
    elog: EpochLog = train_one_epoch(run.net, run.optimizer, loader, run.device, epoch, cfg.print_freq,
                                     run.scaler, warmup=recipe.warmup, iteration_scheduler=iter_sched)
    if iter_sched is None:
        run.scheduler.step()
    rec = EpochRecord(epoch, elog.averages["loss"], {k: v for k, v in elog.averages.items() if k.startswith("loss_")},
                      time.perf_counter() - t0)
    return rec, elog


def _validate(run: _Run, val_ds: Dataset, cfg: FitConfig, epoch: int, with_evaluation: bool,
              rec: EpochRecord) -> CocoResult | None:
    """The validation loss into ``rec`` and, when asked, the COCO evaluation (its APs into ``rec``).

    Validation draws from torch's RNG (the samplers in train mode, and the evaluation pass too), so it runs on
    a forked RNG: a validation set never changes the training trajectory.
    """
    with torch.random.fork_rng(devices=[run.device] if run.device.type == "cuda" else []):
        vloader = make_loader(val_ds, 4, train=False, seed=cfg.seed, epoch=epoch, workers=cfg.workers)
        rec.val_loss = validation_loss(run.model, vloader, run.device)
        if not with_evaluation:
            return None
        res = evaluate(run.model, vloader, run.device)
    rec.bbox_ap = res.stats["bbox"][0]
    rec.segm_ap = res.stats.get("segm", [None])[0]
    return res


def _write_checkpoints(run: _Run, cfg: FitConfig, progress: _Progress, fingerprint: dict[str, int | None],
                       out: Path, improved: bool) -> None:
    """``last.pt`` (and ``best.pt`` when the validation loss improved), then ``checkpoint.json`` with their
    digests; every write atomic."""
    done = progress.epoch
    history = [asdict(h) for h in progress.history]
    state = {
        "model_name": cfg.model_name, "num_classes": cfg.num_classes, "classes": cfg.classes,
        "box_only": cfg.box_only, "recipe": cfg.recipe.name,
        "recipe_params": asdict(cfg.recipe), "epochs": cfg.epochs, "group_factor": cfg.group_factor,
        "data": cfg.data, "data_fingerprint": fingerprint,
        "epoch": done, "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
        "scheduler": _plain_state(run.scheduler.state_dict()),
        "scaler": run.scaler.state_dict() if run.scaler else None,
        "rng": rng_state(), "best_val_loss": progress.best, "seed": cfg.seed, "history": history,
    }
    digest = save_checkpoint(out / "last.pt", state)
    progress.files["last.pt"] = {"epoch": done, DIGEST_KEY: digest}
    if improved:
        save_checkpoint(out / "best.pt", state)
        progress.files["best.pt"] = {"epoch": done, DIGEST_KEY: digest}
    atomic_write_json(out / METADATA, {
        "model_name": cfg.model_name, "num_classes": cfg.num_classes, "classes": cfg.classes,
        "box_only": cfg.box_only, "recipe": asdict(cfg.recipe),
        "epochs_done": done, "epochs": cfg.epochs, "seed": cfg.seed, "device": cfg.device,
        "data": cfg.data, "data_fingerprint": fingerprint,
        "best_val_loss": None if math.isinf(progress.best) else progress.best, "best_checkpoint": "best.pt",
        "files": progress.files, "torch": torch.__version__, "history": history})


def fit(model: nn.Module, train_ds: Dataset, val_ds: Dataset | None, cfg: FitConfig, out_dir: str | Path,
        resume: str | Path | None = None, on_epoch: Callable[[EpochRecord], None] | None = None, *,
        resume_state: dict[str, Any] | None = None) -> FitResult:
    """Train ``model`` for ``cfg.epochs`` epochs, checkpointing each epoch to ``out_dir/last.pt``.

    ``resume`` continues from a checkpoint after :func:`check_resumable` (``resume_state``: its contents,
    when the caller has loaded it already). ``out_dir/checkpoint.json`` records the run's settings and the
    SHA-256 of each checkpoint's tensors. Both hold ``classes``, the class names (``cfg.classes``).

    Each epoch: train (:func:`_train_epoch`), validate on a forked RNG and evaluate every ``eval_every``
    epochs and at the last (:func:`_validate`), write the checkpoints (:func:`_write_checkpoints`, main
    process only), then call ``on_epoch``.
    """
    _check_config(cfg)
    out = Path(out_dir)
    run = _set_up(model, train_ds, cfg)
    fingerprint = data_fingerprint(train_ds, val_ds)
    if resume is not None:
        progress = _resume(run, cfg, resume, resume_state, fingerprint, out)
    else:
        torch.manual_seed(cfg.seed)
        progress = _Progress()
    result = FitResult(history=progress.history)
    eval_every = cfg.eval_every or cfg.recipe.eval_every
    t_start = time.perf_counter()
    for epoch in range(progress.epoch, cfg.epochs):
        rec, elog = _train_epoch(run, train_ds, cfg, epoch)
        result.iterations += len(elog.iterations)
        result.losses_per_iteration += [it["loss"] for it in elog.iterations]
        result.iteration_seconds += rec.seconds
        last = epoch == cfg.epochs - 1
        if val_ds is not None:
            res = _validate(run, val_ds, cfg, epoch, last or (epoch + 1) % eval_every == 0, rec)
            if last:
                result.final = res
        progress.history.append(rec)
        improved = rec.val_loss is not None and rec.val_loss < progress.best
        progress.best = min(progress.best, rec.val_loss) if rec.val_loss is not None else progress.best
        progress.epoch = epoch + 1
        if run.is_main:
            _write_checkpoints(run, cfg, progress, fingerprint, out, improved)
        if on_epoch is not None:
            on_epoch(rec)
    result.train_seconds = time.perf_counter() - t_start
    result.checkpoint = out / "last.pt"
    return result


def _recorded_files(out: Path) -> dict[str, dict[str, Any]]:
    """The per-file digests an earlier part of this run wrote to ``out/checkpoint.json`` (best.pt's stays)."""
    import json

    try:
        files = json.loads((out / METADATA).read_text(encoding="utf-8")).get("files", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return {k: v for k, v in files.items() if isinstance(v, dict)} if isinstance(files, dict) else {}


def transforms_for(recipe: Recipe, train: bool) -> Callable:
    """The recipe's transform preset; for training, crowd regions are dropped first (:class:`DropCrowd`, as the
    references' ``ConvertCocoPolysToMask`` drops them), while evaluation keeps them for COCOeval to ignore."""
    preset = get_preset(recipe.transforms, train)
    return Compose([DropCrowd(), preset]) if train else preset
