"""The accuracy gate for your own fine-tuning: ``tvref gate measure`` and ``tvref gate check``.

``measure`` trains your run over seeds 0..N-1 (each as ``tvref train`` would: your data's ``train/`` and
``val/``, or its held-out fifth; each into its own temporary folder) and writes the rows the project's own gate
uses, ``[task, metric, expected, tolerance]`` (see :mod:`reference.training.accuracy_gate`): ``expected`` is the
seeds' mean and ``tolerance`` comes from their spread (:func:`reference.training.accuracy_gate.tolerance_from`),
for every AP the final COCO evaluation gives (``bbox AP``; Mask R-CNN also ``segm AP``) and for ``train loss``,
the last epoch's mean training loss (as the demo's gate). Beside the rows: the per-seed values, the versions, the
recipe's settings, the model, weights, data and epochs.

``check`` trains once more, with the recorded model, recipe (by name), weights and epochs and the first measured
seed, and compares. What is refused as bad input (:class:`GateFileError`, exit code 2): a missing or malformed
file (one line naming the file, the field and the rule), a missing data folder or weights file, and a torch line
(``2.14``) other than the one measured on: the same seeded run lands elsewhere on another torch release, so the
band does not carry over; measure again there. What is run and reported (``notes``): recipe settings, a weights
file or a data folder that differ from the measured ones. The check runs the recipe as the installed code defines
it, so a change to the recipe is one of the things the gate is there to catch; the notes say what changed.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..engine.coco_eval import STAT_NAMES, CocoResult
from ..training.accuracy_gate import TOLERANCE_RULE, GateCheck, check_gate, metric_value, tolerance_from, torch_line
from ..errors import JobError, first_line
from ..training.fit import EpochRecord, get_recipe
from .outputs import check_output_file
from .train import TrainOptions, run_train

FORMAT = "tvref-gate/1"
MIN_SEEDS = 2
IOU_TYPES = ("bbox", "segm", "keypoints")  # the order rows are written in, then TRAIN_LOSS
# the last epoch's mean training loss (as the demo's gate): it moves with the learning rate, the epochs, a loss
# weight or an augmentation, and scatters less over seeds than AP on a small validation split
TRAIN_LOSS = "train loss"
# weights given by name rather than by file (build_model's own names)
WEIGHT_NAMES = ("DEFAULT", "standin")


class GateFileError(JobError):
    """A gate file that cannot be checked (missing, malformed, from another torch line); exit code 2."""


@dataclass(frozen=True)
class GateSpec:
    """A gate file as ``check`` reads it: the rows, and what to train them with."""

    path: Path
    rows: list[GateCheck]
    seeds: list[int]
    model: str
    recipe: dict[str, Any]  # asdict of the Recipe when measured; "name" selects the recipe to run
    weights: str | None
    weights_sha256: str | None
    epochs: int
    data_format: str | None
    data_fingerprint: dict[str, Any]
    torch: str
    raw: dict[str, Any] = field(repr=False, default_factory=dict)


@dataclass(frozen=True)
class GateRun:
    """One checked training: each row with its actual value, and what differed from the measured setup."""

    checks: list[GateCheck]
    seed: int
    notes: list[str]
    seconds: float

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def lines(self) -> list[str]:
        return [f"note: {n}" for n in self.notes] + [str(c) for c in self.checks]

    def summary(self) -> str:
        good = sum(c.passed for c in self.checks)
        return (f"gate check: {'PASS' if self.passed else 'FAIL'} ({good} of {len(self.checks)} rows pass; seed "
                f"{self.seed}, {self.seconds:.0f} s)")


def data_fingerprint(data: Path) -> dict[str, Any]:
    """The data folder's files by relative path and size (not contents: cheap on a large folder)."""
    files = sorted(p for p in data.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    total = 0
    for p in files:
        size = p.stat().st_size
        total += size
        digest.update(f"{p.relative_to(data).as_posix()}\t{size}\n".encode())
    return {"files": len(files), "bytes": total, "listing_sha256": digest.hexdigest()}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _weights_file(weights: str | None) -> Path | None:
    if weights is None or weights in WEIGHT_NAMES:
        return None
    return Path(weights)


def ap_metrics(result: CocoResult) -> list[str]:
    """The rows' metrics: each IoU type's AP that the evaluation gives (``bbox AP``, ``segm AP``, ...)."""
    return [f"{t} AP" for t in IOU_TYPES if t in result.stats]


def train_once(data: Path, *, model: str, recipe: str, weights: str | None, epochs: int | None, seed: int,
               fmt: str | None = None, on_epoch: Callable | None = None) -> tuple[CocoResult, EpochRecord]:
    """One ``tvref train`` run into a temporary folder; its final COCO evaluation and its last epoch."""
    with tempfile.TemporaryDirectory(prefix="tvref-gate-") as tmp:
        result, _ = run_train(TrainOptions(data=data, out=Path(tmp) / "run", model=model, recipe=recipe, fmt=fmt,
                                           weights=weights, epochs=epochs, seed=seed), on_epoch=on_epoch)
    if result.final is None:
        raise JobError(f"--data {data}: the run ended without a final evaluation")
    return result.final, result.history[-1]


def check_output(out: Path, overwrite: bool) -> None:
    """Refuse an ``--out`` that is a folder or, unless ``overwrite``, an existing file (before any training)."""
    check_output_file(out, "--out")
    if out.exists() and not overwrite:
        raise JobError(f"--out {out}: exists; pass --overwrite to replace it")


def measure(data: Path, *, recipe: str, weights: str | None, model: str = "small_maskrcnn", seeds: int = 5,
            epochs: int | None = None, fmt: str | None = None, min_tolerance: float = 0.0,
            on_seed: Callable[[int, dict[str, float], float], None] | None = None,
            on_epoch: Callable | None = None) -> dict[str, Any]:
    """Train seeds ``0..seeds-1`` and return the gate file's contents (write it with :func:`save`)."""
    if seeds < MIN_SEEDS:
        raise JobError(f"--seeds {seeds}: at least {MIN_SEEDS} are needed for a spread (5 or more recommended)")
    if not min_tolerance >= 0 or math.isinf(min_tolerance):
        raise JobError(f"--min-tolerance {min_tolerance}: must be a finite number, 0 or more")
    if not data.is_dir():
        raise JobError(f"--data {data}: no such folder")
    try:
        rec = get_recipe(recipe)
    except ValueError as exc:
        raise JobError(str(exc)) from exc
    wfile = _weights_file(weights)
    if wfile is not None and not wfile.is_file():
        raise JobError(f"--weights {weights}: no such file (give none, DEFAULT or a weights file)")
    values: dict[str, list[float]] = {}
    seconds: list[float] = []
    for seed in range(seeds):
        start = time.perf_counter()
        final, last_epoch = train_once(data, model=model, recipe=recipe, weights=weights, epochs=epochs, seed=seed,
                                       fmt=fmt, on_epoch=on_epoch)
        seconds.append(round(time.perf_counter() - start, 1))
        got = {m: round(metric_value(final, m, last_epoch), 4) for m in [*ap_metrics(final), TRAIN_LOSS]}
        for m, v in got.items():
            values.setdefault(m, []).append(v)
        if on_seed is not None:
            on_seed(seed, got, seconds[-1])
    task = f"{model}/{recipe}"
    rows = []
    for metric, vals in values.items():
        expected = round(statistics.fmean(vals), 4)
        rows.append([task, metric, expected, tolerance_from(vals, min_tolerance, center=expected)])
    from ..reporting.run_report import versions

    return {
        "format": FORMAT,
        "rows": rows,
        "seeds": list(range(seeds)),
        "measured": values,
        "tolerance_rule": f"{TOLERANCE_RULE}, distances from expected (the mean rounded to 4 decimals); at "
                          f"least min_tolerance",
        "min_tolerance": min_tolerance,
        "model": model,
        "recipe": asdict(rec),
        "weights": weights,
        "weights_sha256": _sha256(wfile) if wfile is not None else None,
        "epochs": epochs or rec.epochs,
        "data": str(data.resolve()),
        "data_format": fmt,
        "data_fingerprint": data_fingerprint(data),
        "versions": versions(),
        "seconds": seconds,
    }


def save(path: Path, doc: dict[str, Any]) -> None:
    from ..atomic_io import atomic_write_json

    atomic_write_json(path, doc)


def seed_line(seed: int, values: dict[str, float], seconds: float) -> str:
    """``seed 0: bbox AP 0.7989, train loss 0.4136 (66 s)``: one measured seed."""
    return f"seed {seed}: " + ", ".join(f"{m} {v:.4f}" for m, v in values.items()) + f" ({seconds:.0f} s)"


@dataclass(frozen=True)
class Measured:
    """A gate file written by ``tvref gate measure``."""

    path: Path
    doc: dict[str, Any]

    def lines(self) -> list[str]:
        """One line per row, then what was written where."""
        rows, seeds = self.doc["rows"], self.doc["seeds"]
        return [f"row: {json.dumps(row)}" for row in rows] + [
            f"gate of {len(rows)} rows from seeds {seeds[0]}-{seeds[-1]} written to {self.path}"]


def measure_file(out: Path, data: Path, *, overwrite: bool = False, **settings: Any) -> Measured:
    """:func:`measure` with ``settings``, saved to ``out``; ``out`` is checked (:func:`check_output`) before the
    training and again after it."""
    check_output(out, overwrite)
    doc = measure(data, **settings)
    check_output(out, overwrite)  # still free after the training
    save(out, doc)
    return Measured(out, doc)


def _bad(path: Path, where: str, rule: str) -> GateFileError:
    return GateFileError(f"{path}: {where} {rule} (write it with tvref gate measure)")


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def load(path: Path) -> GateSpec:
    """Read and check a gate file; a :class:`GateFileError` naming the field and the rule otherwise."""
    from ..models import BUILDERS
    from ..training.fit import RECIPES

    path = Path(path)
    if not path.is_file():
        raise GateFileError(f"{path}: no such file (write it with tvref gate measure)")
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise GateFileError(f"{path}: not a JSON file ({type(exc).__name__}: {first_line(exc, 120)})") from exc
    if not isinstance(doc, dict):
        raise _bad(path, "the top level", f"must be an object, not {type(doc).__name__}")
    if doc.get("format") != FORMAT:
        raise _bad(path, "field format", f"must be {FORMAT!r}, got {str(doc.get('format'))[:40]!r}")
    rows = doc.get("rows")
    if not isinstance(rows, list) or not rows:
        raise _bad(path, "field rows", "must be a non-empty list of [task, metric, expected, tolerance]")
    checks = []
    for i, row in enumerate(rows):
        if not (isinstance(row, list) and len(row) == 4 and isinstance(row[0], str) and isinstance(row[1], str)
                and _number(row[2]) and _number(row[3]) and row[3] >= 0):
            raise _bad(path, f"field rows[{i}]", "must be [task, metric, expected, tolerance] with two strings, "
                       f"a number and a number >= 0, got {json.dumps(row)[:80]}")
        iou_type, _, stat = row[1].partition(" ")
        if row[1] != TRAIN_LOSS and (iou_type not in IOU_TYPES or stat not in STAT_NAMES):
            raise _bad(path, f"field rows[{i}][1]", f"must be '<{'|'.join(IOU_TYPES)}> <{'|'.join(STAT_NAMES)}>' "
                       f"or '{TRAIN_LOSS}', got {row[1][:40]!r}")
        checks.append(GateCheck(row[0], row[1], float(row[2]), float(row[3])))
    seeds = doc.get("seeds")
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        raise _bad(path, "field seeds", "must be a non-empty list of whole numbers")
    model = doc.get("model")
    if model not in BUILDERS:
        raise _bad(path, "field model", f"must be one of {', '.join(BUILDERS)}, got {str(model)[:40]!r}")
    recipe = doc.get("recipe")
    if not isinstance(recipe, dict) or recipe.get("name") not in RECIPES:
        name = recipe.get("name") if isinstance(recipe, dict) else recipe
        raise _bad(path, "field recipe.name", f"must be one of {', '.join(RECIPES)}, got {str(name)[:40]!r}")
    epochs = doc.get("epochs")
    if not (isinstance(epochs, int) and not isinstance(epochs, bool) and epochs >= 1):
        raise _bad(path, "field epochs", f"must be a whole number >= 1, got {str(epochs)[:40]!r}")
    for name in ("weights", "weights_sha256", "data_format"):
        if doc.get(name) is not None and not isinstance(doc[name], str):
            raise _bad(path, f"field {name}", "must be a string or null")
    if doc.get("weights_sha256") is None and _weights_file(doc.get("weights")) is not None:
        raise _bad(path, "field weights_sha256", "must be the SHA-256 of the weights file")
    versions = doc.get("versions")
    if not isinstance(versions, dict) or not isinstance(versions.get("torch"), str) or \
            not versions["torch"][:1].isdigit() or "." not in versions["torch"]:
        raise _bad(path, "field versions.torch", "must be the torch version measured with, such as '2.14.1'")
    fingerprint = doc.get("data_fingerprint")
    return GateSpec(path=path, rows=checks, seeds=seeds, model=model, recipe=recipe, weights=doc.get("weights"),
                    weights_sha256=doc.get("weights_sha256"), epochs=epochs, data_format=doc.get("data_format"),
                    data_fingerprint=fingerprint if isinstance(fingerprint, dict) else {},
                    torch=versions["torch"], raw=doc)


def preflight(spec: GateSpec, data: Path) -> list[str]:
    """What stops a check before it trains (raised), and the notes on what differs from the measured setup."""
    if not data.is_dir():
        raise JobError(f"--data {data}: no such folder")
    now = torch_line(torch.__version__)
    if torch_line(spec.torch) != now:
        raise GateFileError(f"{spec.path}: field versions.torch: measured on torch {spec.torch} (line "
                            f"{torch_line(spec.torch)}), this is torch {torch.__version__} (line {now}); a band "
                            "measured on one torch line does not carry over to another: re-measure with tvref gate "
                            "measure under this torch")
    notes = []
    wfile = _weights_file(spec.weights)
    if wfile is not None:
        if not wfile.is_file():
            raise GateFileError(f"{spec.path}: field weights: {wfile} does not exist (the run starts from it)")
        if _sha256(wfile) != spec.weights_sha256:
            notes.append(f"weights {wfile} changed since measured (SHA-256 differs)")
    current = asdict(get_recipe(spec.recipe["name"]))
    changed = [f"{k} {spec.recipe.get(k)!r} -> {current.get(k)!r}" for k in sorted(set(current) | set(spec.recipe))
               if spec.recipe.get(k) != current.get(k)]
    if changed:
        notes.append(f"recipe {spec.recipe['name']} changed since measured: {', '.join(changed)}")
    if spec.data_fingerprint and data_fingerprint(data) != spec.data_fingerprint:
        notes.append(f"--data {data}: its files differ from the measured data's (names or sizes)")
    return notes


def check(spec: GateSpec, data: Path, seed: int | None = None, on_epoch: Callable | None = None) -> GateRun:
    """Train once with the gate file's settings (seed: the first measured one) and compare with its rows."""
    notes = preflight(spec, data)
    seed = spec.seeds[0] if seed is None else seed
    start = time.perf_counter()
    final, last_epoch = train_once(data, model=spec.model, recipe=spec.recipe["name"], weights=spec.weights,
                                   epochs=spec.epochs, seed=seed, fmt=spec.data_format, on_epoch=on_epoch)
    return GateRun(check_gate(final, spec.rows, last_epoch), seed, notes, time.perf_counter() - start)
