"""Datasets for the tutorials' on-disk layouts and the common exports, and :func:`open_dataset` to pick one."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from .coco import CocoInstancesDataset
from .common import DatasetError
from .labelme import LabelMeDataset, labelme_classes, labelme_files, read_class_file
from .listing import is_system_file
from .names import MERGE_MODES, MergeNames
from .pennfudan import PennFudanDataset

FORMATS = ("pennfudan", "labelme", "coco")
# COCO annotation files a folder may hold: this project's and labelme2coco's, then Roboflow's (one per split).
COCO_NAMES = ("annotations.json", "_annotations.coco.json")

__all__ = ["COCO_NAMES", "CocoInstancesDataset", "DatasetError", "FORMATS", "LabelMeDataset", "MERGE_MODES",
           "PennFudanDataset", "coco_annotation_file", "detect_format", "labelme_classes", "labelme_files",
           "load_errors", "open_dataset", "parse_classes", "read_class_file"]


def coco_annotation_file(root: Path) -> Path | None:
    """The COCO file of a folder: ``annotations.json``, ``_annotations.coco.json`` (Roboflow) or the one
    ``annotations/instances_*.json`` (CVAT; else ``annotations/person_keypoints_*.json``, CVAT's keypoints
    export); None when there is none. Several CVAT subsets: DatasetError."""
    for name in COCO_NAMES:
        if (root / name).is_file():
            return root / name
    # CVAT's "COCO Keypoints 1.0" (Datumaro's person_keypoints task) when there is no instances file
    found = [p for pattern in ("instances_*.json", "person_keypoints_*.json")
             for p in sorted((root / "annotations").glob(pattern)) if not is_system_file(p.name)]
    found = [p for p in found if p.name.startswith("instances_")] or found
    if len(found) > 1:
        raise DatasetError(f"{root}: several COCO files ({', '.join(p.name for p in found)}); give one of them "
                           "instead of the folder")
    return found[0] if found else None


def detect_format(root: str | Path) -> str:
    """Guess the layout of a folder (or a ``.json`` file: COCO); raises DatasetError naming what was looked for."""
    root = Path(root)
    if root.is_file() and root.suffix.lower() == ".json":
        return "coco"
    if (root / "PNGImages").is_dir() and (root / "PedMasks").is_dir():
        return "pennfudan"
    if coco_annotation_file(root) is not None:
        return "coco"
    if labelme_files(root)[0]:
        return "labelme"
    raise DatasetError(f"{root}: no known layout (PNGImages/ + PedMasks/; annotations.json, _annotations.coco.json "
                       "or annotations/instances_*.json; or LabelMe *.json)")


def parse_classes(value: str | Path | Sequence[str] | None) -> list[str] | None:
    """A class list from a labelme ``labels.txt`` (a path), a comma-separated string or a sequence of names.

    ``__ignore__`` and ``_background_`` are never object classes and are left out; a repeated name is an error.
    """
    if value is None:
        return None
    if isinstance(value, Path) or (isinstance(value, str) and Path(value).is_file()):
        return read_class_file(value)
    names = [n.strip() for n in value.split(",")] if isinstance(value, str) else [str(n) for n in value]
    names = [n for n in names if n and n not in ("__ignore__", "_background_")]
    if isinstance(value, str) and not names:
        raise DatasetError(f"--classes {value!r}: neither a file nor a comma-separated list of class names")
    if len(set(names)) != len(names):
        raise DatasetError(f"class list {names} names a class twice")
    return names


def open_dataset(root: str | Path, fmt: str | None = None, transforms: Callable | None = None,
                 classes: str | Path | Sequence[str] | None = None, images: str | Path | None = None, *,
                 merge_similar_names: MergeNames = False):
    """The dataset for folder ``root`` (or a COCO ``.json``) in layout ``fmt`` (detected when None).

    ``classes``: the object classes (see :func:`parse_classes`); LabelMe labels and COCO categories outside it
    are reported. ``images``: the COCO image root (default: found beside the annotation file).
    ``merge_similar_names``: read LabelMe labels and COCO category names (and ``classes``) that differ only in
    surrounding whitespace ("whitespace") or in case too ("case" or True) as one class; by default they stay
    separate classes, with a CLASS_NAME_SIMILAR warning (see :mod:`reference.data.names`).
    """
    root = Path(root)
    if not root.is_dir() and not (root.is_file() and root.suffix.lower() == ".json"):
        raise DatasetError(f"{root}: no such folder")
    fmt = fmt or detect_format(root)
    names = parse_classes(classes)
    if images is not None and fmt != "coco":
        raise DatasetError(f"an image folder (--images) applies to COCO files; {root} is {fmt}")
    if fmt == "pennfudan":
        if names not in (None, ["person"]):
            raise DatasetError(f"{root}: a PennFudan folder has the one class ['person'], not {names}")
        return PennFudanDataset(root, transforms)
    if fmt == "labelme":
        return LabelMeDataset(root, names, transforms, merge_similar_names=merge_similar_names)
    if fmt == "coco":
        ann = root if root.is_file() else coco_annotation_file(root)
        if ann is None:
            raise DatasetError(f"{root}: no COCO file ({', '.join(COCO_NAMES)} or annotations/instances_*.json)")
        return CocoInstancesDataset(images, ann, transforms, names, merge_similar_names=merge_similar_names)
    raise DatasetError(f"unknown format {fmt!r}; choose from {FORMATS}")


def load_errors(dataset) -> list:
    """The error-severity findings a loader recorded while reading its files (``load_violations``), for a caller
    that must refuse such data (training) rather than report it (validation)."""
    return [v for v in getattr(dataset, "load_violations", []) or [] if v.severity == "error"]
