"""``tvref demo``, the main job on the bundled data (validate, fine-tune, evaluate, report, draw), and the
accuracy gate's run (the same training, checked against the gate's rows)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import Dataset, Subset

from ..contract import Report, class_names_of, validate_dataset
from ..data import open_dataset
from ..engine.coco_eval import CocoResult
from ..engine.loops import evaluate, predict
from ..errors import JobError
from ..models import STANDIN, build_model
from ..paths import fixtures_dir
from ..reporting.render import save_png, side_by_side
from ..reporting.run_report import write_report
from ..training.accuracy_gate import GateUnavailable, check_gate, gate_for
from ..training.fit import EpochRecord, FitConfig, fit, get_recipe, make_loader, transforms_for
from .checkpoints import checkpoint_classes, load_model
from .datasets import dataset_classes, split_datasets
from .outputs import check_run_folder, check_writable_folder
from .train import TrainOptions, run_train, seed_everything, stats_lines

# what the demo and the gate fine-tune: the bundled stand-in for COCO weights (reference.models.pretrain)
DEMO_WEIGHTS = STANDIN


def run_gate(recipe: str = "ci", seed: int = 0, epochs: int | None = None) -> tuple[CocoResult, EpochRecord]:
    """The accuracy gate's run: the pretrained stand-in fine-tuned with the recipe on the bundled data (the
    tutorial's head surgery for its two classes), evaluated once at the end on the bundled validation split.

    The same training as ``tvref demo`` with the same seed (the demo's per-epoch validation runs on a forked
    RNG and does not change the weights), without the per-epoch validation passes.
    """
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


def demo_gate(final: CocoResult | None, last_epoch: EpochRecord | None,
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


def run_demo(out: Path, epochs: int | None = None, seed: int = 0, on_epoch: Callable | None = None,
             overwrite: bool = False) -> dict[str, Any]:
    """The main job on the bundled data: validate, fine-tune the pretrained stand-in as the tutorial does,
    evaluate, report, draw; returns the report and the files written.

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
    report["gate"], report["gate_passed"], report["gate_checks"] = demo_gate(result.final, last_epoch, epochs)
    paths = write_report(report, out)
    val = open_dataset(data / "val", "pennfudan", transforms_for(get_recipe("ci"), False))
    pictures = write_prediction_pictures(out / "last.pt", val, out)
    return {"report": report, "paths": {**{k: str(v) for k, v in paths.items()},
                                        "checkpoint": str(out / "last.pt"), "metadata": str(out / "checkpoint.json"),
                                        "pictures": [str(p) for p in pictures]}}


@dataclass(frozen=True)
class DemoRun:
    """A finished demo: its report and files (as :func:`run_demo` returns them)."""

    report: dict[str, Any]
    paths: dict[str, Any]

    @property
    def ok(self) -> bool:
        """False only when the gate was checked and failed (a gate not checked passes)."""
        return self.report["gate_passed"] is not False

    def lines(self) -> list[str]:
        """The AP lines, the gate's lines, the training time and the files written."""
        lines = stats_lines(self.report["coco"]) + [f"gate: {line}" for line in self.report["gate"]]
        lines.append(f"trained in {self.report['timings']['train_seconds']} s; files:")
        return lines + [f"  {k}: {v}" for k, v in self.paths.items()]


def demo(out: Path, epochs: int | None = None, seed: int = 0, on_epoch: Callable | None = None,
         overwrite: bool = False) -> DemoRun:
    """:func:`run_demo` as a :class:`DemoRun`."""
    done = run_demo(out, epochs=epochs, seed=seed, on_epoch=on_epoch, overwrite=overwrite)
    return DemoRun(done["report"], done["paths"])
