"""The tutorial's own run on the real PennFudan archive with COCO weights (tier ``requires_data``).

Needs ``PENNFUDAN_ROOT`` pointing at the extracted ``PennFudanPed`` folder and torchvision's Mask R-CNN COCO
weights in the torch hub cache; skipped with the reason otherwise. Run with ``pytest -m requires_data``.

Published figures (shared/seeds, 50 held-out images, GPU): after 1 epoch bbox AP 0.606 / 0.686 and segm AP
0.704 / 0.697 in two runs; after 10 epochs 0.799 / 0.761. Tolerance: the two published one-epoch runs differ
by 0.08 bbox AP, so one-epoch results may sit 0.08 below the lower published figure; after 10 epochs the
schedule has converged and 0.05 is allowed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torchvision.models import detection as tvd

from reference.app.train import TrainOptions, run_train
from reference.models import _hub_file

pytestmark = [pytest.mark.requires_data, pytest.mark.slow]


def _requirements() -> Path:
    root = os.environ.get("PENNFUDAN_ROOT")
    if not root or not (Path(root) / "PNGImages").is_dir():
        pytest.skip("set PENNFUDAN_ROOT to the extracted PennFudanPed folder (not downloadable on this machine)")
    weights = _hub_file(tvd.MaskRCNN_ResNet50_FPN_Weights.DEFAULT)
    if not weights.is_file():
        pytest.skip(f"COCO weights missing: place {weights.name} in {weights.parent}")
    return Path(root)


@pytest.mark.parametrize("epochs,bbox,segm,tol", [(1, 0.606, 0.697, 0.08), (10, 0.799, 0.761, 0.05)])
def test_tutorial_recipe_reproduces_the_published_figures(epochs, bbox, segm, tol, tmp_path):
    root = _requirements()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    result, _ = run_train(TrainOptions(data=root, out=tmp_path, model="maskrcnn_resnet50_fpn", recipe="tutorial",
                                       weights="DEFAULT", epochs=epochs, device=device, print_freq=10))
    assert result.final.stats["bbox"][0] >= bbox - tol
    assert result.final.stats["segm"][0] >= segm - tol
