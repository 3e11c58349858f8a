"""A fuzzer for everything a user hands the CLI: hypothesis mutates valid LabelMe JSON, COCO JSON, Penn-Fudan
mask PNGs, image files (EXIF orientation tags, pixel modes, truncation, sizes; blended mask values) and
checkpoints (truncation, wrong types, missing keys, huge, negative and NaN numbers, other encodings) and runs
``tvref validate`` / ``tvref evaluate`` on them. Whatever the mutation, the CLI returns 0, 1 or 2, never an
uncaught exception, and an exit 2 is one line naming the file or its folder.

Examples per format: 3 x the profile's ``max_examples`` (300 in the default profile, 3,000 in ``slow``).
"""

from __future__ import annotations

import copy
import io
import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFilter

from reference.training.checkpoint import load_checkpoint, save_checkpoint
from reference.cli import main

from spec_tests.conftest import FIXTURES

pytestmark = pytest.mark.extended  # robustness against hostile files, not results: the extended tier

EXAMPLES = 3 * settings.default.max_examples
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

ODD_VALUES = st.sampled_from([None, -1, 0, 10**30, -(10**30), math.nan, math.inf, 1e308, "text", "",
                              "\u00e9\u4e2d\U0001F600", [], {}, [[]], True, [1, 2], [-5, math.nan, 3, 4]])


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, prefix + (i,))
    return out


def _mutate_json(data: st.DataObject, doc: Any) -> bytes:
    """1 to 3 structural mutations (replace, delete, wrap), then maybe truncation or another encoding."""
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        path = data.draw(st.sampled_from(_paths(doc)), label="path")
        op = data.draw(st.sampled_from(["replace", "delete", "wrap"]), label="op")
        if not path:
            # a copy: ODD_VALUES holds mutable lists that a later mutation of this document would change
            doc = copy.deepcopy(data.draw(ODD_VALUES)) if op == "replace" else [doc]
            continue
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        if op == "delete":
            del parent[key]
        elif op == "wrap":
            parent[key] = [parent[key]]
        else:
            parent[key] = copy.deepcopy(data.draw(ODD_VALUES, label="value"))
    text = json.dumps(doc)
    raw = text.encode(data.draw(st.sampled_from(["utf-8", "utf-8", "utf-16", "latin-1"]), label="encoding"),
                      errors="replace")
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[:data.draw(st.integers(0, max(len(raw) - 1, 0)), label="cut")]
    return raw


def _run(argv: list[str], capsys, named: Path) -> int:
    capsys.readouterr()
    code = main(["--quiet", *argv])
    assert code in (0, 1, 2)
    if code == 2:
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "Traceback" not in err[0], err
        assert str(named) in err[0], err[0]
    return code


@pytest.fixture(scope="module")
def labelme_base(tmp_path_factory) -> tuple[Path, dict]:
    src = FIXTURES / "labelme"
    doc = json.loads((src / "card_0000.json").read_text())
    return src / doc["imagePath"], doc


@FUZZ
@given(data=st.data())
def test_mutated_labelme_json_never_crashes_validate(labelme_base, tmp_path_factory, capsys, data):
    image, doc = labelme_base
    root = tmp_path_factory.mktemp("labelme")
    shutil.copy(image, root / image.name)
    (root / "card_0000.json").write_bytes(_mutate_json(data, doc))
    _run(["validate", str(root)], capsys, root)


@pytest.fixture(scope="module")
def coco_base() -> dict:
    return json.loads((FIXTURES / "coco" / "annotations.json").read_text())


@FUZZ
@given(data=st.data())
def test_mutated_coco_json_never_crashes_validate(coco_base, tmp_path_factory, capsys, data):
    root = tmp_path_factory.mktemp("coco")
    (root / "images").symlink_to(FIXTURES / "coco" / "images")
    (root / "annotations.json").write_bytes(_mutate_json(data, coco_base))
    _run(["validate", str(root), "--max-samples", "2"], capsys, root)


def _mask_variants(data: st.DataObject, original: bytes) -> bytes:
    kind = data.draw(st.sampled_from(["truncate", "empty", "garbage", "rgb", "size", "ids", "mode16", "flip",
                                      "blend"]))
    if kind == "truncate":
        return original[:data.draw(st.integers(0, len(original) - 1))]
    if kind == "empty":
        return b""
    if kind == "garbage":
        return data.draw(st.binary(min_size=1, max_size=64))
    if kind == "flip":
        raw = bytearray(original)
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] ^= data.draw(st.integers(1, 255))
        return bytes(raw)
    with Image.open(io.BytesIO(original)) as im:
        im.load()
        w, h = im.size
        mask = im.copy()
    if kind == "rgb":
        mask = mask.convert("RGB")
    elif kind == "size":
        mask = mask.resize((data.draw(st.integers(1, 2 * w)), data.draw(st.integers(1, 2 * h))))
    elif kind == "ids":
        value = data.draw(st.integers(0, 255))
        mask = Image.new("L", (w, h), value)
    elif kind == "blend":  # anti-aliased: the ids scaled apart, smoothed at the edges
        mask = Image.fromarray((np.asarray(mask.convert("L"), dtype=np.uint8) * 40).astype(np.uint8)) \
            .filter(ImageFilter.BoxBlur(data.draw(st.integers(1, 3))))
    else:
        mask = Image.new("I;16", (w, h), data.draw(st.integers(0, 65535)))
    buf = io.BytesIO()
    mask.save(buf, format="PNG")
    return buf.getvalue()


@FUZZ
@given(data=st.data())
def test_mutated_pennfudan_masks_never_crash_validate(tmp_path_factory, capsys, data):
    src = FIXTURES / "pennfudan" / "val"
    root = tmp_path_factory.mktemp("pennfudan")
    (root / "PNGImages").mkdir()
    (root / "PedMasks").mkdir()
    image = sorted((src / "PNGImages").glob("*.png"))[0]
    shutil.copy(image, root / "PNGImages" / image.name)
    mask = f"{image.stem}_mask.png"
    (root / "PedMasks" / mask).write_bytes(_mask_variants(data, (src / "PedMasks" / mask).read_bytes()))
    _run(["validate", str(root)], capsys, root)


TAG_VALUES = st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 0, 9, 65535])
READABLE_MODES = ("L", "P", "LA", "RGBA", "1", "CMYK", "I;16")


def _image_variants(data: st.DataObject, original: bytes) -> tuple[bytes, bool]:
    """A mutated image file and whether it still holds a picture every path must read without an error: an EXIF
    orientation tag (valid or not) on the same pixels, or the same picture in another mode; otherwise truncated,
    resized (no longer its declared size), or garbage."""
    kind = data.draw(st.sampled_from(["tag", "mode", "truncate", "resize", "garbage"]), label="image")
    if kind == "truncate":
        return original[:data.draw(st.integers(0, len(original) - 1), label="cut")], False
    if kind == "garbage":
        return data.draw(st.binary(min_size=1, max_size=64)), False
    with Image.open(io.BytesIO(original)) as im:
        picture = im.convert("RGB")
    buf = io.BytesIO()
    if kind == "tag":
        exif = Image.Exif()
        exif[0x0112] = data.draw(TAG_VALUES, label="tag")
        picture.save(buf, format="PNG", exif=exif.tobytes())
        return buf.getvalue(), True
    if kind == "mode":
        mode = data.draw(st.sampled_from(READABLE_MODES), label="mode")
        if mode == "I;16":
            picture = Image.fromarray((np.asarray(picture.convert("L"), dtype=np.uint16) * 257))
        else:
            picture = picture.convert(mode)
        picture.save(buf, format="JPEG" if mode == "CMYK" else "PNG")
        return buf.getvalue(), True
    w, h = picture.size
    picture.resize((data.draw(st.integers(1, 2 * w)), data.draw(st.integers(1, 2 * h)))).save(buf, format="PNG")
    return buf.getvalue(), False


@FUZZ
@given(data=st.data())
def test_mutated_labelme_images_never_crash_validate(labelme_base, tmp_path_factory, capsys, data):
    """Tags (the 90-degree ones read as the stored frame the file declares) and modes leave no error; the rest
    is reported, on both paths, never a traceback."""
    image, doc = labelme_base
    root = tmp_path_factory.mktemp("labelme_image")
    raw, readable = _image_variants(data, image.read_bytes())
    (root / image.name).write_bytes(raw)
    (root / "card_0000.json").write_text(json.dumps(doc))
    for fast in ([], ["--headers-only"]):
        code = _run(["validate", str(root), *fast], capsys, root)
        if readable:
            assert code == 0, (fast, capsys.readouterr())


@pytest.fixture(scope="module")
def checkpoint_base(tmp_path_factory) -> tuple[bytes, dict, Path]:
    """A real (untrained) small Mask R-CNN checkpoint (its bytes, and its state as ``load_checkpoint`` reads it),
    and a one-image Penn-Fudan folder to evaluate it on. Read once here, not per example: the examples only
    copy them (about a fifth of the test's time went into re-reading the same 5.7 MB file).

    Its classifier is biased to background, so the checkpoints that still load detect nothing: evaluating them
    takes half the time (no mask pasting), and what the fuzzer exercises is reading the file, not scoring.
    """
    from reference.models import build_model

    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    weights = build_model("small_maskrcnn", 2).state_dict()
    weights["roi_heads.box_predictor.cls_score.bias"][0] = 100.0
    save_checkpoint(folder / "base.pt", {"model_name": "small_maskrcnn", "num_classes": 2, "recipe": "ci",
                                         "epoch": 1, "model": weights})
    data = folder / "data"
    src = FIXTURES / "pennfudan" / "val"
    for sub in ("PNGImages", "PedMasks"):
        (data / sub).mkdir(parents=True)
    image = sorted((src / "PNGImages").glob("*.png"))[0]
    shutil.copy(image, data / "PNGImages" / image.name)
    shutil.copy(src / "PedMasks" / f"{image.stem}_mask.png", data / "PedMasks" / f"{image.stem}_mask.png")
    return (folder / "base.pt").read_bytes(), load_checkpoint(folder / "base.pt"), data


def _mutated_state(data: st.DataObject, state: dict) -> dict:
    """A mutated copy; ``state`` and its model dict are left as they are."""
    state = {k: v for k, v in state.items() if k != "tensors_sha256"}
    key = data.draw(st.sampled_from(["model_name", "num_classes", "recipe", "epoch", "model", "model_key",
                                     "model_shape"]), label="field")
    if key == "model_key":
        name = data.draw(st.sampled_from(sorted(state["model"])))
        state["model"] = {k: v for k, v in state["model"].items() if k != name}
    elif key == "model_shape":
        name = data.draw(st.sampled_from(sorted(state["model"])))
        state["model"] = {**state["model"], name: torch.zeros(data.draw(st.integers(0, 3)))}
    elif data.draw(st.booleans(), label="delete"):
        del state[key]
    else:
        state[key] = data.draw(st.sampled_from([None, -1, 0, 10**30, math.nan, "text", "small_maskrcnn", [], 3]))
    return state


@FUZZ
@given(data=st.data())
def test_mutated_checkpoints_never_crash_evaluate(checkpoint_base, tmp_path_factory, capsys, data):
    base_bytes, base_state, dataset = checkpoint_base
    path = tmp_path_factory.mktemp("mutated") / "c.pt"
    if data.draw(st.booleans(), label="bytes"):
        raw = bytearray(base_bytes)
        kind = data.draw(st.sampled_from(["truncate", "flip", "append"]))
        if kind == "truncate":
            raw = raw[:data.draw(st.integers(0, len(raw) - 1))]
        elif kind == "flip":
            at = data.draw(st.integers(0, len(raw) - 1))
            raw[at] ^= data.draw(st.integers(1, 255))
        else:
            raw += data.draw(st.binary(min_size=1, max_size=32))
        path.write_bytes(bytes(raw))
    else:
        save_checkpoint(path, _mutated_state(data, base_state))
    # evaluated, or refused in one line naming the file (_run checks the line); evaluate has no exit 1
    assert _run(["evaluate", "--checkpoint", str(path), "--data", str(dataset)], capsys, path) in (0, 2)
