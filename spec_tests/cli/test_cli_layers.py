"""Issue 23: the CLI parses arguments and prints; the commands live in ``reference.app``, one module each, and
return results; bad input the user can fix is a :class:`reference.errors.UserError`, caught once by the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from reference import cli
from reference.errors import UserError

from spec_tests.conftest import FIXTURES, ROOT

PACKAGE = ROOT / "reference"
# what the CLI reaches only through reference.app: training, inference and validation
DELEGATED = ("reference.engine", "reference.training", "reference.contract")


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(absolute module, imported names) for every import statement in ``path``, relative ones resolved."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.append((module, [alias.name for alias in node.names]))
    return found


def test_the_cli_imports_no_engine_training_or_validator_module():
    """The CLI delegates to reference.app: it imports nothing of the engine, the training or the contract."""
    offending = [f"{module} ({', '.join(names)})" for module, names in _imports(PACKAGE / "cli.py")
                 if any(module == d or module.startswith(d + ".") for d in DELEGATED)
                 or (module == "reference" and set(names) & {d.split(".")[1] for d in DELEGATED})]
    assert offending == []


def test_the_import_check_resolves_relative_imports(tmp_path):
    """What the check above reads: ``from .engine import x`` in reference/cli.py is reference.engine."""
    probe = PACKAGE / "app" / "train.py"
    assert ("reference.engine", ["distributed"]) in _imports(probe)
    assert ("reference.app.checkpoints", ["resolve_device"]) in _imports(probe)


def test_no_module_of_the_commands_imports_a_private_name_of_another():
    private = [f"{path.relative_to(ROOT)}: {module}.{name}" for path in [PACKAGE / "cli.py",
                                                                         *sorted((PACKAGE / "app").glob("*.py"))]
               for module, names in _imports(path) for name in names if name.startswith("_")
               and not name.startswith("__")]
    assert private == []


class _Refused(UserError):
    """A user error the CLI has never heard of."""


@pytest.fixture
def refusing_env(monkeypatch):
    def refuse():
        raise _Refused("bad.json: field x must be a number\nsecond line that is not shown")

    monkeypatch.setattr("reference.app.env.environment", refuse)


def test_a_user_error_of_any_command_is_one_line_and_exit_two(refusing_env, capsys):
    assert cli.main(["env"]) == 2
    out, err = capsys.readouterr()
    assert err == "error: bad.json: field x must be a number\n" and out == ""


def test_verbose_lets_a_user_error_through_with_its_traceback(refusing_env):
    with pytest.raises(_Refused, match="field x"):
        cli.main(["--verbose", "env"])


def test_the_projects_input_errors_are_user_errors():
    from reference.app.gate import GateFileError
    from reference.app.snapshot import MissingSnapshotError, SnapshotError
    from reference.data import DatasetError
    from reference.data.common import SampleError
    from reference.data.loading import SpecError
    from reference.errors import JobError
    from reference.models import ModelConfigError, WeightsUnavailableError
    from reference.training.checkpoint import CheckpointError

    for error in (JobError, GateFileError, SnapshotError, MissingSnapshotError, DatasetError, SampleError,
                  SpecError, CheckpointError, ModelConfigError, WeightsUnavailableError):
        assert issubclass(error, UserError), error
    # what code catching the old bases still catches
    assert issubclass(JobError, ValueError) and issubclass(WeightsUnavailableError, FileNotFoundError)


def test_validate_says_how_many_pictures_it_drew_when_the_cap_leaves_some_out(tmp_path, monkeypatch, capsys):
    from reference.app import validate

    monkeypatch.setattr(validate, "MAX_RENDERED", 2)
    folder = tmp_path / "png"
    assert cli.main(["--quiet", "validate", str(FIXTURES / "pennfudan" / "val"), "--max-samples", "3", "--render",
                     str(folder), "--render-all"]) == 0
    assert sorted(p.name for p in folder.glob("*.png")) == ["sample_00000.png", "sample_00001.png"]
    assert capsys.readouterr().out.splitlines()[0] == (
        f"{folder}: drew 2 of 3 samples (the first 2 in sample order; the report lists them all)")


def test_validate_says_nothing_of_the_cap_when_every_picture_is_drawn(tmp_path, capsys):
    assert cli.main(["--quiet", "validate", str(FIXTURES / "pennfudan" / "val"), "--max-samples", "2", "--render",
                     str(tmp_path / "png"), "--render-all"]) == 0
    assert "drew" not in capsys.readouterr().out and len(list((tmp_path / "png").glob("*.png"))) == 2
