"""The committed fixtures are exactly what the generator makes for their recorded seeds."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from reference.testing.synthetic import generate

from spec_tests.conftest import FIXTURES

MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())


def _files(root):
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("entry", MANIFEST["folders"], ids=lambda e: e["path"])
def test_committed_fixture_equals_a_fresh_generation(entry, tmp_path):
    committed = FIXTURES / entry["path"]
    fresh = generate(entry["layout"], tmp_path / "fresh", entry["count"], entry["seed"], tuple(entry["size"]),
                     entry.get("classes", ["person"]))
    assert _files(committed) == _files(fresh)
    for rel in _files(committed):
        a, b = committed / rel, fresh / rel
        if rel.suffix in (".png", ".jpg"):
            with Image.open(a) as ia, Image.open(b) as ib:
                assert ia.mode == ib.mode and np.array_equal(np.asarray(ia), np.asarray(ib)), rel
        else:
            assert json.loads(a.read_text()) == json.loads(b.read_text()), rel


def test_default_fixture_stays_small():
    files = [p for p in FIXTURES.rglob("*") if p.is_file()]
    data = sum(p.stat().st_size for p in files if p.suffix != ".pt")
    weights = sum(p.stat().st_size for p in files if p.suffix == ".pt")
    assert data < 3 * 2**20, f"fixture data weighs {data / 2**20:.2f} MiB; keep it under 3 MiB"
    # two float16 state dicts of the small Mask R-CNN (1.4 M parameters, 2.7 MiB each): the golden trained weights
    # and the pretrained stand-in
    assert weights < 6 * 2**20, f"fixture weights weigh {weights / 2**20:.2f} MiB; keep them under 6 MiB"


def test_generator_is_deterministic_and_seed_sensitive(tmp_path):
    a = generate("pennfudan", tmp_path / "a", 2, seed=4)
    b = generate("pennfudan", tmp_path / "b", 2, seed=4)
    c = generate("pennfudan", tmp_path / "c", 2, seed=5)
    name = "PNGImages/FudanPed00001.png"
    assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / name).read_bytes() != (c / name).read_bytes()
