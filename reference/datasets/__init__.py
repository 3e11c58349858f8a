"""Datasets for the tutorials' on-disk layouts, and :func:`open_dataset` to pick one by format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from .coco import CocoInstancesDataset
from .common import DatasetError
from .labelme import LabelMeDataset
from .pennfudan import PennFudanDataset

FORMATS = ("pennfudan", "labelme", "coco")

__all__ = ["CocoInstancesDataset", "DatasetError", "FORMATS", "LabelMeDataset", "PennFudanDataset",
           "detect_format", "open_dataset"]


def detect_format(root: str | Path) -> str:
    """Guess the layout of a folder; raises DatasetError naming what was looked for."""
    root = Path(root)
    if (root / "PNGImages").is_dir() and (root / "PedMasks").is_dir():
        return "pennfudan"
    if (root / "annotations.json").is_file():
        return "coco"
    if any(root.glob("*.json")):
        return "labelme"
    raise DatasetError(f"{root}: no known layout (PNGImages/ + PedMasks/, annotations.json, or LabelMe *.json)")


def labelme_classes(root: Path) -> list[str]:
    """Class names in a LabelMe folder, sorted, for when the caller does not list them."""
    names = set()
    for p in sorted(root.glob("*.json")):
        names |= {s.get("label") for s in json.loads(p.read_text()).get("shapes", [])}
    return sorted(n for n in names if isinstance(n, str))


def open_dataset(root: str | Path, fmt: str | None = None, transforms: Callable | None = None,
                 classes: list[str] | None = None):
    """The dataset for folder ``root`` in layout ``fmt`` (detected when None)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder")
    fmt = fmt or detect_format(root)
    if fmt == "pennfudan":
        return PennFudanDataset(root, transforms)
    if fmt == "labelme":
        return LabelMeDataset(root, classes or labelme_classes(root), transforms)
    if fmt == "coco":
        return CocoInstancesDataset(root / "images", root / "annotations.json", transforms)
    raise DatasetError(f"unknown format {fmt!r}; choose from {FORMATS}")
