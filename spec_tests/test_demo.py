"""The main job writes every file it promises (one epoch here; the full run is the gate benchmark)."""

from __future__ import annotations

import json

from PIL import Image

from reference.cli import main


def test_demo_writes_report_checkpoint_plot_and_pictures(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["--quiet", "demo", "--out", str(out), "--epochs", "1"]) == 0
    printed = capsys.readouterr().out
    assert "bbox: AP" in printed and str(out / "report.md") in printed
    report = json.loads((out / "report.json").read_text())
    assert set(report["coco"]) == {"bbox", "segm"} and len(report["epochs"]) == 1
    assert report["validation"]["train"]["errors"] == 0 and report["validation"]["val"]["errors"] == 0
    assert {"torch", "torchvision", "pycocotools"} <= set(report["versions"])
    assert report["gate"] == ["not checked: --epochs differs from the recipe"]
    md = (out / "report.md").read_text()
    assert "| bbox |" in md and "## Per epoch" in md
    meta = json.loads((out / "checkpoint.json").read_text())
    assert meta["model_name"] == "small_maskrcnn" and meta["epochs_done"] == 1
    for name in ("history.png", "predictions_0.png", "predictions_3.png"):
        with Image.open(out / name) as im:
            assert im.width > 400
