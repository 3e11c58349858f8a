"""What the on-disk layouts share (``reference/data/common.py``): annotation files read as the json module reads
them however they are parsed, the objects of a large file kept out of the garbage collector's scans, and image
paths that cannot lead out of the dataset root, links included."""

from __future__ import annotations

import gc
import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference.data import common
from reference.data.common import DatasetError, SafeRoot, collection_paused, read_json

# JSON values as annotation files hold them, numbers at the edges orjson and the json module treat differently
NUMBERS = st.one_of(st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False),
                    st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 0.1, 1e-320, -0.0]))
VALUES = st.recursive(st.none() | st.booleans() | NUMBERS | st.text(max_size=8),
                      lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                                      max_size=4), max_leaves=20)


def _same(a, b) -> bool:
    """Equal values of equal types all the way down (1 and 1.0 differ; NaN equals NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return a == b


def _file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "annotations.json"
    path.write_bytes(data)
    return path


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(VALUES)
def test_an_annotation_file_reads_as_the_json_module_reads_it(tmp_path, value):
    text = json.dumps({"annotations": value})
    assert _same(read_json(_file(tmp_path, text.encode())), json.loads(text))


@pytest.mark.parametrize("number", [2**64, 10**30, -(2**63) - 1])
def test_an_integer_beyond_64_bits_stays_an_exact_integer(tmp_path, number):
    doc = read_json(_file(tmp_path, f'{{"id": {number}, "bbox": [1, 2.5]}}'.encode()))
    assert type(doc["id"]) is int and doc["id"] == number


@pytest.mark.parametrize("text", ['{"area": NaN}', '{"area": -Infinity}', '{"name": "\\ud800"}', '{"v": 1e400}'])
def test_what_orjson_refuses_reads_as_the_json_module_reads_it(tmp_path, text):
    assert _same(read_json(_file(tmp_path, text.encode())), json.loads(text))


def test_a_byte_order_mark_is_skipped(tmp_path):
    assert read_json(_file(tmp_path, b'\xef\xbb\xbf{"images": []}')) == {"images": []}


def test_a_file_that_is_not_utf8_raises_as_the_json_module_read_raises(tmp_path):
    with pytest.raises(UnicodeDecodeError):
        read_json(_file(tmp_path, b'{"file_name": "\xff.jpg"}'))


def test_a_file_that_is_not_json_raises_a_json_decode_error(tmp_path):
    with pytest.raises(json.JSONDecodeError):
        read_json(_file(tmp_path, b'{"images": [}'))


@pytest.fixture
def unfrozen():
    yield
    gc.unfreeze()


def test_a_body_that_builds_many_objects_has_them_frozen_out_of_the_collector(monkeypatch, unfrozen):
    monkeypatch.setattr(common, "FREEZE_AT", 10_000)
    before = gc.get_freeze_count()
    with collection_paused():
        kept = [[k] for k in range(20_000)]
    assert gc.get_freeze_count() >= before + len(kept) and gc.isenabled()


def test_a_body_that_builds_few_objects_leaves_the_collector_as_it_was(monkeypatch, unfrozen):
    monkeypatch.setattr(common, "FREEZE_AT", 10_000)
    before = gc.get_freeze_count()
    with collection_paused():
        kept = [[k] for k in range(1_000)]
    assert gc.get_freeze_count() == before and len(kept) == 1_000 and gc.isenabled()


def _root_with_links(tmp_path: Path) -> tuple[Path, SafeRoot]:
    root = tmp_path / "images"
    root.mkdir()
    (root / "a.jpg").write_bytes(b"x")
    outside = tmp_path / "secret.jpg"
    outside.write_bytes(b"x")
    (root / "inside_link.jpg").symlink_to(root / "a.jpg")
    (root / "outside_link.jpg").symlink_to(outside)
    return root, SafeRoot(root)


def test_a_file_in_the_root_and_a_link_to_one_are_kept(tmp_path):
    root, safe = _root_with_links(tmp_path)
    assert safe.path("a.jpg") == str(root.resolve() / "a.jpg")
    assert safe.path("inside_link.jpg") == str(root.resolve() / "inside_link.jpg")


def test_a_link_to_a_file_outside_the_root_is_refused(tmp_path):
    _, safe = _root_with_links(tmp_path)
    assert safe.path("a.jpg") is not None  # the folder's links are listed once, on its first file
    assert safe.path("outside_link.jpg") is None
    with pytest.raises(DatasetError, match="points outside the dataset root"):
        safe.join("outside_link.jpg", what="annotations.json image 3 file_name")


@pytest.mark.parametrize("name", ["../secret.jpg", "/etc/passwd", "sub/../../secret.jpg"])
def test_a_name_that_leads_out_of_the_root_is_refused(tmp_path, name):
    _, safe = _root_with_links(tmp_path)
    assert safe.path(name) is None
