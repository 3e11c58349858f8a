"""The package's layout: the testing tools stay apart from the runtime."""

from __future__ import annotations

import ast
from pathlib import Path

from spec_tests.conftest import ROOT


def imported_modules(path: Path, root: Path) -> set[str]:
    """Every module ``path`` (a file under ``root``) imports, lazy imports inside functions included, relative
    imports resolved against its package."""
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def needs_hypothesis(module: str) -> bool:
    return module.split(".")[0] == "hypothesis" or module.startswith("reference.testing.strategies")


def test_only_the_strategies_import_hypothesis_so_the_runtime_runs_without_the_test_extra():
    strategies = ROOT / "reference" / "testing" / "strategies.py"
    offenders = {str(path.relative_to(ROOT)): sorted(filter(needs_hypothesis, imported_modules(path, ROOT)))
                 for path in sorted((ROOT / "reference").rglob("*.py")) if path != strategies}
    offenders = {path: names for path, names in offenders.items() if names}
    assert not offenders, f"hypothesis is a test extra; these modules import it or the strategies: {offenders}"


def test_the_import_scan_finds_a_lazy_relative_import_of_the_strategies(tmp_path):
    module = tmp_path / "reference" / "cli.py"
    module.parent.mkdir()
    module.write_text("def run():\n    from .testing.strategies import valid_samples\n")
    assert any(needs_hypothesis(name) for name in imported_modules(module, tmp_path))
