"""The main job and its parts, as functions the CLI and the tests share: train, evaluate, predict, demo.

Library code: results are returned, files written atomically, progress reported through ``logging``.

Outputs are checked before any work starts: a folder holding an earlier run is refused unless the run is
resumed from it or ``overwrite`` is asked for, the output location must be writable with room for the
checkpoints, and a file output must not be a folder (or the input). Bad input raises :class:`JobError` with
one line naming the file; a sample that fails during training names the dataset folder and the sample.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from ..engine import distributed
from ..training.checkpoint import METADATA, CheckpointError, load_checkpoint
from ..engine.coco_eval import CocoResult
from ..contract import Report, class_name, class_names_of, validate_dataset
from ..data import DatasetError, open_dataset
from ..engine.loops import evaluate, predict
from ..training.accuracy_gate import GateUnavailable, check_gate, gate_for
from ..data.loading import loader_failure
from ..models import STANDIN, build_model, make_box_only, predicts_keypoints, predicts_masks
from ..paths import fixtures_dir
from ..reporting.render import save_png, side_by_side
from ..reporting.run_report import build_report, write_report
from ..training.fit import (EpochRecord, FitConfig, FitResult, Recipe, check_resumable, data_fingerprint, fit,
                       get_recipe, make_loader, planned_epochs, transforms_for)

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


# what train and demo write into their output folder
RUN_FILES = ("last.pt", "best.pt", METADATA, "report.json", "report.md", "history.png")
RUN_PATTERNS = ("predictions_*.png",)


def earlier_run_files(out: Path) -> list[Path]:
    """The files of an earlier train or demo run in ``out`` (other files there are not ours)."""
    if not out.is_dir():
        return []
    found = [out / name for name in RUN_FILES if (out / name).exists()]
    return found + sorted(p for pattern in RUN_PATTERNS for p in out.glob(pattern))


def check_run_folder(out: Path, resume: Path | None, overwrite: bool) -> list[Path]:
    """Refuse to write a run into a folder that holds another run's files, unless the run is resumed from that
    folder's checkpoint or ``overwrite`` is set. Returns the earlier files ``overwrite`` will replace."""
    if out.exists() and not out.is_dir():
        raise JobError(f"--out {out}: exists and is not a folder")
    earlier = earlier_run_files(out)
    if not earlier:
        return []
    if resume is not None and resume.parent.resolve() == out.resolve():
        return []  # continuing the run that is there
    if overwrite:
        return earlier
    names = ", ".join(p.name for p in earlier[:4]) + (", ..." if len(earlier) > 4 else "")
    raise JobError(f"--out {out}: holds an earlier run ({names}); pass --resume {out / 'last.pt'} to continue it, "
                   "--overwrite to replace it, or choose another folder")


def check_writable_folder(folder: Path, flag: str) -> None:
    """Create ``folder`` if needed and write (then delete) a probe file in it; a one-line JobError if not."""
    if folder.exists() and not folder.is_dir():
        raise JobError(f"{flag} {folder}: exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise JobError(f"{flag} {folder}: cannot write there ({exc.strerror or type(exc).__name__})") from exc


def check_output_file(path: Path, flag: str, *, not_same_as: Path | None = None) -> None:
    """A file output: not a folder, not the input file, in a folder that can be written."""
    if path.is_dir():
        raise JobError(f"{flag} {path}: is a folder; give a file name")
    if not_same_as is not None and (path.resolve() == not_same_as.resolve()
                                    or (path.exists() and not_same_as.exists() and path.samefile(not_same_as))):
        raise JobError(f"{flag} {path}: is the input file; choose another name (the input is never overwritten)")
    check_writable_folder(path.parent if str(path.parent) else Path("."), flag)


def checkpoint_bytes(model: torch.nn.Module, recipe: Recipe) -> int:
    """About what one checkpoint takes on disk: the weights plus the optimizer's per-parameter state."""
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    per_param = 2 if recipe.optimizer == "adamw" else 1  # Adam's two moments; SGD's momentum buffer
    params = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return weights + per_param * params


def check_free_space(folder: Path, need: int, flag: str) -> None:
    """Refuse when the file system holding ``folder`` has less than ``need`` bytes free."""
    free = shutil.disk_usage(folder).free
    if free < need:
        raise JobError(f"{flag} {folder}: {free / 1e6:.1f} MB free, the run needs about {need / 1e6:.1f} MB "
                       "(two checkpoints, a temporary copy while saving, reports)")


class _NamedSamples(torch.utils.data.Dataset):
    """A dataset whose failing samples say where they are: ``ROOT: sample I (file): Error: message``.

    A :class:`DatasetError` (which names its file already) passes unchanged. Attributes are the dataset's.
    """

    def __init__(self, dataset: Any, root: Path):
        self.dataset, self.root = dataset, root

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:
        if name in ("dataset", "root"):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, idx: int):
        try:
            return self.dataset[idx]
        except DatasetError:
            raise
        except Exception as exc:  # noqa: BLE001 - user data: one line naming the sample instead of a traceback
            detail = (str(exc).splitlines() or [""])[0][:120]
            raise JobError(f"{self.root}: sample {idx}{_describe(self.dataset, idx)}: {type(exc).__name__}: "
                           f"{detail}") from exc


def _describe(ds: Any, idx: int) -> str:
    """`` (file)`` for the known layouts' sample ``idx``, else nothing."""
    try:
        entries = getattr(ds, "entries", None)
        if entries is not None and hasattr(entries[idx], "json_path"):
            return f" ({entries[idx].json_path})"
        images = getattr(ds, "images", None)
        if images is not None:
            im = images[idx]
            return f" (image {im.get('id')}, {im.get('file_name')})" if isinstance(im, dict) else f" ({im})"
    except Exception:  # noqa: BLE001 - a description is a nicety; never fail because of it
        pass
    return ""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _open(root: Path, fmt: str | None, recipe: Recipe, train: bool, classes: str | list[str] | None = None,
          merge_similar_names: str | None = None):
    """A dataset folder opened with the recipe's transforms; loader errors become one line naming the file."""
    try:
        ds = open_dataset(root, fmt, transforms_for(recipe, train), classes,
                          merge_similar_names=merge_similar_names or False)
    except (DatasetError, KeyError, TypeError, AttributeError, IndexError, ValueError, OSError,
            RecursionError) as exc:  # the loaders' raw errors too, named here until the loaders name them
        raise JobError(loader_failure(root, exc)) from exc
    # defects a loader recorded and left out (validate reports them): training never drops annotations silently
    errors = [v for v in getattr(ds, "load_violations", None) or [] if v.severity == "error"]
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise JobError(f"{root}: {errors[0].message}{more}; fix the data (tvref validate {root} lists them all)")
    return _NamedSamples(ds, root)


# The tutorial holds out the last 50 of a random permutation of Penn-Fudan's 170 images; the published figures are
# on those 50. Where a folder has at least three times that many samples (so that training keeps two thirds or
# more), we hold out 50 too, so runs on the real data compare with the published figures; a smaller folder keeps
# a fifth for validation (at least one sample), since 50 would leave too little to train on.
TUTORIAL_HELD_OUT = 50


def held_out_count(n: int) -> int:
    """How many of ``n`` samples a single folder holds out for validation (see ``TUTORIAL_HELD_OUT``)."""
    if n >= 3 * TUTORIAL_HELD_OUT:
        return TUTORIAL_HELD_OUT
    return max(1, n // 5)


# the validation split's folder names: ``val/`` (Penn-Fudan's layout here, CVAT, COCO) and ``valid/`` (Roboflow's
# exports: train/, valid/, test/)
VAL_FOLDERS = ("val", "valid")


def validation_folder(data: Path, *, beside_train: bool = True) -> Path | None:
    """``data``'s validation split folder (beside ``train/`` unless ``beside_train`` is off), or None; both
    names present is refused as ambiguous."""
    found = [data / name for name in VAL_FOLDERS if (data / name).is_dir()]
    if len(found) > 1:
        raise JobError(f"--data {data}: both {found[0].name}/ and {found[1].name}/ inside; keep the validation "
                       "split in one of them")
    return found[0] if found and (not beside_train or (data / "train").is_dir()) else None


def split_datasets(data: Path, fmt: str | None, recipe: Recipe, seed: int,
                   classes: str | None = None, merge_similar_names: str | None = None
                   ) -> tuple[Dataset, Dataset, int]:
    """Train and validation datasets, and the class count (background included).

    A folder with ``train/`` and ``val/`` (or Roboflow's ``valid/``) inside is used as given (a ``test/`` split
    is left alone); a single folder is split by a permutation seeded by ``seed``, its last
    :func:`held_out_count` samples held out for validation. ``classes`` fixes the class names and their ids
    (see :func:`reference.data.parse_classes`); without it the training split's own classes are used.
    ``merge_similar_names`` ("whitespace" or "case") reads near-duplicate class names as one class.
    """
    val_folder = validation_folder(data)
    merge = merge_similar_names
    if val_folder is not None:
        train = _open(data / "train", fmt, recipe, True, classes, merge)
        val = _open(val_folder, fmt, recipe, False, classes or getattr(train, "class_names", None), merge)
    else:
        train_all = _open(data, fmt, recipe, True, classes, merge)
        val_all = _open(data, fmt, recipe, False, classes, merge)
        if len(train_all) < 2:
            raise JobError(f"--data {data}: {len(train_all)} sample(s); training needs at least 2 (one is held out "
                           "for validation), or train/ and val/ subfolders")
        order = torch.randperm(len(train_all), generator=torch.Generator().manual_seed(seed)).tolist()
        held = held_out_count(len(order))
        train, val = Subset(train_all, order[:-held]), Subset(val_all, order[-held:])
    base = train.dataset if isinstance(train, Subset) else train
    num_classes = _num_classes(base)
    return train, val, num_classes


def dataset_classes(ds: Any, num_classes: int) -> list[str] | None:
    """The dataset's class names, background first, when it has one per class (what checkpoints record)."""
    names = class_names_of(ds)
    return names if names is not None and len(names) == num_classes else None


def checkpoint_classes(state: dict[str, Any], where: Path | None = None) -> list[str] | None:
    """The class names a checkpoint recorded (background first), or None: checkpoints from before class names
    were recorded, or a ``classes`` entry that is not one name per class (logged, and labels stay numbers)."""
    names, count = state.get("classes"), state.get("num_classes")
    if names is None:
        return None
    if isinstance(names, list) and all(isinstance(n, str) for n in names) and len(names) == count:
        return names
    log.warning("%s: classes %s is not one name for each of its %s classes; labels are shown as numbers",
                where or "checkpoint", _short(names), _short(count))
    return None


def detection_labels(labels: torch.Tensor, scores: torch.Tensor, names: list[str] | None) -> list[str]:
    """``"<class name> <score>"`` for each detection; the label id stands in where there are no names."""
    return [f"{class_name(int(lab), names)} {float(s):.2f}" for lab, s in zip(labels, scores)]


def _num_classes(ds: Any) -> int:
    if hasattr(ds, "classes"):
        return len(ds.classes)
    if hasattr(ds, "class_to_idx"):
        return len(ds.class_to_idx)
    return 2  # PennFudan: person + background


def dataset_root(ds: Any) -> Path | None:
    """The folder a dataset opened by :func:`_open` (or a ``Subset`` of one) was read from."""
    return getattr(ds.dataset if isinstance(ds, Subset) else ds, "root", None)


def target_keys(ds: Dataset) -> set[str]:
    """The keys of sample 0's target (what the layout's targets carry: ``masks``, ``keypoints``...); empty for
    an empty dataset. Drawn on a forked RNG, so that a look at a training sample changes no later draw."""
    if len(ds) == 0:  # type: ignore[arg-type]
        return set()
    with torch.random.fork_rng(devices=[]):
        return set(ds[0][1])


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


def run_train(opts: TrainOptions, on_epoch=None) -> tuple[FitResult, dict[str, Any]]:
    """Train per ``opts`` and write the report; returns the fit result and the report dict.

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
    report = build_report(result, meta)
    return result, report


# what the demo and the gate fine-tune: the bundled stand-in for COCO weights (reference.models.pretrain)
DEMO_WEIGHTS = STANDIN


def run_gate(recipe: str = "ci", seed: int = 0, epochs: int | None = None) -> tuple[CocoResult, EpochRecord]:
    """The accuracy gate's run: the pretrained stand-in fine-tuned with the recipe on the bundled data (the
    tutorial's head surgery for its two classes), evaluated once at the end on the bundled validation split.

    The same training as ``tvref demo`` with the same seed (the demo's per-epoch validation runs on a forked
    RNG and does not change the weights), without the per-epoch validation passes.
    """
    import tempfile

    data = fixtures_dir() / "pennfudan"
    rec = get_recipe(recipe)
    seed_everything(seed)
    train, val, num_classes = split_datasets(data, None, rec, seed)
    model = build_model("small_maskrcnn", num_classes, DEMO_WEIGHTS)
    cfg = FitConfig("small_maskrcnn", num_classes, rec, epochs or rec.epochs, seed, "cpu", print_freq=10**9,
                    classes=dataset_classes(train, num_classes))
    with tempfile.TemporaryDirectory(prefix="tvref-gate-") as tmp:
        fitted = fit(model, train, None, cfg, tmp)
    return evaluate(model, make_loader(val, 4, train=False, seed=seed, epoch=0), "cpu"), fitted.history[-1]


def load_model(checkpoint: Path, device: torch.device):
    """The model a checkpoint was trained as, with its weights; refuses files that are not checkpoints."""
    from ..models import BUILDERS, freeze_batchnorm, has_frozen_batchnorm, is_box_only_state

    try:
        state = load_checkpoint(checkpoint)
    except CheckpointError as exc:
        raise JobError(str(exc)) from exc
    name, classes = state.get("model_name"), state.get("num_classes")
    if not isinstance(name, str) or name not in BUILDERS:
        raise JobError(f"{checkpoint}: model_name {_short(name)} is not one of {', '.join(BUILDERS)}")
    if not isinstance(classes, int) or isinstance(classes, bool) or not 2 <= classes <= MAX_CLASSES:
        raise JobError(f"{checkpoint}: num_classes {_short(classes)} is not a whole number from 2 to {MAX_CLASSES}")
    if not isinstance(state.get("model"), dict):
        raise JobError(f"{checkpoint}: holds no model weights ('model' is {type(state.get('model')).__name__})")
    try:
        model = build_model(name, classes)
        if is_box_only_state(state["model"], model):  # trained on targets without masks
            make_box_only(model)
        if has_frozen_batchnorm(state["model"], model):  # fine-tuned from pretrained weights
            freeze_batchnorm(model.backbone.body)
        model.load_state_dict(state["model"])
    except Exception as exc:  # noqa: BLE001 - whatever does not fit, in one line naming the file
        detail = (str(exc).splitlines() or [""])[0][:200]
        raise JobError(f"{checkpoint}: its weights do not fit {name} with {classes} classes "
                       f"({type(exc).__name__}: {detail})") from exc
    return model.to(device).eval(), state


MAX_CLASSES = 100_000  # a head this wide is a corrupted checkpoint, not a model


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."


def run_evaluate(checkpoint: Path, data: Path, fmt: str | None, device: str, backend: str) -> CocoResult:
    dev = resolve_device(device)
    model, state = load_model(checkpoint, dev)
    try:
        recipe = get_recipe(state.get("recipe", "ci"))
    except (ValueError, TypeError) as exc:
        raise JobError(f"{checkpoint}: recipe {_short(state.get('recipe'))} is not one of this project's") from exc
    ds = _open(validation_folder(data, beside_train=False) or data, fmt, recipe, False)
    classes = _num_classes(ds)
    if classes != int(state["num_classes"]):
        raise JobError(f"{data}: {classes} classes, but the model in {checkpoint} has {state['num_classes']}")
    trained, now = checkpoint_classes(state, checkpoint), dataset_classes(ds, classes)
    if trained is not None and now is not None and trained != now:
        log.warning("%s: classes %s, but the model in %s was trained on %s: labels are compared by number",
                    data, now, checkpoint, trained)
    if predicts_masks(model) and "masks" not in target_keys(ds):
        make_box_only(model)
        log.info("%s: the annotations have no masks: evaluating the boxes of the model in %s only (bbox)",
                 dataset_root(ds), checkpoint)
    return evaluate(model, make_loader(ds, 4, train=False, seed=0, epoch=0), dev, backend=backend)


def run_predict(checkpoint: Path, image: Path, out: Path, score_threshold: float, mask_threshold: float,
                device: str = "cpu") -> int:
    """Draw the predictions for one image file, labelled with the checkpoint's class names (class ids for a
    checkpoint without them); returns how many detections passed the threshold."""
    from torchvision.transforms.v2 import functional as F

    from ..data.images import read_rgb
    from ..reporting.render import draw_instances, upscale_for, with_caption

    check_output_file(out, "--out", not_same_as=image)
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
    names = checkpoint_classes(state, checkpoint)
    drawn = draw_instances(img, output["boxes"][keep], (masks[keep, 0] > mask_threshold) if masks is not None
                           else None, detection_labels(output["labels"][keep], output["scores"][keep], names),
                           scale=upscale_for(*img.shape[-2:]))
    save_png(with_caption(drawn, [f"{int(keep.sum())} detections, score >= {score_threshold}"]), out)
    return int(keep.sum())


def write_prediction_pictures(checkpoint: Path, val: Dataset, out_dir: Path, count: int = 4) -> list[Path]:
    """Ground truth beside predictions for the first ``count`` samples, labelled with the checkpoint's class
    names (the dataset's for a checkpoint without them)."""
    model, state = load_model(checkpoint, torch.device("cpu"))
    names = checkpoint_classes(state, checkpoint) or class_names_of(val)
    loader = make_loader(Subset(val, list(range(min(count, len(val))))), 4, train=False, seed=0, epoch=0)
    paths = []
    for k, (target, output, _) in enumerate(predict(model, loader, "cpu")):
        image = val[k][0]
        p = out_dir / f"predictions_{k}.png"
        save_png(side_by_side(image, target, output, class_names=names), p)
        paths.append(p)
    return paths


def _demo_gate(final: CocoResult | None, last_epoch: EpochRecord | None,
               epochs: int | None) -> tuple[list[str], bool | None, list[dict]]:
    """The gate's lines for the report, whether it passed (None when it was not checked), and one record per
    check (empty when not checked)."""
    if epochs is not None:
        return ["not checked: --epochs differs from the recipe"], None, []
    try:
        checks = check_gate(final, gate_for("ci"), last_epoch)
    except GateUnavailable as exc:
        return [f"not checked: {exc}"], None, []
    return [str(c) for c in checks], all(c.passed for c in checks), [c.to_dict() for c in checks]


def run_demo(out: Path, epochs: int | None = None, seed: int = 0, on_epoch=None,
             overwrite: bool = False) -> dict[str, Any]:
    """The main job on the bundled data: validate, fine-tune the pretrained stand-in as the tutorial does,
    evaluate, report, draw.

    An earlier run in ``out`` is refused before anything runs unless ``overwrite`` is set.
    """
    check_run_folder(out, None, overwrite)
    check_writable_folder(out, "--out")
    data = fixtures_dir() / "pennfudan"
    validation: dict[str, Report] = {}
    for split in ("train", "val"):
        validation[split] = validate_dataset(open_dataset(data / split, "pennfudan"), num_classes=2)
        if not validation[split].ok:
            raise JobError(f"bundled data {data / split} breaks the contract:\n{validation[split].render_text()}")
    options = TrainOptions(data=data, out=out, weights=DEMO_WEIGHTS, epochs=epochs, seed=seed, overwrite=overwrite)
    result, report = run_train(options, on_epoch=on_epoch)
    report["validation"] = {k: v.to_dict()["summary"] for k, v in validation.items()}
    last_epoch = result.history[-1] if result.history else None
    report["gate"], report["gate_passed"], report["gate_checks"] = _demo_gate(result.final, last_epoch, epochs)
    paths = write_report(report, out)
    val = open_dataset(data / "val", "pennfudan", transforms_for(get_recipe("ci"), False))
    pictures = write_prediction_pictures(out / "last.pt", val, out)
    return {"report": report, "paths": {**{k: str(v) for k, v in paths.items()},
                                        "checkpoint": str(out / "last.pt"), "metadata": str(out / "checkpoint.json"),
                                        "pictures": [str(p) for p in pictures]}}
