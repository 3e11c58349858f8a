"""``tvref validate``: a dataset checked against the contract, with its JSON report and pictures of the samples
that break a rule."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from ..atomic_io import atomic_write_text
from ..contract import (Report, Severity, Violation, check_picklable, class_names_of, compare_splits,
                        validate_dataset)
from ..data.loading import SpecError, TimedSamples, load_dataset, parse_args
from ..errors import first_line
from ..reporting.render import render_violations
from ..transforms import get_preset
from .datasets import open_folder
from .outputs import check_output_file, check_writable_folder

MAX_RENDERED = 100  # pictures drawn by --render at most, the first in sample order
UNREADABLE = ("GETITEM_FAILED", "GETITEM_TIMEOUT")  # samples that could not be loaded: nothing to draw


@dataclass
class ValidateOptions:
    spec: str
    fmt: str | None = None
    args: list[str] = field(default_factory=list)  # KEY=VALUE constructor arguments
    transforms: str | None = None  # a preset whose evaluation pipeline is applied to the samples
    num_classes: int | None = None
    num_keypoints: int | None = None
    max_samples: int | None = None
    model_ready: bool = False
    json: Path | None = None
    render: Path | None = None
    render_all: bool = False
    strict: bool = False
    classes: str | None = None
    merge_similar_names: str | None = None
    images: str | None = None
    val: str | None = None
    workers: int = 0
    headers_only: bool = False
    timeout: float | None = None


@dataclass(frozen=True)
class Rendered:
    """What ``--render`` drew: into ``folder``, ``drawn`` of the ``candidates`` samples to draw."""

    folder: Path
    drawn: int
    candidates: int

    def lines(self) -> list[str]:
        """A line when nothing was to be drawn, or when :data:`MAX_RENDERED` left samples out."""
        if not self.candidates:
            return [f"{self.folder}: nothing drawn, no sample broke a rule (--render-all draws every sample)"]
        if self.candidates > MAX_RENDERED:
            return [f"{self.folder}: drew {self.drawn} of {self.candidates} samples (the first {MAX_RENDERED} in "
                    "sample order; the report lists them all)"]
        return []


@dataclass
class ValidateResult:
    """The report, the validation split's report and the findings across the splits (with ``--val``), and what
    was drawn (with ``--render``)."""

    report: Report
    strict: bool = False
    val_spec: str | None = None
    val_report: Report | None = None
    split_findings: list[Violation] = field(default_factory=list)
    rendered: Rendered | None = None

    def findings(self) -> list[Violation]:
        found = list(self.report.violations)
        if self.val_report is not None:
            found += self.val_report.violations + self.split_findings
        return found

    @property
    def ok(self) -> bool:
        """No error; with ``strict`` no warning either (infos never fail)."""
        found = self.findings()
        if any(v.severity is Severity.ERROR for v in found):
            return False
        return not (self.strict and any(v.severity is Severity.WARNING for v in found))

    def lines(self) -> list[str]:
        """What ``tvref validate`` prints: the render note, the report, then the split's report and findings."""
        lines = self.rendered.lines() if self.rendered is not None else []
        lines.append(self.report.render_text())
        if self.val_report is not None:
            lines.append(f"\nvalidation split {self.val_spec}:\n{self.val_report.render_text()}\nacross the splits: "
                         f"{len(self.split_findings)} findings")
            lines += [f"  - {v}" for v in self.split_findings]
        return lines


def dataset_of(opts: ValidateOptions, spec: str, args: dict[str, Any]):
    """A dataset SPEC of ``validate``; ``--classes`` and ``--images`` apply to folders and COCO ``.json`` files."""
    path = Path(spec)
    if path.is_dir() or (path.is_file() and path.suffix == ".json"):
        return open_folder(path, opts.fmt, args.get("transforms"), opts.classes, opts.images,
                           opts.merge_similar_names, error=SpecError)
    if opts.classes is not None or opts.images is not None or opts.merge_similar_names:
        raise SpecError(f"--classes, --merge-similar-names and --images apply to dataset folders and COCO files, "
                        f"not to {spec!r}")
    return load_dataset(spec, opts.fmt, args)


def constructor_args(opts: ValidateOptions) -> dict[str, Any]:
    """The ``--arg`` values, with ``--transforms``' evaluation pipeline as ``transforms``."""
    try:
        args = parse_args(opts.args)
        if opts.transforms:
            args["transforms"] = get_preset(opts.transforms, train=False)
    except ValueError as exc:
        raise SpecError(str(exc)) from exc
    return args


def sample_count(dataset: Any, spec: str, max_samples: int | None) -> int:
    """How many samples are checked: ``len(dataset)``, at most ``max_samples``."""
    try:
        length = len(dataset)
    except Exception as exc:  # noqa: BLE001 - user code
        raise SpecError(f"{spec}: len(dataset) raised {type(exc).__name__}: {first_line(exc, 120)}") from exc
    return length if max_samples is None else min(length, max_samples)


def timed_out_as_such(report: Report, timed: TimedSamples, timeout: float) -> None:
    """GETITEM_FAILED of the samples that took longer than ``timeout`` reported as GETITEM_TIMEOUT."""
    skipped = set(timed.timed_out)
    report.violations = [
        replace(v, code="GETITEM_TIMEOUT", severity=Severity.ERROR,
                message=f"dataset[{v.index}] took longer than {timeout:g} s to load; skipped",
                hint="a __getitem__ that hangs (a network read, a lock); validation went on with the next")
        if v.code == "GETITEM_FAILED" and v.index in skipped else v for v in report.violations]


def check_samples(opts: ValidateOptions, dataset: Any, count: int, progress: Any) -> Report:
    """The report over the first ``count`` samples, loaded under ``opts.timeout`` when given."""
    timed = TimedSamples(dataset, opts.timeout, count) if opts.timeout else None
    try:
        report = validate_dataset(timed if timed is not None else dataset, num_classes=opts.num_classes,
                                  num_keypoints=opts.num_keypoints, max_samples=opts.max_samples,
                                  model_ready=opts.model_ready, progress=progress, check_pickle=timed is None,
                                  workers=opts.workers if timed is None else 0, fingerprint=bool(opts.val),
                                  headers_only=opts.headers_only)
    finally:
        if timed is not None:
            timed.close()
    if timed is not None and opts.timeout is not None:
        report.violations[:0] = check_picklable(dataset)
        timed_out_as_such(report, timed, opts.timeout)
    return report


def write_json(path: Path, result: ValidateResult) -> None:
    """The JSON report; with ``--val`` the two splits' reports and the findings across them."""
    if result.val_report is None:
        atomic_write_text(path, result.report.to_json())
        return
    atomic_write_text(path, json.dumps({"train": result.report.to_dict(), "val": result.val_report.to_dict(),
                                        "splits": [v.to_dict() for v in result.split_findings]}, indent=2))


def render(report: Report, dataset: Any, count: int, folder: Path, render_all: bool) -> Rendered:
    """A PNG per offending sample (every readable sample checked with ``render_all``), the first
    :data:`MAX_RENDERED` of them."""
    by_index: dict[int, list[Violation]] = {}
    for v in report.violations:
        if v.index is not None and v.code not in UNREADABLE:
            by_index.setdefault(v.index, []).append(v)
    failed = {v.index for v in report.violations if v.code in UNREADABLE}
    indices = sorted(set(range(count)) - failed) if render_all else list(by_index)
    drawn = 0
    for i in indices[:MAX_RENDERED]:
        try:
            image, target = dataset[i]
        except Exception:  # noqa: BLE001 - a sample that cannot be read is in the report already
            continue
        render_violations(image, target, by_index.get(i, []), folder / f"sample_{i:05d}.png", index=i)
        drawn += 1
    return Rendered(folder, drawn, len(indices))


def validate(opts: ValidateOptions, progress: Callable[[int], Any] | None = None) -> ValidateResult:
    """Check ``opts.spec`` (and ``opts.val`` against it), write the JSON report and the pictures asked for.

    ``progress(count)`` makes the progress bar advanced once per sample checked (closed at the end when it has
    ``close``).
    """
    if opts.json:
        check_output_file(opts.json, "--json")
    if opts.render:
        check_writable_folder(opts.render, "--render")
    args = constructor_args(opts)
    dataset = dataset_of(opts, opts.spec, args)
    count = sample_count(dataset, opts.spec, opts.max_samples)
    bar = progress(count) if progress is not None else None
    try:
        report = check_samples(opts, dataset, count, bar)
    finally:
        if bar is not None and hasattr(bar, "close"):
            bar.close()
    result = ValidateResult(report, strict=opts.strict)
    if opts.val:
        val = dataset_of(opts, opts.val, dict(args))
        result.val_spec = opts.val
        result.val_report = validate_dataset(val, num_classes=opts.num_classes, num_keypoints=opts.num_keypoints,
                                             max_samples=opts.max_samples, model_ready=opts.model_ready,
                                             workers=opts.workers, fingerprint=True)
        result.split_findings = compare_splits(report, result.val_report, class_names_of(dataset),
                                               class_names_of(val))
    if opts.json:
        write_json(opts.json, result)
    if opts.render:
        result.rendered = render(report, dataset, count, opts.render, opts.render_all)
    return result
