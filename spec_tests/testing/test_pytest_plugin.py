"""The pytest plugin: ``pytest --dataset SPEC`` runs the contract suite against a dataset (``--snapshot``:
test_snapshot.py; ``--gate``: test_user_gate.py)."""

from __future__ import annotations

import re

import pytest

from reference.contract import FAMILIES, RULES, Report, Severity, Violation

from spec_tests.conftest import FIXTURES, ROOT

TUTORIAL_V2 = f"{ROOT / 'spec_tests' / 'tutorial_datasets.py'}:TutorialPennFudanV2"
FAMILY_COUNT = len(set(FAMILIES) - {"splits"})  # one test per family of the rule table, but splits

# a dataset whose only fault is an area given as a list (a type error of a per-sample field)
LIST_AREA_DATASET = """
import torch


class ListArea:
    def __len__(self):
        return 2

    def __getitem__(self, i):
        target = {"boxes": torch.tensor([[1.0, 1.0, 6.0, 7.0]]), "labels": torch.tensor([1]), "image_id": i,
                  "area": [30.0], "iscrowd": torch.zeros(1, dtype=torch.int64)}
        return torch.zeros(3, 8, 8), target
"""


def _run(pytester, *args: str):
    """An inner pytest in this interpreter (torch is imported once, not per run); pytest-randomly off so that
    it does not reseed this process's random generators."""
    return pytester.runpytest_inprocess("-p", "no:randomly", *args)


def test_every_rule_code_a_dataset_can_break_is_checked_by_a_plugin_test(pytester, monkeypatch):
    """A report with an error for every code of the rule table but the splits family's (they need a second
    dataset, which --dataset does not give) fails one contract test per family, and each code is named by
    exactly one failing test."""
    codes = [code for code in RULES if code not in FAMILIES["splits"]]
    report = Report(samples=1, violations=[Violation(code, Severity.ERROR, 0, None, None, "broken on purpose")
                                           for code in codes])
    monkeypatch.setattr("reference.contract.validate_dataset", lambda *args, **kwargs: report)
    result = _run(pytester, "--dataset", str(FIXTURES / "pennfudan" / "val"), "--num-classes", "2")
    result.assert_outcomes(failed=FAMILY_COUNT)
    named = [code for line in result.stdout.lines
             if (m := re.match(r"\d+ contract violations \((.+)\):$", line)) for code in m[1].split(", ")]
    assert sorted(named) == sorted(codes)


def test_a_non_tensor_area_fails_the_evaluation_fields_test_as_area_type(pytester):
    module = pytester.makepyfile(list_area=LIST_AREA_DATASET)
    result = _run(pytester, "--dataset", f"{module}:ListArea", "--num-classes", "2")
    result.assert_outcomes(passed=FAMILY_COUNT - 1, failed=1)
    result.stdout.fnmatch_lines(["*contract*evaluation_fields*", "*AREA_TYPE (sample 0, area)*"])


def test_a_valid_dataset_passes_every_contract_family(pytester):
    result = _run(pytester, "--dataset", str(FIXTURES / "pennfudan" / "val"), "--num-classes", "2")
    result.assert_outcomes(passed=FAMILY_COUNT)


@pytest.mark.extended  # a fresh interpreter importing torch: the extended tier
def test_with_dataset_only_the_contract_runs_whatever_the_folder_holds(pytester):
    """The user's folder has tests of its own and a conftest that cannot be imported here: neither is touched,
    and the libraries' known deprecation warnings are not shown."""
    pytester.makepyfile(test_theirs="def test_theirs():\n    assert False\n")
    pytester.mkpydir("sub").joinpath("conftest.py").write_text("raise ImportError('not importable here')\n")
    # a fresh interpreter: in this one the libraries were imported already and their warnings said
    result = pytester.runpytest_subprocess("--dataset", str(FIXTURES / "pennfudan" / "val"), "--num-classes", "2",
                                           "--max-samples", "3")
    result.assert_outcomes(passed=FAMILY_COUNT)
    assert "DeprecationWarning" not in result.stdout.str()


def test_without_options_the_plugin_imports_no_torch(pytester):
    pytester.makepyfile("import sys\n\ndef test_no_torch():\n    assert 'torch' not in sys.modules\n")
    pytester.runpytest_subprocess("-p", "no:randomly").assert_outcomes(passed=1)  # a fresh interpreter: torch unloaded


def test_a_broken_dataset_fails_the_family_naming_codes_and_indices(pytester):
    result = _run(pytester, "--dataset", TUTORIAL_V2, "--dataset-arg", f"root={FIXTURES / 'pennfudan' / 'val'}",
                  "--dataset-arg", "alter='label0'", "--max-samples", "4")
    result.assert_outcomes(passed=FAMILY_COUNT - 1, failed=1)
    result.stdout.fnmatch_lines(["*contract*labels*", "*LABEL_BACKGROUND (sample 0, labels[[]0[]])*"])


def test_without_dataset_the_plugin_adds_nothing(pytester):
    pytester.makepyfile("def test_plain():\n    assert True\n")
    result = _run(pytester)
    result.assert_outcomes(passed=1)


def test_an_unloadable_dataset_is_a_usage_error(pytester):
    result = _run(pytester, "--dataset", "no_such_module_xyz:Thing")
    assert result.ret == 4  # pytest's exit code for usage errors
    result.stderr.fnmatch_lines(["*cannot import module*"])
