"""Property tests of the contract: valid samples pass, each broken rule is reported with its code."""

from __future__ import annotations

import pytest
from hypothesis import given

from reference.contract import RULES, Severity, validate_dataset, validate_sample
from reference.strategies import (DATASET_CODES, FILE_AND_SPLIT_CODES, SAMPLE_CODES, broken_datasets, broken_samples,
                                  valid_datasets, valid_samples)


def errors(violations):
    return [v for v in violations if v.severity is Severity.ERROR]


def test_every_rule_is_either_sample_or_dataset_level():
    assert set(SAMPLE_CODES) | set(DATASET_CODES) | set(FILE_AND_SPLIT_CODES) == set(RULES)
    assert not set(SAMPLE_CODES) & set(DATASET_CODES)
    assert not (set(SAMPLE_CODES) | set(DATASET_CODES)) & set(FILE_AND_SPLIT_CODES)


@given(valid_samples())
def test_valid_samples_of_both_flavours_have_no_violation(s):
    assert validate_sample(s.image, s.target, **s.kwargs()) == []


@given(valid_samples(model_ready=True))
def test_valid_model_ready_samples_have_no_violation(s):
    assert validate_sample(s.image, s.target, **s.kwargs()) == []


@pytest.mark.parametrize("code", SAMPLE_CODES)
def test_broken_sample_reports_its_code_and_no_other_error(code):
    @given(broken_samples(code))
    def check(s):
        found = validate_sample(s.image, s.target, index=3, **s.kwargs())
        assert code in {v.code for v in found}, found
        other_errors = {v.code for v in errors(found)} - {code}
        assert not other_errors, found
        for v in found:
            assert v.index == 3 and v.message

    check()


@given(valid_datasets())
def test_valid_datasets_pass(ds_and_classes):
    ds, num_classes = ds_and_classes
    report = validate_dataset(ds, num_classes=num_classes)
    assert report.ok, report.render_text()


@pytest.mark.parametrize("code", DATASET_CODES)
def test_broken_dataset_reports_its_code(code):
    @given(broken_datasets(code))
    def check(ds_and_classes):
        ds, num_classes = ds_and_classes
        report = validate_dataset(ds, num_classes=num_classes)
        assert code in report.codes(), report.render_text()
        assert {v.code for v in report.errors} == {code}, report.render_text()

    check()
