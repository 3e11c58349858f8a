"""The pytest plugin: ``pytest --dataset SPEC`` runs the contract suite against a dataset."""

from __future__ import annotations

from .conftest import FIXTURES, ROOT

TUTORIAL_V2 = f"{ROOT / 'spec_tests' / 'tutorial_datasets.py'}:TutorialPennFudanV2"


def test_a_valid_dataset_passes_every_contract_family(pytester):
    result = pytester.runpytest_subprocess("--dataset", str(FIXTURES / "pennfudan" / "val"), "--num-classes", "2")
    result.assert_outcomes(passed=8)


def test_with_dataset_only_the_contract_runs_whatever_the_folder_holds(pytester):
    """The user's folder has tests of its own and a conftest that cannot be imported here: neither is touched,
    and the libraries' known deprecation warnings are not shown."""
    pytester.makepyfile(test_theirs="def test_theirs():\n    assert False\n")
    pytester.mkpydir("sub").joinpath("conftest.py").write_text("raise ImportError('not importable here')\n")
    result = pytester.runpytest_subprocess("--dataset", str(FIXTURES / "pennfudan" / "val"), "--num-classes", "2",
                                           "--max-samples", "3")
    result.assert_outcomes(passed=8)
    assert "DeprecationWarning" not in result.stdout.str()


def test_without_options_the_plugin_imports_no_torch(pytester):
    pytester.makepyfile("import sys\n\ndef test_no_torch():\n    assert 'torch' not in sys.modules\n")
    pytester.runpytest_subprocess("-p", "no:randomly").assert_outcomes(passed=1)


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
