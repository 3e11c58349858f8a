"""pytest plugin: ``pytest --dataset SPEC`` checks a user's dataset against the contract; ``pytest --snapshot
FILE`` checks that a model still gives the results a snapshot recorded; ``pytest --gate FILE`` checks a
fine-tuning run against the accuracy gate ``tvref gate measure`` wrote.

Registered through the ``pytest11`` entry point, so it is active wherever the package is installed. Without
``--dataset``, ``--snapshot`` or ``--gate`` it adds nothing (and imports no torch). With any of them, the plugin
does the collection itself: only its own items run, and no test file or ``conftest.py`` of the folder pytest runs in is
imported. torchvision's and pycocotools' known deprecation warnings are filtered. With ``--dataset``, pytest
collects a small contract suite, one test per family of the contract's rule table that ``validate_dataset``
reports (every family but ``splits``), and fails with the rule codes and sample indices. With ``--snapshot``, it
collects one test ``snapshot[<file name>]`` that re-records the checkpoint on the data and fails with the
changes and the summary table. With ``--gate``, it collects one test ``gate[<file name>]`` that trains once
with the gate's settings and fails with each row's expected vs actual values.

    pytest --dataset mypkg.data:MyDataset --dataset-arg root=data --num-classes 3
    pytest --snapshot snap.json --snapshot-checkpoint last.pt --snapshot-data data/
    pytest --gate expected.json --gate-data data/
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ..contract import Report

# Families of the rule table that need a second dataset (compare_splits), which --dataset does not give.
SPLIT_FAMILIES = ("splits",)


def contract_families() -> dict[str, tuple[str, ...]]:
    """Family -> codes, one test each: the rule table's families that :func:`validate_dataset` reports.

    Read from the table (not copied) so that a new code is checked by the plugin the day it is added; imported
    here, not at module level, because the contract package imports torch.
    """
    from ..contract import FAMILIES

    return {family: codes for family, codes in FAMILIES.items() if family not in SPLIT_FAMILIES}


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("dataset contract", "check a detection dataset against the torchvision contract")
    g.addoption("--dataset", help="package.module:Name, path/to/file.py:Name, or a dataset folder")
    g.addoption("--dataset-arg", action="append", default=[], metavar="KEY=VALUE",
                help="constructor argument (Python literal where possible)")
    g.addoption("--dataset-format", default=None, help="pennfudan, labelme or coco (folders only)")
    g.addoption("--num-classes", type=int, default=None, help="head size, background included")
    g.addoption("--max-samples", type=int, default=None)
    g.addoption("--strict-warnings", action="store_true", help="warnings fail the contract tests too")
    s = parser.getgroup("model snapshot", "check that a model still gives the results a snapshot recorded")
    s.addoption("--snapshot", default=None, help="snapshot JSON written by 'tvref snapshot record' (default: none)")
    s.addoption("--snapshot-checkpoint", default=None, help="checkpoint to re-record (required with --snapshot)")
    s.addoption("--snapshot-data", default=None,
                help="dataset folder, its val/ subfolder when present (required with --snapshot)")
    s.addoption("--snapshot-format", default=None, help="pennfudan, labelme or coco (default: detected)")
    s.addoption("--snapshot-device", default="cpu", help="cpu, cuda or mps (default: cpu)")
    a = parser.getgroup("accuracy gate", "check a fine-tuning run against the gate 'tvref gate measure' wrote")
    a.addoption("--gate", default=None, help="gate JSON written by 'tvref gate measure' (default: none)")
    a.addoption("--gate-data", default=None, help="dataset folder to train on (required with --gate)")
    a.addoption("--gate-seed", type=int, default=None, help="seed of the run (default: the first measured seed)")


class _ContractItem(pytest.Item):
    def __init__(self, *, family: str, codes: tuple[str, ...], **kwargs: Any):
        super().__init__(**kwargs)
        self.family = family
        self.codes = codes

    def runtest(self) -> None:
        report: Report = self.config._dataset_report  # type: ignore[attr-defined]
        strict = self.config.getoption("--strict-warnings")
        bad = [v for v in report.violations if v.code in self.codes
               and (v.severity.value == "error" or (strict and v.severity.value == "warning"))]
        if bad:
            shown = "\n".join(f"  {v}" for v in bad[:20])
            more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
            raise AssertionError(f"{len(bad)} contract violations ({', '.join(sorted({v.code for v in bad}))}):"
                                 f"\n{shown}{more}")

    def repr_failure(self, excinfo, style=None):  # noqa: ANN001 - pytest's signature
        if isinstance(excinfo.value, AssertionError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"dataset contract: {self.family}"


class _ContractCollector(pytest.File):
    def collect(self):
        for family, codes in contract_families().items():
            yield _ContractItem.from_parent(self, name=f"contract[{family}]", family=family, codes=codes)


class _SnapshotItem(pytest.Item):
    """Re-records the checkpoint on the data and compares with the snapshot file."""

    def __init__(self, *, snapshot: Path, **kwargs: Any):
        super().__init__(**kwargs)
        self.snapshot = snapshot

    def runtest(self) -> None:
        from .snapshot import Tolerances, compare, load, record_checkpoint

        opt = self.config.getoption
        expected = load(self.snapshot)
        tol = Tolerances.from_dict(expected.get("tolerances", {}))
        actual = record_checkpoint(Path(opt("--snapshot-checkpoint")), Path(opt("--snapshot-data")),
                                   fmt=opt("--snapshot-format"), device=opt("--snapshot-device"),
                                   max_images=len(expected["images"]),
                                   batch_size=int(expected.get("batch_size", 2)), tolerances=tol,
                                   mask_threshold=float(expected.get("mask_threshold", 0.5)))
        diff = compare(expected, actual, tol)
        if not diff.ok:
            failures = diff.failures()
            shown = "\n".join(f"  {line}" for line in failures[:30])
            more = f"\n  ... and {len(failures) - 30} more" if len(failures) > 30 else ""
            raise AssertionError(f"{self.snapshot.name}: {len(failures)} changes beyond tolerance:\n{shown}{more}"
                                 f"\n{diff.summary()}")

    def repr_failure(self, excinfo, style=None):  # noqa: ANN001 - pytest's signature
        if isinstance(excinfo.value, (AssertionError, ValueError)):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"model snapshot: {self.snapshot.name}"


class _SnapshotCollector(pytest.File):
    def collect(self):
        snapshot = Path(self.config.getoption("--snapshot"))
        yield _SnapshotItem.from_parent(self, name=f"snapshot[{snapshot.name}]", snapshot=snapshot)


class _GateItem(pytest.Item):
    """Trains once with the gate file's settings and compares with its rows (``tvref gate check``)."""

    def __init__(self, *, spec: Any, **kwargs: Any):
        super().__init__(**kwargs)
        self.spec = spec

    def runtest(self) -> None:
        from ..user_gate import check

        run = check(self.spec, Path(self.config.getoption("--gate-data")), self.config.getoption("--gate-seed"))
        if not run.passed:
            shown = "\n".join(f"  {line}" for line in run.lines())
            raise AssertionError(f"{self.spec.path.name}: accuracy gate failed:\n{shown}\n{run.summary()}")

    def repr_failure(self, excinfo, style=None):  # noqa: ANN001 - pytest's signature
        if isinstance(excinfo.value, (AssertionError, ValueError)):  # ValueError: JobError, bad input
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"accuracy gate: {self.spec.path.name}"


class _GateCollector(pytest.File):
    def collect(self):
        spec = self.config._gate_spec  # type: ignore[attr-defined]
        yield _GateItem.from_parent(self, name=f"gate[{spec.path.name}]", spec=spec)


# warnings the libraries under the contract check raise on every sample, not the user's to fix
KNOWN_WARNINGS = (
    "ignore:The image decoding and encoding capabilities of TorchVision are deprecated:DeprecationWarning",
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning",
)


def _active(config: pytest.Config) -> bool:
    return bool(config.getoption("--dataset") or config.getoption("--snapshot") or config.getoption("--gate"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "dataset_contract: tests generated by --dataset")
    if _active(config):
        for line in KNOWN_WARNINGS:
            config.addinivalue_line("filterwarnings", line)


def _contract_items(session: pytest.Session, config: pytest.Config) -> list[pytest.Item]:
    spec = config.getoption("--dataset")
    if not spec:
        return []
    from ..contract import validate_dataset
    from ..loading import SpecError, load_dataset, parse_args

    try:
        dataset = load_dataset(spec, config.getoption("--dataset-format"),
                               parse_args(config.getoption("--dataset-arg")))
    except SpecError as exc:
        raise pytest.UsageError(f"--dataset {spec}: {exc}") from exc
    config._dataset_report = validate_dataset(  # type: ignore[attr-defined]
        dataset, num_classes=config.getoption("--num-classes"), max_samples=config.getoption("--max-samples"))
    collector = _ContractCollector.from_parent(session, path=config.rootpath / "dataset-contract")
    return list(collector.collect())


def _snapshot_items(session: pytest.Session, config: pytest.Config) -> list[pytest.Item]:
    path = config.getoption("--snapshot")
    if not path:
        return []
    missing = [o for o in ("--snapshot-checkpoint", "--snapshot-data") if not config.getoption(o)]
    if missing:
        raise pytest.UsageError(f"--snapshot {path}: also give {' and '.join(missing)}")
    from .snapshot import SnapshotError, load

    try:
        load(path)
    except SnapshotError as exc:
        raise pytest.UsageError(f"--snapshot: {exc}") from exc
    collector = _SnapshotCollector.from_parent(session, path=config.rootpath / "model-snapshot")
    return list(collector.collect())


def _gate_items(session: pytest.Session, config: pytest.Config) -> list[pytest.Item]:
    path = config.getoption("--gate")
    if not path:
        return []
    if not config.getoption("--gate-data"):
        raise pytest.UsageError(f"--gate {path}: also give --gate-data")
    from ..jobs import JobError
    from ..user_gate import load, preflight

    try:
        spec = load(Path(path))
        preflight(spec, Path(config.getoption("--gate-data")))  # refusals before training; check() repeats it
    except JobError as exc:
        raise pytest.UsageError(f"--gate: {exc}") from exc
    config._gate_spec = spec  # type: ignore[attr-defined]
    collector = _GateCollector.from_parent(session, path=config.rootpath / "accuracy-gate")
    return list(collector.collect())


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session: pytest.Session) -> bool | None:
    """With --dataset, --snapshot or --gate, collect only the generated items (the folder's own tests and conftest
    files are never imported); otherwise leave collection to pytest."""
    config = session.config
    if not _active(config):
        return None
    items = _contract_items(session, config) + _snapshot_items(session, config) + _gate_items(session, config)
    session.ihook.pytest_collection_modifyitems(session=session, config=config, items=items)  # -k, -m
    session.ihook.pytest_collection_finish(session=session)
    session.items = items
    session.testscollected = len(items)
    return True
