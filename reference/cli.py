"""Command line: ``tvref`` / ``python -m reference``.

Exit codes: 0 success; 1 contract errors, a failed accuracy gate, a non-finite loss or a snapshot that changed;
2 bad input (unknown names, bad option values, unusable device, unreadable data, checkpoint, snapshot or gate
file, a gate measured on another torch line, an output that cannot or must not be written), reported in one line
naming the file, without a traceback unless ``--verbose``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import sys
from pathlib import Path
from typing import Any, Iterator, Sequence

from tqdm import tqdm

from .errors import UserError, first_line

log = logging.getLogger("reference")

# names the parser offers, kept here so that building it (``tvref --help``) imports no torch; a test checks them
# against the registries they come from (reference.data.FORMATS, models.BUILDERS, training.RECIPES,
# transforms.PRESETS, snapshot.Tolerances, metric_logger's logger names)
FORMATS = ("pennfudan", "labelme", "coco")
MERGE_MODES = ("whitespace", "case")  # reference.data.MERGE_MODES
MODELS = ("small_maskrcnn", "maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2", "fasterrcnn_resnet50_fpn",
          "fasterrcnn_mobilenet_v2", "keypointrcnn_resnet50_fpn")
RECIPES = ("tutorial", "mills", "ci")
RECIPE_EPOCHS = {"ci": 5}  # the demo's bar length before the recipe module is imported; checked by a test
PRESETS = ("tutorial", "tutorial-legacy", "mills", "eval")
TOLERANCES = {"box_atol": 1.0, "score_atol": 0.01, "mask_iou_min": 0.9, "ap_atol": 0.01}
ENGINE_LINES, COCO_LINES, PROGRESS = "reference.engine.loops.lines", "reference.engine.loops.lines.coco", \
    "reference.engine.loops.progress"


class _Display(logging.Handler):
    """The console while a job runs: one live bar per phase on a terminal, one line per epoch elsewhere.

    Fed by the engine's per-iteration records on ``reference.engine.loops.progress`` (a bar per training epoch with
    the latest loss and learning rate and the last AP, a bar per evaluation pass; bars vanish when their
    phase ends) and by the training loop's per-epoch callback. With ``--verbose`` the engine's full lines
    are shown instead (no bars); with ``--quiet`` nothing.
    """

    def __init__(self, epochs: int | None, *, bars: bool, lines: bool):
        super().__init__(logging.DEBUG)
        self.epochs, self.bars, self.lines = epochs, bars, lines
        self.bar: Any = None
        self.header: str | None = None
        self.last_ap: float | None = None

    def _desc(self, header: str) -> str:
        found = re.match(r"Epoch: \[(\d+)\]", header)
        if not found:
            return "evaluating"
        return f"epoch {int(found.group(1)) + 1}/{self.epochs or '?'}"

    def emit(self, record: logging.LogRecord) -> None:
        p = getattr(record, "progress", None)
        if p is None or not self.bars:
            return
        if self.bar is None or p.header != self.header or p.iteration < self.bar.n:
            self._close_bar()
            self.header = p.header
            self.bar = tqdm(total=p.total, desc=self._desc(p.header), unit="it", leave=False, file=sys.stderr,
                            dynamic_ncols=True)
        post = {}
        if "loss" in p.values:
            post["loss"] = f"{p.values['loss']:.4f}"
        if "lr" in p.values:
            post["lr"] = f"{p.values['lr']:.2e}"
        if self.last_ap is not None:
            post["last bbox AP"] = f"{self.last_ap:.3f}"
        self.bar.set_postfix(post, refresh=False)
        self.bar.update(p.iteration + 1 - self.bar.n)

    def __call__(self, rec) -> None:
        """The training loop's per-epoch callback."""
        if rec.bbox_ap is not None:
            self.last_ap = rec.bbox_ap
        self._close_bar()
        if self.lines:
            parts = [f"epoch {rec.epoch + 1}/{self.epochs or '?'}", f"loss {rec.train_loss:.4f}"]
            if rec.val_loss is not None:
                parts.append(f"val loss {rec.val_loss:.4f}")
            if rec.bbox_ap is not None:
                parts.append(f"bbox AP {rec.bbox_ap:.3f}")
            print("  ".join(parts), file=sys.stderr, flush=True)

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def close(self) -> None:
        self._close_bar()
        super().close()


@contextlib.contextmanager
def _console(quiet: bool, verbose: bool, epochs: int | None = None, *, tables: bool = True) -> Iterator[_Display]:
    """Logging and progress for one command; every logger setting is restored afterwards (``main`` runs
    in-process in tests and notebooks).

    Default: INFO messages, a live display (see :class:`_Display`), the engine's per-iteration lines and COCO
    tables hidden. ``--verbose``: DEBUG and the engine's full lines (``tables=False`` keeps the COCO tables
    out of the log, for commands that print them as their result). ``--quiet``: warnings only.
    """
    root = logging.getLogger()
    names = (ENGINE_LINES, COCO_LINES, PROGRESS)
    saved = (list(root.handlers), root.level,
             [(logging.getLogger(n).level, logging.getLogger(n).propagate, list(logging.getLogger(n).handlers))
              for n in names])
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO,
                        format="%(message)s", stream=sys.stderr, force=True)
    lines, coco, progress = (logging.getLogger(n) for n in names)
    lines.setLevel(logging.INFO if verbose else logging.WARNING)
    coco.setLevel(logging.INFO if verbose and tables else logging.WARNING)
    terminal = sys.stderr.isatty()
    display = _Display(epochs, bars=terminal and not quiet and not verbose,
                       lines=not terminal and not quiet and not verbose)
    progress.propagate = False
    progress.setLevel(logging.DEBUG if display.bars else logging.WARNING)
    progress.addHandler(display)
    try:
        yield display
    finally:
        display.close()
        for h in root.handlers:
            if h not in saved[0]:
                root.removeHandler(h)
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for n, (level, propagate, handlers) in zip(names, saved[2]):
            logger = logging.getLogger(n)
            logger.setLevel(level)
            logger.propagate = propagate
            logger.handlers[:] = handlers


def _cmd_validate(a: argparse.Namespace) -> int:
    from .app.validate import ValidateOptions, validate

    opts = ValidateOptions(spec=a.spec, fmt=a.format, args=a.arg, transforms=a.transforms, num_classes=a.num_classes,
                           num_keypoints=a.num_keypoints, max_samples=a.max_samples, model_ready=a.model_ready,
                           json=Path(a.json) if a.json else None, render=Path(a.render) if a.render else None,
                           render_all=a.render_all, strict=a.strict, classes=a.classes,
                           merge_similar_names=a.merge_similar_names, images=a.images, val=a.val, workers=a.workers,
                           headers_only=a.headers_only, timeout=a.timeout)

    def bar(count: int) -> tqdm:
        # disable=None: a bar on a terminal, whatever the dataset size; none in logs and pipes
        return tqdm(range(count), desc="validating", unit="sample", disable=True if a.quiet else None,
                    file=sys.stderr)

    result = validate(opts, progress=bar)
    for line in result.lines():
        print(line)
    return 0 if result.ok else 1


def _cmd_train(a: argparse.Namespace) -> int:
    from .app.train import TrainOptions, shown_epochs, train

    opts = TrainOptions(data=Path(a.data), out=Path(a.out), model=a.model, recipe=a.recipe, fmt=a.format,
                        weights=None if a.weights.lower() == "none" else a.weights, epochs=a.epochs, seed=a.seed,
                        device=a.device, amp=a.amp, resume=Path(a.resume) if a.resume else None,
                        print_freq=a.print_freq, group_factor=a.aspect_ratio_group_factor, overwrite=a.overwrite,
                        batch_size=a.batch_size, lr=a.lr, workers=a.workers, classes=a.classes,
                        merge_similar_names=a.merge_similar_names)
    a.display.epochs = shown_epochs(opts)
    for line in train(opts, on_epoch=a.display).lines():
        print(line)
    return 0


def _cmd_evaluate(a: argparse.Namespace) -> int:
    from .app.evaluate import evaluate

    # the table is this command's result: printed once, here (main keeps it out of --verbose's log)
    result = evaluate(Path(a.checkpoint), Path(a.data), a.format, a.device, a.backend,
                      json_out=Path(a.json) if a.json else None)
    print(result.text())
    return 0


def _cmd_predict(a: argparse.Namespace) -> int:
    from .app.predict import predict

    print(predict(Path(a.checkpoint), Path(a.image), Path(a.out), a.score_threshold, a.mask_threshold,
                  a.device).line())
    return 0


def _cmd_demo(a: argparse.Namespace) -> int:
    from .app.demo import demo

    a.display.epochs = a.epochs or RECIPE_EPOCHS["ci"]
    run = demo(Path(a.out), epochs=a.epochs, seed=a.seed, on_epoch=a.display, overwrite=a.overwrite)
    for line in run.lines():
        print(line)
    return 0 if run.ok else 1


def _cmd_snapshot_record(a: argparse.Namespace) -> int:
    from .app.snapshot import Tolerances, record_file

    tolerances = Tolerances(box_atol=a.box_atol, score_atol=a.score_atol, mask_iou_min=a.mask_iou_min,
                            ap_atol=a.ap_atol)
    print(record_file(Path(a.out), Path(a.checkpoint), Path(a.data), fmt=a.format, device=a.device,
                      max_images=a.images, tolerances=tolerances, overwrite=a.overwrite).line())
    return 0


def _cmd_snapshot_check(a: argparse.Namespace) -> int:
    from .app.snapshot import check_snapshot

    result = check_snapshot(Path(a.snapshot), Path(a.checkpoint), Path(a.data), fmt=a.format, device=a.device)
    for line in result.lines():
        print(line)
    return 0 if result.ok else 1


def _cmd_gate_measure(a: argparse.Namespace) -> int:
    from .app import gate as user_gate

    a.display.epochs = a.epochs or RECIPE_EPOCHS.get(a.recipe)

    def on_seed(seed: int, values: dict[str, float], seconds: float) -> None:
        print(user_gate.seed_line(seed, values, seconds), flush=True)

    measured = user_gate.measure_file(Path(a.out), Path(a.data), overwrite=a.overwrite, recipe=a.recipe,
                                      weights=None if a.weights.lower() == "none" else a.weights, model=a.model,
                                      seeds=a.seeds, epochs=a.epochs, fmt=a.format, min_tolerance=a.min_tolerance,
                                      on_seed=on_seed, on_epoch=a.display)
    for line in measured.lines():
        print(line)
    return 0


def _cmd_gate_check(a: argparse.Namespace) -> int:
    from .app import gate as user_gate

    spec = user_gate.load(Path(a.expected))
    a.display.epochs = spec.epochs
    run = user_gate.check(spec, Path(a.data), a.seed, on_epoch=a.display)
    for line in run.lines():
        print(line)
    print(run.summary())
    return 0 if run.passed else 1


def _cmd_env(a: argparse.Namespace) -> int:
    from .app.env import environment

    env = environment()
    for line in env.lines():
        print(line)
    return 0 if env.ok else 1


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors in one line (``tvref train: error: ...``), exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text[:40]!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text[:40]!r}")
    return value


class _HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the text names it already or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (not action.option_strings or "default" in text.lower() or action.default is None
                or action.default is argparse.SUPPRESS or action.default == [] or action.help == argparse.SUPPRESS):
            return text
        return f"{text} (default: {'off' if action.default is False else '%(default)s'})"


def _global_flags(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """--verbose and --quiet, accepted before the subcommand (top) and after it (where they only set)."""
    extra: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    parser.add_argument("--verbose", action="store_true", help="the engine's full per-iteration lines and COCO "
                        "tables, debug logging, tracebacks (default: off)", **extra)
    parser.add_argument("--quiet", action="store_true", help="warnings only, no progress display (default: off)",
                        **extra)


def _sub(sub, name: str, **kwargs) -> argparse.ArgumentParser:
    p = sub.add_parser(name, formatter_class=_HelpFormatter, **kwargs)
    _global_flags(p, top=False)
    return p


def build_parser() -> argparse.ArgumentParser:
    """The ``tvref`` parser; building it imports no torch (``tvref --help`` stays fast)."""
    p = _Parser(prog="tvref", formatter_class=_HelpFormatter, description="Dataset contract, reference engine and "
                "reproducibility suite for torchvision detection fine-tuning.")
    _global_flags(p, top=True)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    v = _sub(sub, "validate", help="check a dataset against the contract")
    v.add_argument("spec", help="package.module:Name, path/to/file.py:Name, or a dataset folder")
    v.add_argument("--format", choices=FORMATS, help="dataset folder layout (default: detected from the folder)")
    v.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE",
                   help="constructor argument, repeatable (Python literal where possible; default: none)")
    v.add_argument("--transforms", choices=PRESETS, help="apply this preset's evaluation pipeline (its train=False "
                   "half) to the samples before checking them; folders only (default: none)")
    v.add_argument("--num-classes", type=int, help="head size, background included (default: not checked)")
    v.add_argument("--num-keypoints", type=int, help="keypoints per instance (default: not checked)")
    v.add_argument("--max-samples", type=int, help="check only the first N samples (default: all)")
    v.add_argument("--model-ready", action="store_true", help="check what reaches the model (float in [0, 1])")
    v.add_argument("--json", help="write the JSON report here (default: none)")
    v.add_argument("--render", help="write a PNG per offending sample into this folder (default: none)")
    v.add_argument("--render-all", action="store_true",
                   help="with --render, draw every sample checked, clean ones too (default: offending ones only)")
    v.add_argument("--strict", action="store_true", help="warnings fail too (infos never do)")
    v.add_argument("--classes", metavar="FILE|A,B,...",
                   help="the object classes: a labelme labels.txt (__ignore__ and _background_ are left out) or a "
                        "comma-separated list; labels and COCO categories outside it are reported (default: none)")
    v.add_argument("--merge-similar-names", choices=MERGE_MODES,
                   help="read class names (LabelMe labels, COCO categories, --classes) that differ only in "
                        "surrounding whitespace ('whitespace') or in case too ('case') as one class (default: "
                        "separate classes, with a CLASS_NAME_SIMILAR warning)")
    v.add_argument("--images", metavar="DIR", help="COCO image root that file_name is relative to (default: the "
                   "annotation file's folder, its images/, or CVAT's images/<subset>/, whichever holds the images)")
    v.add_argument("--val", metavar="VAL", help="a validation split to check too, and against SPEC: images in "
                   "both, classes missing from one, a class name with two ids (default: none)")
    v.add_argument("--workers", type=int, default=0, metavar="N",
                   help="load samples in N DataLoader worker processes (default: 0, in this process)")
    v.add_argument("--headers-only", action="store_true",
                   help="read only the image files' headers (their size), not their pixels: much faster; an image "
                        "whose body is corrupt goes unnoticed; the images are decoded anyway with --transforms, "
                        "--model-ready, --timeout, and for --val's duplicate check")
    v.add_argument("--timeout", type=_positive_float, metavar="S",
                   help="load samples in a worker process; one that takes longer than S seconds is reported "
                        "(GETITEM_TIMEOUT) and validation goes on (default: no time limit)")
    v.set_defaults(func=_cmd_validate)

    t = _sub(sub, "train", help="train a model (also under torchrun)")
    t.add_argument("--data", required=True,
                   help="dataset folder, with train/ and val/ (or valid/, as Roboflow exports) or split 4:1 (required)")
    t.add_argument("--format", choices=FORMATS, help="dataset layout (default: detected from the folder)")
    t.add_argument("--classes", metavar="FILE|A,B,...",
                   help="the object classes and their ids (1, 2, ... in this order), as validate takes them; a "
                   "label outside them stops training before it starts (default: the training split's classes)")
    t.add_argument("--merge-similar-names", choices=MERGE_MODES,
                   help="class names that differ only in whitespace ('whitespace') or case too ('case') train as "
                        "one class, as validate reads them (default: separate classes, with a warning)")
    t.add_argument("--model", default="small_maskrcnn", choices=MODELS, help="model to build")
    t.add_argument("--recipe", default="ci", choices=RECIPES,
                   help="optimizer, schedule, batch size, transforms and epochs from the seeds")
    t.add_argument("--weights", default="none",
                   help="none, DEFAULT (COCO weights from the hub cache only), standin (small_maskrcnn: the bundled "
                   "stand-in pretrained on generated shapes) or a path (default: none)")
    t.add_argument("--epochs", type=_positive_int,
                   help="default: the recipe's; when resuming, the checkpoint's (more re-plans a cosine schedule)")
    t.add_argument("--batch-size", type=_positive_int, help="images per batch (default: the recipe's)")
    t.add_argument("--lr", type=_positive_float, help="base learning rate (default: the recipe's)")
    t.add_argument("--workers", type=_non_negative_int, default=0, metavar="N",
                   help="load training and validation batches in N worker processes (default: 0, in this "
                   "process; other worker counts give other, equally seeded, augmentations)")
    t.add_argument("--out", required=True, help="run folder; refused if it holds an earlier run (required)")
    t.add_argument("--resume", help="a checkpoint to continue (the run's own --out/last.pt continues that run; "
                   "default: none)")
    t.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out")
    t.add_argument("--seed", type=int, default=0, help="seed of every random source")
    t.add_argument("--device", default="cpu", help="cpu, cuda or mps")
    t.add_argument("--amp", action="store_true", help="mixed precision with a gradient scaler (CUDA; default: off)")
    t.add_argument("--print-freq", type=int, default=10,
                   help="iterations between the engine's log lines (shown with --verbose)")
    t.add_argument("--aspect-ratio-group-factor", type=int, default=-1,
                   help="batch images of similar aspect ratio (the references use 3); -1: off, as the tutorial")
    t.set_defaults(func=_cmd_train)

    e = _sub(sub, "evaluate", help="COCO evaluation of a checkpoint")
    e.add_argument("--checkpoint", required=True, help="a checkpoint of this project (required)")
    e.add_argument("--data", required=True,
                   help="dataset folder; its val/ (or valid/) subfolder when present (required)")
    e.add_argument("--format", choices=FORMATS, help="dataset layout (default: detected from the folder)")
    e.add_argument("--device", default="cpu", help="cpu, cuda or mps")
    e.add_argument("--backend", default="pycocotools", choices=["pycocotools", "faster_coco_eval"],
                   help="COCO evaluator")
    e.add_argument("--json", help="also write the stats to this JSON file (default: none)")
    e.set_defaults(func=_cmd_evaluate)

    r = _sub(sub, "predict", help="draw a checkpoint's predictions on an image")
    r.add_argument("--checkpoint", required=True, help="a checkpoint of this project (required)")
    r.add_argument("--image", required=True, help="image file (required)")
    r.add_argument("--out", required=True, help="PNG to write; never the input (required)")
    r.add_argument("--score-threshold", type=float, default=0.5, help="draw detections scoring at least this")
    r.add_argument("--mask-threshold", type=float, default=0.5, help="binarise mask probabilities at this")
    r.add_argument("--device", default="cpu", help="cpu, cuda or mps")
    r.set_defaults(func=_cmd_predict)

    d = _sub(sub, "demo", help="the main job: validate, train, evaluate and report on the bundled data")
    d.add_argument("--out", default="runs/demo", help="run folder; refused if it holds an earlier run")
    d.add_argument("--epochs", type=_positive_int,
                   help="override the ci recipe's epoch count, which skips the gate (default: the recipe's)")
    d.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out")
    d.add_argument("--seed", type=int, default=0, help="seed of every random source")
    d.set_defaults(func=_cmd_demo)

    env = _sub(sub, "env", help="versions, and whether pycocotools works with this numpy")
    env.set_defaults(func=_cmd_env)

    _add_snapshot_parser(sub, FORMATS)
    _add_gate_parser(sub)
    return p


def _whole_number(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text[:40]!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    return _whole_number(text, 0)


def _positive_int(text: str) -> int:
    return _whole_number(text, 1)


def _add_snapshot_parser(sub, formats: Sequence[str]) -> None:
    default = argparse.Namespace(**TOLERANCES)
    s = _sub(sub, "snapshot", help="record a model's detections and COCO stats; check them after an upgrade")
    actions = s.add_subparsers(dest="action", required=True, parser_class=_Parser)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--checkpoint", required=True, help="a checkpoint of this project (required)")
        p.add_argument("--data", required=True,
                       help="dataset folder; its val/ subfolder when present (required)")
        p.add_argument("--format", choices=formats, help="dataset layout (default: detected from the folder)")
        p.add_argument("--device", default="cpu", help="cpu, cuda or mps (default: cpu)")

    r = _sub(actions, "record", help="run the model on the first images and write a snapshot")
    common(r)
    r.add_argument("--images", type=_positive_int, default=20, help="how many images, from the first (default: 20)")
    r.add_argument("--out", required=True, help="snapshot JSON to write (required)")
    r.add_argument("--overwrite", action="store_true", help="replace an existing --out (default: refuse)")
    r.add_argument("--box-atol", type=float, default=default.box_atol,
                   help=f"max coordinate drift of a matched box, pixels (default: {default.box_atol})")
    r.add_argument("--score-atol", type=float, default=default.score_atol,
                   help=f"max score drift of a matched detection (default: {default.score_atol})")
    r.add_argument("--mask-iou-min", type=float, default=default.mask_iou_min,
                   help=f"min IoU of a matched detection's binarised masks (default: {default.mask_iou_min})")
    r.add_argument("--ap-atol", type=float, default=default.ap_atol,
                   help=f"max change of each COCO stat (default: {default.ap_atol})")
    r.set_defaults(func=_cmd_snapshot_record)

    c = _sub(actions, "check", help="re-record with the snapshot's tolerances and image count, compare, and "
                           "print one line per change, a summary, then the counts of each change and the largest "
                           "drifts (exit 0: unchanged, 1: changed, 2: bad input)")
    c.add_argument("snapshot", help="snapshot JSON written by 'snapshot record'")
    common(c)
    c.set_defaults(func=_cmd_snapshot_check)


def _at_least_two(text: str) -> int:
    return _whole_number(text, 2)


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text[:40]!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number, 0 or more, got {text[:40]!r}")
    return value


def _add_gate_parser(sub) -> None:
    g = _sub(sub, "gate", help="an accuracy gate for your own fine-tuning: measure it over seeds, check a run "
             "against it")
    actions = g.add_subparsers(dest="action", required=True, parser_class=_Parser)
    m = _sub(actions, "measure", help="train seeds 0..N-1 and write rows [task, metric, expected, tolerance] from "
             "their mean and spread")
    m.add_argument("--data", required=True, help="dataset folder, as for tvref train (required)")
    m.add_argument("--format", choices=FORMATS, help="dataset layout (default: detected from the folder)")
    m.add_argument("--recipe", required=True, choices=RECIPES, help="recipe to train with (required)")
    m.add_argument("--weights", required=True,
                   help="what the fine-tuning starts from: none, DEFAULT, standin or a weights file, as for tvref "
                   "train (required; a file is recorded by path and SHA-256)")
    m.add_argument("--model", default="small_maskrcnn", choices=MODELS, help="model to build")
    m.add_argument("--seeds", type=_at_least_two, default=5, metavar="N",
                   help="train seeds 0..N-1, at least 2; 5 or more recommended, fewer give a poor spread")
    m.add_argument("--epochs", type=_positive_int, help="default: the recipe's")
    m.add_argument("--min-tolerance", type=_non_negative_float, default=0.0,
                   help="the smallest tolerance a row gets, whatever the seeds' spread")
    m.add_argument("--out", required=True, help="gate JSON to write (required)")
    m.add_argument("--overwrite", action="store_true", help="replace an existing --out (default: refuse)")
    m.set_defaults(func=_cmd_gate_measure)
    c = _sub(actions, "check", help="train once with the gate's settings and compare (exit 0: every row passes, "
             "1: one fails, 2: bad input, or a gate measured on another torch line)")
    c.add_argument("expected", help="gate JSON written by 'tvref gate measure'")
    c.add_argument("--data", required=True, help="dataset folder, as for tvref train (required)")
    c.add_argument("--seed", type=int, help="seed of the run (default: the first measured seed)")
    c.set_defaults(func=_cmd_gate_check)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    with _console(a.quiet, a.verbose, tables=a.command != "evaluate") as display:
        a.display = display
        return _run(a)


def _run(a: argparse.Namespace) -> int:
    """The command, with bad input reported in one line (exit 2) unless ``--verbose``."""
    try:
        return a.func(a)
    except UserError as exc:
        return _refused(exc, a.verbose)
    except OSError as exc:  # an output that cannot be written after all (a disk filling up mid-run), or an input
        return _refused(exc, a.verbose)
    except FloatingPointError as exc:
        from .app.train import NonFiniteLossError

        if not isinstance(exc, NonFiniteLossError):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _refused(exc: Exception, verbose: bool) -> int:
    """``error: <the first line>`` on stderr and exit code 2; with ``verbose`` the exception goes on."""
    if verbose:
        raise exc
    print(f"error: {first_line(exc) or type(exc).__name__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
