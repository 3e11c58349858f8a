"""Property tests of the contract: valid samples pass, each broken rule is reported with its code."""

from __future__ import annotations

import ast
import inspect

import pytest
import torch
from hypothesis import given

from reference.contract import (RULE_BY_CODE, RULES, Severity, image_id_of, validate_dataset, validate_sample)
from reference.contract import checks
from reference.contract.checks import image_id_value
from reference.testing.strategies import (DATASET_CODES, FILE_AND_SPLIT_CODES, SAMPLE_CODES, SampleListDataset,
                                  broken_datasets, broken_samples, build_sample, valid_datasets, valid_samples)


def errors(violations):
    return [v for v in violations if v.severity is Severity.ERROR]


def _codes_the_sample_checks_report() -> set[str]:
    """Every code ``reference/contract/checks.py`` hands its Collector (``c.add("CODE", ...)``), read from the
    source: what ``validate_sample`` can report, whichever inputs reach each branch."""
    tree = ast.parse(inspect.getsource(checks))
    return {node.args[0].value for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add"
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "c"
            and node.args and isinstance(node.args[0], ast.Constant)}


def test_the_sample_level_codes_are_exactly_the_codes_the_sample_checks_report():
    """SAMPLE_CODES (the codes the broken-sample property below covers) is the rule table minus the dataset-level
    and file/split lists; a sample-level rule filed in one of those lists would escape the property unseen."""
    reported = _codes_the_sample_checks_report()
    assert set(SAMPLE_CODES) == reported, (f"reported by the sample checks, not sample-level: "
                                           f"{sorted(reported - set(SAMPLE_CODES))}; sample-level, never reported: "
                                           f"{sorted(set(SAMPLE_CODES) - reported)}")


def test_the_dataset_and_file_level_lists_name_rules_of_the_table_once_each():
    listed = list(DATASET_CODES) + list(FILE_AND_SPLIT_CODES)
    assert set(listed) <= set(RULES), set(listed) - set(RULES)
    assert len(listed) == len(set(listed)), sorted(c for c in listed if listed.count(c) > 1)


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
            assert v.severity is RULE_BY_CODE[v.code].severity_for(s.model_ready), v

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
        assert {v.code for v in report.errors} == ({code} if RULES[code] is Severity.ERROR else set()), \
            report.render_text()
        assert all(v.severity is RULES[v.code] for v in report.violations), report.render_text()

    check()



def _sample(n: int = 1, flavour: str = "v2", image_id: int = 0):
    return build_sample(n, flavour=flavour, n=n, h=12, w=10, num_classes=3, with_masks=False, num_keypoints=None,
                        model_ready=False, float_image=False, image_id=image_id)


def test_a_type_error_is_reported_with_the_fields_type_code_not_a_value_code():
    s = _sample()
    found = {v.code for v in validate_sample(s.image, {**s.target, "area": [1.0], "iscrowd": [0]})}
    assert {"AREA_TYPE", "ISCROWD_TYPE"} <= found
    assert not {"AREA_NEGATIVE", "ISCROWD_VALUES"} & found


def test_a_label_tensor_of_rank_two_is_a_labels_shape_error_not_a_count_mismatch():
    s = _sample(n=2)
    found = {v.code for v in validate_sample(s.image, {**s.target, "labels": s.target["labels"][:, None]})}
    assert "LABELS_SHAPE" in found and "COUNT_MISMATCH" not in found


@pytest.mark.parametrize("image_id", [torch.tensor([True]), True, torch.tensor([1.0]), torch.tensor([1, 2])])
def test_image_id_of_refuses_what_the_image_id_rule_refuses(image_id):
    s = _sample()
    target = {**s.target, "image_id": image_id}
    assert image_id_of(target) is None and image_id_value(image_id) is None
    assert "IMAGE_ID_TYPE" in {v.code for v in validate_sample(s.image, target)}


def test_mixed_image_id_flavours_are_one_warning_and_never_an_image_id_type_finding():
    a, b = _sample(image_id=0), _sample(image_id=1)
    ds = SampleListDataset([(a.image, a.target), (b.image, {**b.target, "image_id": torch.tensor([1])})])
    report = validate_dataset(ds, num_classes=3)
    found = [(v.code, v.severity) for v in report.violations if v.code.startswith("IMAGE_ID")]
    assert found == [("IMAGE_ID_MIXED", Severity.WARNING)]


def test_max_samples_is_respected_whatever_progress_is_given():
    ds = SampleListDataset([(s.image, s.target) for s in (_sample(image_id=i) for i in range(4))])
    assert validate_dataset(ds, num_classes=3, max_samples=2, progress=range(len(ds))).samples == 2


def test_progress_advances_once_per_checked_sample():
    ds = SampleListDataset([(s.image, s.target) for s in (_sample(image_id=i) for i in range(4))])
    ticks: list[int] = []
    validate_dataset(ds, num_classes=3, max_samples=3, progress=iter(lambda: ticks.append(1), 0))
    assert len(ticks) == 3
