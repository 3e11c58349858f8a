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
changes, the summary table, the counts of each change and the largest drifts; with ``--snapshot-update`` the
test writes the re-recording to the file instead (keeping its tolerances and image count) and the terminal
summary says what was written. With ``--gate``, it collects one test ``gate[<file name>]`` that trains once
with the gate's settings and fails with each row's expected vs actual values. A ``--snapshot`` or ``--gate``
file that does not exist fails its test with the command that creates it.

    pytest --dataset mypkg.data:MyDataset --dataset-arg root=data --num-classes 3
    pytest --snapshot snap.json --snapshot-checkpoint last.pt --snapshot-data data/ [--snapshot-update]
    pytest --gate expected.json --gate-data data/
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ..contract import Report
    from ..app.gate import GateSpec

# Families of the rule table that need a second dataset (compare_splits), which --dataset does not give.
SPLIT_FAMILIES = ("splits",)


def contract_families() -> dict[str, tuple[str, ...]]:
    """Family -> codes, one test each: the rule table's families that
    :func:`~reference.contract.validate_dataset` reports.

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
    s.addoption("--snapshot-update", action="store_true",
                help="re-record the --snapshot file instead of checking it, keeping its tolerances and image count "
                "(a new file: the defaults of tvref snapshot record)")
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


# the user property a --snapshot-update test leaves on its report, read back for the terminal summary
WRITTEN_PROPERTY = "snapshot_written"


def _snapshot_source(config: pytest.Config) -> list[str]:
    """The options that say what a snapshot is recorded from: checkpoint, data, and format and device if given."""
    opt = config.getoption
    args = ["--snapshot-checkpoint", opt("--snapshot-checkpoint"), "--snapshot-data", opt("--snapshot-data")]
    if opt("--snapshot-format"):
        args += ["--snapshot-format", opt("--snapshot-format")]
    if opt("--snapshot-device") != "cpu":
        args += ["--snapshot-device", opt("--snapshot-device")]
    return args


def missing_snapshot_line(config: pytest.Config, snapshot: Path) -> str:
    """One line: the snapshot file does not exist, and the two commands that record it with this run's arguments."""
    from ..app.snapshot import record_command

    opt = config.getoption
    update = shlex.join(["pytest", "--snapshot", str(snapshot), *_snapshot_source(config), "--snapshot-update"])
    record = record_command(snapshot, opt("--snapshot-checkpoint"), opt("--snapshot-data"),
                            fmt=opt("--snapshot-format"), device=opt("--snapshot-device"))
    return f"{snapshot}: no such snapshot file; create it with: {update} (or: {record})"


class _SnapshotItem(pytest.Item):
    """Re-records the checkpoint on the data and compares with the snapshot file, or with ``--snapshot-update``
    writes the re-recording to it."""

    def __init__(self, *, snapshot: Path, **kwargs: Any):
        super().__init__(**kwargs)
        self.snapshot = snapshot

    def runtest(self) -> None:
        from ..app.snapshot import MissingSnapshotError, check_snapshot, update_snapshot

        opt = self.config.getoption
        checkpoint, data = Path(opt("--snapshot-checkpoint")), Path(opt("--snapshot-data"))
        where = {"fmt": opt("--snapshot-format"), "device": opt("--snapshot-device")}
        if opt("--snapshot-update"):
            written = update_snapshot(self.snapshot, checkpoint, data, **where)
            self.user_properties.append((WRITTEN_PROPERTY, written.line()))
            return
        try:
            result = check_snapshot(self.snapshot, checkpoint, data, **where)
        except MissingSnapshotError:
            raise AssertionError(missing_snapshot_line(self.config, self.snapshot)) from None
        if not result.ok:
            lines = "\n".join(f"  {line}" for line in result.lines(max_changes=30))
            raise AssertionError(f"{self.snapshot.name}: {len(result.diff.failures())} changes beyond tolerance:"
                                 f"\n{lines}")

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


def missing_gate_line(gate: Path, data: str) -> str:
    """One line: the gate file does not exist, and the ``tvref gate measure`` command that writes it."""
    from ..training.fit import RECIPES
    from ..app.gate import WEIGHT_NAMES

    measure = shlex.join(["tvref", "gate", "measure", "--data", data, "--recipe", "RECIPE", "--weights", "WEIGHTS",
                          "--out", str(gate)])
    return (f"{gate}: no such gate file; measure it with: {measure} (RECIPE and WEIGHTS as you fine-tune: "
            f"{', '.join(RECIPES)}; none, {', '.join(WEIGHT_NAMES)} or a weights file)")


class _GateItem(pytest.Item):
    """Trains once with the gate file's settings and compares with its rows (``tvref gate check``); fails at
    once, naming ``tvref gate measure``, when the file does not exist (``spec`` None)."""

    def __init__(self, *, gate: Path, spec: GateSpec | None, **kwargs: Any):
        super().__init__(**kwargs)
        self.gate = gate
        self.spec = spec

    def runtest(self) -> None:
        from ..app.gate import check

        data = self.config.getoption("--gate-data")
        if self.spec is None:
            raise AssertionError(missing_gate_line(self.gate, data))
        run = check(self.spec, Path(data), self.config.getoption("--gate-seed"))
        if not run.passed:
            shown = "\n".join(f"  {line}" for line in run.lines())
            raise AssertionError(f"{self.gate.name}: accuracy gate failed:\n{shown}\n{run.summary()}")

    def repr_failure(self, excinfo, style=None):  # noqa: ANN001 - pytest's signature
        if isinstance(excinfo.value, (AssertionError, ValueError)):  # ValueError: JobError, bad input
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"accuracy gate: {self.gate.name}"


class _GateCollector(pytest.File):
    def collect(self):
        gate, spec = self.config._gate  # type: ignore[attr-defined]
        yield _GateItem.from_parent(self, name=f"gate[{gate.name}]", gate=gate, spec=spec)


# warnings the libraries under the contract check raise on every sample, not the user's to fix
KNOWN_WARNINGS = (
    "ignore:The image decoding and encoding capabilities of TorchVision are deprecated:DeprecationWarning",
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning",
)


def _active(config: pytest.Config) -> bool:
    return bool(config.getoption("--dataset") or config.getoption("--snapshot") or config.getoption("--gate"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "dataset_contract: tests generated by --dataset")
    if config.getoption("--snapshot-update") and not config.getoption("--snapshot"):
        raise pytest.UsageError("--snapshot-update: also give --snapshot FILE, the snapshot to re-record")
    if _active(config):
        for line in KNOWN_WARNINGS:
            config.addinivalue_line("filterwarnings", line)


def _contract_items(session: pytest.Session, config: pytest.Config) -> list[pytest.Item]:
    spec = config.getoption("--dataset")
    if not spec:
        return []
    from ..contract import validate_dataset
    from ..data.loading import SpecError, load_dataset, parse_args

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
    from ..app.snapshot import SnapshotError, load

    if Path(path).exists():  # a missing file is the test's failure (or, updating, the file to write)
        try:
            load(path)
        except SnapshotError as exc:
            keep = "; --snapshot-update replaces only a snapshot" if config.getoption("--snapshot-update") else ""
            raise pytest.UsageError(f"--snapshot: {exc}{keep}") from exc
    collector = _SnapshotCollector.from_parent(session, path=config.rootpath / "model-snapshot")
    return list(collector.collect())


def _gate_items(session: pytest.Session, config: pytest.Config) -> list[pytest.Item]:
    path = config.getoption("--gate")
    if not path:
        return []
    if not config.getoption("--gate-data"):
        raise pytest.UsageError(f"--gate {path}: also give --gate-data")
    from ..errors import JobError
    from ..app.gate import load, preflight

    gate, spec = Path(path), None
    if gate.exists():  # a missing file is the test's failure, naming the command that writes it
        try:
            spec = load(gate)
            preflight(spec, Path(config.getoption("--gate-data")))  # refusals before training; check() repeats it
        except JobError as exc:
            raise pytest.UsageError(f"--gate: {exc}") from exc
    config._gate = (gate, spec)  # type: ignore[attr-defined]
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


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """After a ``--snapshot-update`` run, a section naming each snapshot file written and what it holds."""
    written = [value for report in terminalreporter.stats.get("passed", [])
               for name, value in getattr(report, "user_properties", ()) if name == WRITTEN_PROPERTY]
    if written:
        terminalreporter.section("model snapshot")
        for line in written:
            terminalreporter.write_line(line)
