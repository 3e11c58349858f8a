"""The pytest plugin: ``pytest --dataset SPEC`` runs the contract suite against a dataset."""

from __future__ import annotations

from .conftest import FIXTURES, ROOT

TUTORIAL_V2 = f"{ROOT / 'spec_tests' / 'tutorial_datasets.py'}:TutorialPennFudanV2"


def test_a_valid_dataset_passes_every_contract_family(pytester):
    result = pytester.runpytest_subprocess("--dataset", str(FIXTURES / "pennfudan" / "val"), "--num-classes", "2")
    result.assert_outcomes(passed=8)


def test_a_broken_dataset_fails_the_family_naming_codes_and_indices(pytester):
    result = pytester.runpytest_subprocess("--dataset", TUTORIAL_V2, "--dataset-arg",
                                           f"root={FIXTURES / 'pennfudan' / 'val'}", "--dataset-arg",
                                           "alter='label0'", "--max-samples", "4")
    result.assert_outcomes(passed=7, failed=1)
    result.stdout.fnmatch_lines(["*contract*labels*", "*LABEL_BACKGROUND (sample 0, labels[[]0[]])*"])


def test_without_dataset_the_plugin_adds_nothing(pytester):
    pytester.makepyfile("def test_plain():\n    assert True\n")
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)


def test_an_unloadable_dataset_is_a_usage_error(pytester):
    result = pytester.runpytest_subprocess("--dataset", "no_such_module_xyz:Thing")
    assert result.ret == 4  # pytest's exit code for usage errors
    result.stderr.fnmatch_lines(["*cannot import module*"])
