"""Runs never lose work: an earlier run is refused unless resumed or replaced, outputs are checked before any
training step, resumes are checked against the checkpoint, and a file output is never its own input."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from reference.cli import main

from spec_tests.conftest import FIXTURES


def _tiny_pennfudan(root: Path, n: int = 5) -> Path:
    """``n`` Penn-Fudan pairs from the fixtures: 4 training images (one ci batch) and 1 for validation."""
    src = FIXTURES / "pennfudan" / "train"
    for sub in ("PNGImages", "PedMasks"):
        (root / sub).mkdir(parents=True)
    for image in sorted((src / "PNGImages").glob("*.png"))[:n]:
        shutil.copy(image, root / "PNGImages" / image.name)
        mask = image.stem + "_mask.png"
        shutil.copy(src / "PedMasks" / mask, root / "PedMasks" / mask)
    return root


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def steps(monkeypatch) -> list[int]:
    """Counts the training epochs started (each would run optimizer steps), without changing them."""
    from reference.training import fit as training

    started: list[int] = []
    original = training.train_one_epoch

    def counting(model, optimizer, loader, device, epoch, *args, **kwargs):
        started.append(epoch)
        return original(model, optimizer, loader, device, epoch, *args, **kwargs)

    monkeypatch.setattr(training, "train_one_epoch", counting)
    return started


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return _tiny_pennfudan(tmp_path_factory.mktemp("tiny") / "data")


@pytest.fixture(scope="module")
def earlier_run(data, tmp_path_factory) -> Path:
    """A real one-epoch ``tvref train`` run."""
    out = tmp_path_factory.mktemp("earlier") / "run"
    assert main(["--quiet", "train", "--data", str(data), "--out", str(out), "--epochs", "1"]) == 0
    return out


def _train(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--quiet", "train", "--data", str(data), "--out", str(out), *extra]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_training_into_a_folder_with_an_earlier_run_is_refused_and_leaves_its_files_byte_identical(
        data, earlier_run, steps, capsys):
    before = _digests(earlier_run)
    assert {"last.pt", "best.pt", "checkpoint.json", "report.md", "report.json"} <= set(before)
    capsys.readouterr()
    assert main(_train(data, earlier_run, "--epochs", "1")) == 2
    line = _one_line_error(capsys)
    assert str(earlier_run) in line and "--resume" in line and "--overwrite" in line
    assert steps == []
    assert _digests(earlier_run) == before


def test_overwrite_replaces_the_earlier_run(data, earlier_run, tmp_path, steps):
    out = tmp_path / "run"
    shutil.copytree(earlier_run, out)
    (out / "predictions_7.png").write_bytes(b"an earlier demo's picture")
    (out / "notes.txt").write_text("the user's own file")
    assert main(_train(data, out, "--epochs", "1", "--seed", "3", "--overwrite")) == 0
    assert steps == [0]
    assert json.loads((out / "checkpoint.json").read_text())["seed"] == 3
    assert not (out / "predictions_7.png").exists()  # the earlier run's files are gone, not mixed in
    assert (out / "notes.txt").read_text() == "the user's own file"


def test_resume_continues_the_run_in_its_folder(data, earlier_run, tmp_path, steps):
    out = tmp_path / "run"
    shutil.copytree(earlier_run, out)
    assert main(_train(data, out, "--resume", str(out / "last.pt"), "--epochs", "2")) == 0
    assert steps == [1]
    meta = json.loads((out / "checkpoint.json").read_text())
    assert meta["epochs_done"] == 2 and len(meta["history"]) == 2


@pytest.mark.parametrize("extra,fields", [
    (["--recipe", "tutorial"], ["recipe 'ci' in the checkpoint, 'tutorial' now"]),
    (["--seed", "5"], ["seed 0 in the checkpoint, 5 now"]),
    (["--seed", "5", "--aspect-ratio-group-factor", "3"], ["seed 0", "aspect_ratio_group_factor -1"]),
])
def test_a_resume_with_other_settings_is_refused_in_one_line_naming_the_fields(
        data, earlier_run, tmp_path, steps, capsys, extra, fields):
    out = tmp_path / "run"
    shutil.copytree(earlier_run, out)
    before = _digests(out)
    assert main(_train(data, out, "--resume", str(out / "last.pt"), *extra)) == 2
    line = _one_line_error(capsys)
    assert "cannot resume" in line and all(f in line for f in fields), line
    assert steps == [] and _digests(out) == before


def _read_only_location(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        return ro / "out"
    if not Path("/sys").is_dir():
        pytest.skip("running as root without /sys: no folder here that root cannot write")
    return Path("/sys/tvref-read-only-test/out")  # sysfs refuses new entries, even to root


def test_a_read_only_output_fails_before_any_training_step(data, tmp_path, steps, capsys):
    out = _read_only_location(tmp_path)
    assert main(_train(data, out, "--epochs", "1")) == 2
    line = _one_line_error(capsys)
    assert str(out) in line and "cannot write" in line
    assert steps == []


def test_too_little_free_space_fails_before_any_training_step(data, tmp_path, steps, capsys, monkeypatch):
    monkeypatch.setattr("reference.app.outputs.shutil.disk_usage",
                        lambda p: shutil._ntuple_diskusage(10**9, 10**9, 1000))
    assert main(_train(data, tmp_path / "out", "--epochs", "1")) == 2
    assert "MB free, the run needs about" in _one_line_error(capsys)
    assert steps == []
    assert list((tmp_path / "out").iterdir()) == []


def test_an_out_that_is_a_file_is_refused(data, tmp_path, steps, capsys):
    (tmp_path / "f").write_text("x")
    assert main(_train(data, tmp_path / "f", "--epochs", "1")) == 2
    assert "exists and is not a folder" in _one_line_error(capsys)
    assert (tmp_path / "f").read_text() == "x" and steps == []


@pytest.mark.parametrize("value", ["-1", "0"])
def test_epochs_below_one_are_refused_in_one_line(data, tmp_path, capsys, value):
    with pytest.raises(SystemExit) as info:
        main(_train(data, tmp_path / "out", "--epochs", value))
    assert info.value.code == 2
    assert "--epochs: must be at least 1" in _one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_demo_into_an_earlier_run_is_refused_before_anything_runs(tmp_path, steps, capsys):
    (tmp_path / "report.md").write_text("an earlier demo")
    assert main(["--quiet", "demo", "--out", str(tmp_path), "--epochs", "1"]) == 2
    assert "holds an earlier run (report.md)" in _one_line_error(capsys)
    assert (tmp_path / "report.md").read_text() == "an earlier demo" and steps == []


@pytest.mark.parametrize("command", ["validate", "evaluate"])
def test_a_json_output_that_is_a_folder_is_refused_up_front(earlier_run, tmp_path, capsys, command):
    argv = {"validate": ["validate", str(FIXTURES / "pennfudan" / "val")],
            "evaluate": ["evaluate", "--checkpoint", str(earlier_run / "last.pt"), "--data",
                         str(FIXTURES / "pennfudan")]}[command]
    assert main(["--quiet", *argv, "--json", str(tmp_path)]) == 2
    assert "is a folder; give a file name" in _one_line_error(capsys)


def test_predict_refuses_to_overwrite_its_input_image(earlier_run, tmp_path, capsys):
    image = tmp_path / "photo.png"
    shutil.copy(FIXTURES / "pennfudan" / "val" / "PNGImages" / "FudanPed00001.png", image)
    before = image.read_bytes()
    for out in (image, tmp_path / "." / "photo.png"):
        assert main(["predict", "--checkpoint", str(earlier_run / "last.pt"), "--image", str(image),
                     "--out", str(out)]) == 2
        assert "is the input file" in _one_line_error(capsys)
    assert image.read_bytes() == before


def test_predict_refuses_an_out_that_is_a_folder(earlier_run, tmp_path, capsys):
    image = FIXTURES / "pennfudan" / "val" / "PNGImages" / "FudanPed00001.png"
    assert main(["predict", "--checkpoint", str(earlier_run / "last.pt"), "--image", str(image),
                 "--out", str(tmp_path)]) == 2
    assert "is a folder" in _one_line_error(capsys)
