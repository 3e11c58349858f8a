"""COCO instances JSON as the common exporters write it: polygons and RLE, ``iscrowd``, images without
annotations as valid negatives, and every annotation that cannot be used reported, never silently dropped.

Exporters this reads as they mean their files:

- labelme2coco (labelme's ``examples/instance_segmentation``): ``annotations.json`` beside ``JPEGImages/``,
  ``file_name`` ``JPEGImages/x.jpg`` relative to the annotation file's folder; a category ``_background_`` with
  id 0 (the second line of ``labels.txt``), which is the background and not an object class; a rectangle's
  segmentation written as its two corners (4 numbers), read here as that rectangle.
- CVAT's "COCO 1.0" (Datumaro's COCO exporter): ``annotations/instances_<subset>.json`` with the images in
  ``images/<subset>/``, category ids from 1, ``segmentation: []`` for rectangles, masks as uncompressed RLE with
  ``iscrowd`` 1, an ``attributes`` dict per annotation. Datumaro sets ``iscrowd`` 1 on every mask, so these are
  read as objects (one ANNOTATION_REPAIRED finding says how many), unless ``attributes`` has ``is_crowd: true``.
  Other files' ``iscrowd`` 1 regions are crowd regions: training leaves them out, evaluation ignores them.
- Roboflow: ``_annotations.coco.json`` in each split folder beside its images; category 0 is a placeholder named
  after the project, the ``supercategory`` of every real category, used by no annotation: not a class.

``file_name`` is resolved against an image root (detectron2's ``register_coco_instances(name, meta, json,
image_root)``): the given one, else the first of the annotation file's folder, its ``images/`` (this project's
own layout) and, for ``annotations/instances_<subset>.json``, ``../images/<subset>/`` and ``../images/`` that
holds the images.

Records as exporters and people leave them:

- Label Studio's COCO export (label-studio-converter's ``convert_to_coco``) writes ``file_name`` as the task's
  image path, e.g. ``/data/upload/<project>/<hash>-x.jpg``, when it did not copy the image, and
  ``images\\<hash>-x.jpg`` (Windows separators) when it ran on Windows. A path from another machine (absolute,
  or a URL) is looked up by its base name under the image root (IMAGE_PATH_RESOLVED), and where it is not
  there that image alone is left out (IMAGE_ENTRY_INVALID); back-slashes are separators. A relative path that
  leaves the image root (``..``) is refused.
- One file under two image ids is one image: the records are merged onto the lowest id (IMAGE_FILE_SHARED),
  unless they declare different sizes (IMAGE_ENTRY_INVALID, the later one left out).
- Two categories of one name are one class, the lowest id's (CATEGORY_NAME_DUPLICATE); names differing only in
  case or surrounding whitespace stay separate classes (CLASS_NAME_SIMILAR) unless ``merge_similar_names``
  asks otherwise (see :mod:`reference.data.names`).
- Keypoints, where categories declare ``keypoints`` names (COCO's person_keypoints, Datumaro's/CVAT's "COCO
  Keypoints" export, ``annotations/person_keypoints_<subset>.json``; Datumaro writes ``"keypoints": []`` for
  categories without any): each annotation's ``[x1, y1, v1, ...]`` becomes ``keypoints`` float32 [N, K, 3], as
  torchvision's references read them (no half-pixel shift, unlike detectron2); an annotation without keypoints
  gets zeros with visibility 0. Malformed keypoints (not 3 x K finite numbers) are ANNOTATION_INVALID: those
  keypoints alone are left out (visibility 0), the annotation's box and mask are kept.
- A byte-order mark at the start of the file is skipped.
"""

from __future__ import annotations

import json
import logging
import math
import operator
import re
import urllib.parse
from dataclasses import dataclass
from itertools import chain, repeat
from pathlib import Path, PureWindowsPath
from typing import Any, Callable, Sequence

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch.utils.data import Dataset
from torchvision import tv_tensors

from ..contract import Violation
from ..contract.summary import SummaryBatch
from .common import (FAR_OUTSIDE, DatasetError, HeaderSamples, SafeRoot, SampleNotes, collection_paused, far_outside,
                     issue, max_image_pixels, read_json)
from .images import ImageHeaderInfo, choose_frame, decode_header, read_header, read_rgb, stored_frame_note
from .records import SampleRecord, to_target
from .names import (MERGE_HINT, MergeNames, merge_mode, name_key, normalised_class_list, similar_groups,
                    unknown_label_hint)

log = logging.getLogger(__name__)

BACKGROUND_NAMES = ("_background_", "__background__")
# How many images (from the lowest id) are looked up when choosing the image root among the candidates.
ROOT_PROBE = 16
def segmentation_rle(segm: Any, height: int, width: int) -> dict:
    """A COCO segmentation (polygon list, uncompressed or compressed RLE) as one compressed RLE, the form
    pycocotools decodes, measures (``area``) and boxes (``toBbox``)."""
    if isinstance(segm, list):
        return mask_utils.merge(mask_utils.frPyObjects(segm, height, width))
    if isinstance(segm.get("counts"), list):
        return mask_utils.frPyObjects(segm, height, width)
    return segm


def decode_segmentation(segm: Any, height: int, width: int) -> np.ndarray:
    """A COCO segmentation (polygon list, uncompressed or compressed RLE) as a uint8 [H, W] mask."""
    return mask_utils.decode(segmentation_rle(segm, height, width)).astype(np.uint8)


def annotation_mask(ann: dict, height: int, width: int) -> np.ndarray:
    """An annotation's mask as uint8 [H, W]: its segmentation decoded, or for a box-only annotation in a
    dataset with masks, the pixels its box covers."""
    if ann["_segm"] is not None:
        return decode_segmentation(ann["_segm"], height, width)
    x, y, bw, bh = ann["bbox"]
    m = np.zeros((height, width), dtype=np.uint8)
    m[max(int(math.floor(y)), 0):max(int(math.ceil(y + bh)), 0),
      max(int(math.floor(x)), 0):max(int(math.ceil(x + bw)), 0)] = 1
    return m


@dataclass(frozen=True)
class AnnotationMasks:
    """A sample's masks from its annotations (:func:`annotation_mask`), drawn when the target is made."""

    anns: Sequence[dict]

    def draw(self, height: int, width: int) -> torch.Tensor:
        if not self.anns:
            return torch.zeros((0, height, width), dtype=torch.uint8)
        return torch.from_numpy(np.stack([annotation_mask(a, height, width) for a in self.anns]))


def encode_rle(mask: np.ndarray) -> dict:
    """A [H, W] mask (non-zero is foreground) as a JSON-ready compressed COCO RLE: ``{"size": [H, W], "counts":
    str}``, what COCO results files, pycocotools' ``COCO.loadRes`` and the snapshots hold."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def rle_string_counts(text: str) -> list[int] | None:
    """The run lengths of a compressed COCO RLE string (the encoding of pycocotools' ``rleToString``), None when
    the string is not one. Decoding is checked here because pycocotools decodes without bounds checks."""
    counts: list[int] = []
    p = 0
    while p < len(text):
        x, k, more = 0, 0, True
        while more:
            if p >= len(text):
                return None
            c = ord(text[p]) - 48
            if not 0 <= c < 64:
                return None
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


_NUMBER_TYPES = {int, float}


def _all_numbers(values: list) -> bool:
    """Whether every value is a finite int or float (not a bool): one pass over the types and a finite sum for
    the usual case (a finite sum has no inf or NaN term), value by value otherwise."""
    try:
        if {type(v) for v in values} <= _NUMBER_TYPES and math.isfinite(sum(values)):
            return True
    except (OverflowError, TypeError):
        pass
    return all(_is_number(v) for v in values)


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def foreign_base_name(file_name: str) -> str | None:
    """The base name of a ``file_name`` that is a path on another machine: absolute (``/data/upload/3/x.jpg``,
    ``C:\\x.jpg``, ``\\\\server\\x.jpg``) or a URL; None for a relative path."""
    if "\\" not in file_name and ":" not in file_name and not file_name.startswith("/"):
        return None  # the usual relative name, told apart without parsing it
    if _URL.match(file_name):
        return urllib.parse.unquote(PureWindowsPath(urllib.parse.urlparse(file_name).path).name)
    path = PureWindowsPath(file_name)  # "/" and "\\" both separate here
    return path.name if path.drive or path.root else None


def _local_name(file_name: str, root: Path) -> str:
    """``file_name`` as a path under ``root``: a foreign path's base name (percent-decoded where only that is
    there, as Label Studio quotes its URLs), Windows separators as ``/`` where the name as given is not a file."""
    base = foreign_base_name(file_name)
    if base is not None:
        plain = urllib.parse.unquote(base)
        return plain if plain != base and not (root / base).is_file() and (root / plain).is_file() else base
    if "\\" in file_name and not (root / file_name).is_file():
        return PureWindowsPath(file_name).as_posix()
    return file_name


def _datumaro_mask(ann: dict) -> bool:
    """Whether an ``iscrowd: 1`` annotation is a mask as CVAT's COCO 1.0 (Datumaro's exporter) writes every mask:
    ``iscrowd = int(mask is not None)``, an uncompressed RLE and an ``attributes`` dict; an explicit
    ``is_crowd: true`` attribute keeps it a crowd region."""
    attrs, segm = ann.get("attributes"), ann.get("segmentation")
    return (isinstance(attrs, dict) and attrs.get("is_crowd") is not True and isinstance(segm, dict)
            and isinstance(segm.get("counts"), list))


def image_root_candidates(annotation_json: Path) -> list[Path]:
    """Where ``file_name`` may be relative to, in the order tried (see the module docstring)."""
    folder = annotation_json.parent
    found = [folder, folder / "images"]
    if folder.name == "annotations":
        stem = annotation_json.stem
        subset = next((stem[len(p):] for p in ("instances_", "person_keypoints_") if stem.startswith(p)),
                      stem.partition("_")[2])
        if subset:
            found.append(folder.parent / "images" / subset)
        found += [folder.parent / "images", folder.parent]
    return list(dict.fromkeys(found))


# The fields a usable annotation needs; with "area" and "iscrowd" present too it needs no repair.
_REQUIRED = ("id", "image_id", "category_id", "bbox")
_PLAIN_FIELDS = frozenset(_REQUIRED + ("area", "iscrowd"))
_PLAIN_GETTER = operator.itemgetter(*_REQUIRED, "area", "iscrowd")


def _numeric_rows(rows: list[list]) -> np.ndarray:
    """Which rows hold only ints and floats (no bool, no string): one pass over every value's type for the usual
    file, row by row only when some value is of another type."""
    if set(map(type, chain.from_iterable(rows))) <= _NUMBER_TYPES:
        return np.ones(len(rows), dtype=bool)
    return np.fromiter((set(map(type, row)) <= _NUMBER_TYPES for row in rows), dtype=bool, count=len(rows))


def _floats(rows: list[list], width: int | None = None) -> np.ndarray:
    """The numbers of ``rows`` (checked numeric) as one float64 array, [len(rows), width] when given."""
    count = sum(map(len, rows)) if width is None else width * len(rows)
    flat = np.fromiter(chain.from_iterable(rows), dtype=np.float64, count=count)
    return flat if width is None else flat.reshape(-1, width)


def _exact(values: np.ndarray) -> np.ndarray:
    """Finite and small enough that float64 holds every integer exactly, so comparisons and sums give what
    Python's arithmetic on the values as read gives."""
    return np.isfinite(values) & (np.abs(values) < 2.0**52)


def plainly_usable(raw: list, index_of: dict, sizes: np.ndarray, labelled: set[int]) -> np.ndarray | None:
    """Which annotations :meth:`CocoInstancesDataset._prepare` would keep as read without a word, decided for
    the whole file at once (numpy over its boxes and polygon vertices, not a Python check per value), so that
    only the others take the annotation-by-annotation way. True means: a dict with every field of
    ``_PLAIN_FIELDS``, an image of ``index_of`` (``sizes``: its (H, W) by sample index), a category id in
    ``labelled``, 4 finite numbers for a box of positive size not far outside the image, finite numeric
    ``area`` and ``iscrowd``, and no segmentation or polygons of an even count of at least 6 finite numbers
    none far outside (RLE and 4-number rectangles go the other way). None when annotation ids repeat or cannot
    be compared: then every annotation goes the other way, which reports them."""
    n = len(raw)
    columns = _plain_columns(raw)
    if columns is None:
        return _plainly_usable_mixed(raw, index_of, sizes, labelled)
    ids, image_ids, category_ids, rows, areas, crowds = columns
    try:
        if len(set(ids)) != n:
            return None
        image = np.fromiter(map(index_of.get, image_ids, repeat(-1)), dtype=np.int64, count=n)
    except TypeError:  # an unhashable id
        return None
    ok = image >= 0
    if set(map(type, category_ids)) == {int} and set(map(type, rows)) == {list} and set(map(len, rows)) == {4}:
        ok &= np.fromiter(map(labelled.__contains__, category_ids), dtype=bool, count=n)
    else:
        ok &= np.fromiter((type(c) is int and c in labelled and type(b) is list and len(b) == 4
                           for c, b in zip(category_ids, rows)), dtype=bool, count=n)
    return _boxes_usable(raw, ok, image, sizes, rows, areas, crowds)


def _plain_columns(raw: list) -> list[tuple] | None:
    """The fields of :data:`_PLAIN_FIELDS` of every annotation as columns (id, image_id, category_id, bbox, area,
    iscrowd), read without a Python step per annotation; None unless every annotation is a dict holding them
    all (the usual file)."""
    if not raw or set(map(type, raw)) != {dict}:
        return None
    try:
        return list(zip(*map(_PLAIN_GETTER, raw)))
    except KeyError:
        return None


def _plainly_usable_mixed(raw: list, index_of: dict, sizes: np.ndarray, labelled: set[int]) -> np.ndarray | None:
    """:func:`plainly_usable` for a file where some annotation is not a dict or lacks a field: the same
    decision, annotation by annotation where that is needed."""
    n = len(raw)
    ok = np.fromiter((type(a) is dict and a.keys() >= _PLAIN_FIELDS for a in raw), dtype=bool, count=n)
    try:
        ids = [a["id"] for a in raw if type(a) is dict and "id" in a]
        if len(set(ids)) != len(ids):
            return None
        image = np.fromiter((index_of.get(a["image_id"], -1) if o else -1 for a, o in zip(raw, ok)),
                            dtype=np.int64, count=n)
    except TypeError:  # an unhashable id
        return None
    ok &= image >= 0
    ok &= np.fromiter((o and type(a["category_id"]) is int and a["category_id"] in labelled
                       and type(a["bbox"]) is list and len(a["bbox"]) == 4
                       for a, o in zip(raw, ok)), dtype=bool, count=n)
    fields = [[a.get(key) if type(a) is dict else None for a in raw] for key in ("bbox", "area", "iscrowd")]
    return _boxes_usable(raw, ok, image, sizes, *fields)


def _boxes_usable(raw: list, ok: np.ndarray, image: np.ndarray, sizes: np.ndarray, boxes: Sequence,
                  areas: Sequence, crowds: Sequence) -> np.ndarray:
    """``ok`` (annotations of a known image and class with a 4-element box list) narrowed to those whose box,
    area and iscrowd are plain numbers (see :func:`plainly_usable`) and whose polygons are usable as read;
    ``boxes``, ``areas``, ``crowds``: each annotation's bbox, area and iscrowd."""
    at = np.flatnonzero(ok)
    columns = [boxes, areas, crowds]
    if len(at) < len(ok):
        columns = [[c[k] for k in at.tolist()] for c in columns]
    numeric = _numeric_rows(columns[0])
    if not set(map(type, columns[1])) | set(map(type, columns[2])) <= _NUMBER_TYPES:
        numeric &= _numeric_rows(list(zip(*columns[1:])))
    ok[at[~numeric]] = False
    if not numeric.all():
        columns = [[v for v, keep in zip(c, numeric) if keep] for c in columns]
        at = at[numeric]
    if not len(at):
        return ok
    values = np.concatenate([_floats(columns[0], 4), _floats([columns[1], columns[2]]).reshape(2, -1).T], axis=1)
    x1, y1, bw, bh = values[:, :4].T
    h, w = (sizes[image[at], d].astype(np.float64) for d in (0, 1))
    ok[at] = (_exact(values[:, :4]).all(1) & np.isfinite(values[:, 4:]).all(1) & (bw > 0) & (bh > 0)
              & ~_far(x1, x1 + bw, w) & ~_far(y1, y1 + bh, h))
    return _polygons_usable(raw, ok, sizes[image])


def _far(lo: np.ndarray, hi: np.ndarray, extent: np.ndarray) -> np.ndarray:
    """:func:`far_outside` along one axis, vectorised."""
    return (lo < -FAR_OUTSIDE * extent) | (hi > (1 + FAR_OUTSIDE) * extent)


def _polygons_usable(raw: list, ok: np.ndarray, size: np.ndarray) -> np.ndarray:
    """``ok`` with the annotations whose segmentation would not be kept as read turned False (see
    :func:`plainly_usable`); ``size``: each annotation's image (H, W)."""
    at = np.flatnonzero(ok)
    segs = [raw[k].get("segmentation") for k in at.tolist()]
    if set(map(type, segs)) == {list}:  # the usual file: every segmentation a list, [] for a box
        listed = np.fromiter(map(bool, segs), dtype=bool, count=len(segs))
    else:
        listed = np.fromiter((type(s) is list and len(s) > 0 for s in segs), dtype=bool, count=len(segs))
        ok[at] = listed | np.fromiter((s is None or s == [] or s == {} for s in segs), dtype=bool, count=len(segs))
    which = at[listed]
    if not len(which):
        return ok
    polygons = [segs[k] for k in np.flatnonzero(listed)]
    owner = np.repeat(np.arange(len(which)), np.fromiter(map(len, polygons), dtype=np.int64, count=len(which)))
    parts = list(chain.from_iterable(polygons))
    lengths = (np.fromiter(map(len, parts), dtype=np.int64, count=len(parts)) if set(map(type, parts)) == {list}
               else np.fromiter((len(p) if type(p) is list else 0 for p in parts), dtype=np.int64, count=len(parts)))
    shaped = (lengths >= 6) & (lengths % 2 == 0)
    shaped[shaped] = _numeric_rows([p for p, keep in zip(parts, shaped) if keep]) if not shaped.all() \
        else _numeric_rows(parts)
    bad = np.zeros(len(which), dtype=bool)
    bad[owner[~shaped]] = True
    kept = parts if shaped.all() else [p for p, keep in zip(parts, shaped) if keep]
    if kept:
        owner, lengths = owner[shaped], lengths[shaped]
        coords = _floats(kept)
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1])) // 2
        xs, ys = coords[0::2], coords[1::2]  # every part has an even count, so x and y alternate throughout
        exact = np.logical_and.reduceat(_exact(xs) & _exact(ys), starts)
        h, w = (size[which[owner], d].astype(np.float64) for d in (0, 1))
        far = (_far(np.minimum.reduceat(xs, starts), np.maximum.reduceat(xs, starts), w)
               | _far(np.minimum.reduceat(ys, starts), np.maximum.reduceat(ys, starts), h))
        bad |= np.bincount(owner, weights=~exact | far, minlength=len(which)) > 0
    ok[which[bad]] = False
    return ok


class CocoInstancesDataset(HeaderSamples, Dataset):
    """A COCO instances file over an image root (v2 flavour: ``tv_tensors``, int ``image_id``).

    ``images_dir`` None picks the image root as the module docstring says. Object categories map to labels
    1..K in increasing id order (``cat_id_to_label``, ``label_to_cat_id``, ``classes`` with "background" first),
    or, given ``classes`` (object class names), to their position in that list, so that two splits share one
    numbering. Background and placeholder categories are not classes. Boxes are the annotations' ``bbox`` in
    XYXY; ``area`` and ``iscrowd`` are passed through, except that a missing one is filled in (ANNOTATION_REPAIRED:
    ``iscrowd`` 0, ``area`` measured) and CVAT/Datumaro masks' ``iscrowd`` 1 reads as 0 (see the module docstring).
    Every annotation or image record that cannot be used is left out and recorded in ``load_violations`` (file,
    annotation id, field, rule); what cannot be read at all raises :class:`DatasetError`.
    """

    # what validation's pickling probe leaves out: records parsed from the JSON file (see check_picklable)
    PARSED_DATA = ("images", "annotations", "_paths", "_index_of")

    def __init__(self, images_dir: str | Path | None, annotation_json: str | Path,
                 transforms: Callable | None = None, classes: Sequence[str] | None = None, *,
                 merge_similar_names: MergeNames = False):
        self.annotation_json = Path(annotation_json)
        self.transforms = transforms
        self.merge_similar_names = merge_mode(merge_similar_names)
        self.load_violations: list[Violation] = []
        self._name = self.annotation_json.name
        with collection_paused():  # a million annotations are a few million objects
            self._build(images_dir, classes)

    def _build(self, images_dir: str | Path | None, classes: Sequence[str] | None) -> None:
        doc = self._read()
        cats = self._categories(doc["categories"], doc["annotations"])
        # labelme2coco re-encodes every image upright (no EXIF): a tag found on one was left there by another tool
        self.upright_when_undecided = not any(c["name"] == "_background_" and c["kind"] == "background"
                                              for c in cats.values())
        self._notes = SampleNotes()
        self._map_classes(cats, classes)
        self.images = self._images(doc["images"])
        self.images_dir = Path(images_dir) if images_dir is not None else self._pick_root()
        self._resolve_files()
        self.annotations: list[list[dict]] = [[] for _ in self.images]
        self.datumaro_masks = 0
        self._collect(doc["annotations"], cats)
        if self.datumaro_masks:
            self.load_violations.append(issue(
                "ANNOTATION_REPAIRED", None, "iscrowd",
                f"{self._name}: {self.datumaro_masks} masks written by CVAT/Datumaro with iscrowd 1 (an uncompressed "
                "RLE and an 'attributes' dict: Datumaro writes every mask so) are read as objects (iscrowd 0), to be "
                "trained on and scored; the references would drop them as crowd regions",
                hint='mark a real crowd region with "attributes": {"is_crowd": true}'))
        self.has_masks = any(a["_segm"] is not None for anns in self.annotations for a in anns)
        if self.has_masks:
            for i, anns in enumerate(self.annotations):
                for a in anns:
                    if a["_segm"] is None:
                        self._report("ANNOTATION_REPAIRED", a, i, "segmentation", "has no segmentation while "
                                     "others do; its mask is its box (CVAT and Roboflow write [] for rectangles)")

    # --- reading -------------------------------------------------------------------------------------------

    def _read(self) -> dict:
        try:
            doc = read_json(self.annotation_json)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DatasetError(f"{self.annotation_json}: not a readable COCO JSON ({exc})") from exc
        if not isinstance(doc, dict):
            raise DatasetError(f"{self.annotation_json}: a COCO file is a JSON object, not a {type(doc).__name__}")
        for key in ("images", "annotations", "categories"):
            if not isinstance(doc.get(key), list):
                raise DatasetError(f"{self.annotation_json}: COCO instances need an {key!r} list")
        return doc

    def _categories(self, raw: list, anns: list) -> dict[int, dict]:
        cats: dict[int, dict] = {}
        for k, c in enumerate(raw):
            if not isinstance(c, dict) or not isinstance(c.get("id"), int) or isinstance(c.get("id"), bool) \
                    or not isinstance(c.get("name"), str):
                raise DatasetError(f"{self.annotation_json}: categories[{k}] = {c!r} needs an integer 'id' and a "
                                   "string 'name'")
            if c["id"] in cats:
                raise DatasetError(f"{self.annotation_json}: category id {c['id']} is used by both "
                                   f"{cats[c['id']]['name']!r} and {c['name']!r}")
            cats[c["id"]] = {**c, "kind": "object"}
        used = {a.get("category_id") for a in anns if isinstance(a, dict)}
        parents = {c.get("supercategory") for c in cats.values()}
        for cid, c in cats.items():
            if c["name"] in BACKGROUND_NAMES:
                c["kind"] = "background"
            elif c["name"] in parents and cid not in used and any(
                    o.get("supercategory") == c["name"] and o is not c for o in cats.values()):
                c["kind"] = "placeholder"  # Roboflow's category 0: the supercategory of the real ones
        self._keypoint_counts(cats)
        return cats

    def _keypoint_counts(self, cats: dict[int, dict]) -> None:
        """``num_keypoints``: K of the categories that declare keypoint names (0: no keypoints in the targets);
        each category's own count in ``c["_k"]``. Categories declaring different counts are padded to the largest
        with visibility 0 (one ANNOTATION_REPAIRED)."""
        for cid, c in cats.items():
            names = c.get("keypoints")
            c["_k"] = len(names) if isinstance(names, list) else 0
            if names is not None and not isinstance(names, list):
                self.load_violations.append(issue(
                    "ANNOTATION_INVALID", None, "categories", f"{self._name}: category {cid} {c['name']!r} has "
                    f"keypoints {names!r}, not a list of keypoint names; its annotations' keypoints are left out"))
        counts = sorted({c["_k"] for c in cats.values() if c["_k"]})
        self.num_keypoints = counts[-1] if counts else 0
        if len(counts) > 1:
            self.load_violations.append(issue(
                "ANNOTATION_REPAIRED", None, "categories", f"{self._name}: categories declare {counts} keypoints; "
                f"every instance gets {self.num_keypoints}, the extra ones with visibility 0",
                hint="a keypoint model has one keypoint count; give each category the same keypoint list"))

    def _map_classes(self, cats: dict[int, dict], classes: Sequence[str] | None) -> None:
        self._merge_categories(cats)
        mode = self.merge_similar_names
        objects = sorted(cid for cid, c in cats.items() if c["kind"] == "object" and "alias_of" not in c)
        if classes is None:
            names = [cats[cid]["name"].strip() if mode else cats[cid]["name"] for cid in objects]
            self.cat_id_to_label = {cid: i + 1 for i, cid in enumerate(objects)}
        else:
            names = normalised_class_list(classes, mode, what="class list")
            position = {name_key(n, mode): i + 1 for i, n in enumerate(names)}
            self.cat_id_to_label = {cid: position[name_key(cats[cid]["name"], mode)] for cid in objects
                                    if name_key(cats[cid]["name"], mode) in position}
        # one category per label, the lowest id of a merged class (what predictions are written back as)
        self.label_to_cat_id = {v: k for k, v in self.cat_id_to_label.items()}
        for cid, c in cats.items():
            if c.get("alias_of") in self.cat_id_to_label:
                self.cat_id_to_label[cid] = self.cat_id_to_label[c["alias_of"]]
        self.classes = ["background", *names]

    def _merge_categories(self, cats: dict[int, dict]) -> None:
        """Object categories that are one class get ``alias_of`` the lowest id among them: those of one name
        (CATEGORY_NAME_DUPLICATE) and those ``merge_similar_names`` makes one (CLASS_NAMES_MERGED, info). Names
        that differ only in case or surrounding whitespace and stay apart: CLASS_NAME_SIMILAR."""
        mode = self.merge_similar_names
        by_key: dict[str, list[int]] = {}
        for cid in sorted(cid for cid, c in cats.items() if c["kind"] == "object"):
            by_key.setdefault(name_key(cats[cid]["name"], mode), []).append(cid)
        for first, *others in by_key.values():
            name = cats[first]["name"]
            for cid in others:
                cats[cid]["alias_of"] = first
            same = [cid for cid in others if cats[cid]["name"] == name]
            if same:
                self.load_violations.append(issue(
                    "CATEGORY_NAME_DUPLICATE", None, "categories", f"{self._name}: categories "
                    f"{', '.join(map(str, [first, *same]))} are all named {name!r}; read as one class (category "
                    f"{first}) with the annotations of each", hint="give each category its own name, or merge them"))
            similar = [cid for cid in others if cats[cid]["name"] != name]
            if similar:
                named = ", ".join(f"{cid} {cats[cid]['name']!r}" for cid in [first, *similar])
                self.load_violations.append(issue(
                    "CLASS_NAMES_MERGED", None, "categories", f"{self._name}: categories {named} are read as one "
                    f"class {name.strip()!r} (merge_similar_names={mode!r})"))
        primary = {cid: cats[cid]["name"] for cid in (ids[0] for ids in by_key.values())}
        for group in similar_groups(primary.values()):
            named = ", ".join(f"{cid} {n!r}" for cid, n in primary.items() if n in group)
            self.load_violations.append(issue(
                "CLASS_NAME_SIMILAR", None, "categories", f"{self._name}: categories {named} differ only in case or "
                f"surrounding whitespace; they are {len(group)} separate classes",
                hint=f"rename them to one spelling, or {MERGE_HINT}"))

    def _images(self, raw: list) -> list[dict]:
        ok: list[dict] = []
        for k, im in enumerate(raw):
            problem = None
            if not isinstance(im, dict):
                problem = f"is a {type(im).__name__}, not an object"
            elif not isinstance(im.get("id"), int) or isinstance(im.get("id"), bool):
                problem = f"has id {im.get('id')!r}; an integer is needed"
            elif not isinstance(im.get("file_name"), str) or not im["file_name"]:
                problem = f"(id {im['id']}) has no 'file_name'"
            elif not all(isinstance(im.get(d), int) and not isinstance(im.get(d), bool) and im[d] > 0
                         for d in ("height", "width")):
                problem = (f"(id {im['id']}, {im['file_name']}) has height {im.get('height')!r} and width "
                           f"{im.get('width')!r}; positive integers are needed")
            elif im["height"] * im["width"] > max_image_pixels():
                problem = (f"(id {im['id']}, {im['file_name']}) has height {im['height']} and width {im['width']}: "
                           f"more than {max_image_pixels()} pixels, the size Pillow refuses as a decompression "
                           "bomb (masks are allocated at this size)")
            if problem:
                self.load_violations.append(issue("IMAGE_ENTRY_INVALID", None, "images",
                                                  f"{self._name}: images[{k}] {problem}; the image is left out"))
            else:
                ok.append(im)
        by_id: dict[int, list[dict]] = {}
        for im in ok:
            by_id.setdefault(im["id"], []).append(im)
        self._ambiguous: dict[int, list[str]] = {}
        for iid, same in by_id.items():
            if len(same) > 1:
                files = [im["file_name"] for im in same]
                self._ambiguous[iid] = files
                self.load_violations.append(issue(
                    "IMAGE_ENTRY_INVALID", None, "images", f"{self._name}: image id {iid} is used by {len(same)} "
                    f"images ({', '.join(files)}); none of them is used, since their annotations cannot be told "
                    "apart", hint="give every image its own id"))
        return sorted((same[0] for iid, same in by_id.items() if len(same) == 1), key=lambda im: im["id"])

    def _pick_root(self) -> Path:
        candidates = image_root_candidates(self.annotation_json)
        probe = self.images[:ROOT_PROBE]
        scores = [sum((c / _local_name(im["file_name"], c)).is_file() for im in probe) for c in candidates]
        best = max(range(len(candidates)), key=lambda i: (scores[i], -i))
        if probe and scores[best] == 0:
            log.warning("%s: none of the first images was found under %s; give the image folder (--images DIR)",
                        self.annotation_json, ", ".join(map(str, candidates)))
        return candidates[best]

    def _resolve_files(self) -> None:
        """``file_name`` as its exporter meant it under the image root, and one image per file (see the module
        docstring); sets ``images`` and ``_index_of`` (image id -> sample index; a merged record's id -> the
        kept one's). A relative path that leaves the root raises :class:`DatasetError`."""
        self._left_out: dict[int, str] = {}  # image id -> why its record is not used
        kept: list[dict] = []
        self._paths: list[str] = []  # the checked path of each kept image's file
        root = SafeRoot(self.images_dir)
        first_of: dict[str, dict] = {}
        shared: list[tuple[dict, dict]] = []
        for im in self.images:  # by increasing id
            name = im["file_name"]
            local = _local_name(name, self.images_dir)
            if foreign_base_name(name) is not None:
                if local in ("", ".", "..") or not (self.images_dir / local).is_file():
                    self.load_violations.append(issue(
                        "IMAGE_ENTRY_INVALID", None, "file_name", f"{self._name} image {im['id']}: file_name {name!r} "
                        f"is a path on another machine, and no {local!r} is in the image root {self.images_dir}; "
                        "the image is left out",
                        hint="copy the image into the image root, or give the folder holding it (--images DIR)"))
                    self._left_out[im["id"]] = f"its file_name {name!r} is on another machine, not in the image root"
                    continue
                self.load_violations.append(issue(
                    "IMAGE_PATH_RESOLVED", None, "file_name", f"{self._name} image {im['id']}: file_name {name!r} is "
                    f"a path on another machine; read as {local} in the image root {self.images_dir}",
                    hint="export with the images copied (Label Studio: file_name relative to the export) to "
                         "silence this"))
            if local != name:
                im = {**im, "file_name": local}
            path = root.path(local)
            if path is None:
                raise root.refusal(local, what=f"{self.annotation_json} image {im['id']} file_name")
            first = first_of.setdefault(path, im)
            if first is im:
                kept.append(im)
                self._paths.append(path)
            elif (im["height"], im["width"]) == (first["height"], first["width"]):
                shared.append((first, im))
            else:
                self.load_violations.append(issue(
                    "IMAGE_ENTRY_INVALID", None, "images", f"{self._name}: images {first['id']} and {im['id']} both "
                    f"name {local}, with height x width {first['height']}x{first['width']} and "
                    f"{im['height']}x{im['width']}; image {im['id']} is left out",
                    hint="list each file once, with its own size"))
                self._left_out[im["id"]] = f"it names the file of image {first['id']} with another size"
        self.images = kept
        self._index_of = {im["id"]: i for i, im in enumerate(kept)}
        for first, im in shared:
            index = self._index_of[im["id"]] = self._index_of[first["id"]]
            self.load_violations.append(issue(
                "IMAGE_FILE_SHARED", index, "images", f"{self._name}: {first['file_name']} is listed under image ids "
                f"{first['id']} and {im['id']}; read as one image (id {first['id']}) with the annotations of both",
                hint="list each file once (one image id per file)"))

    # --- annotations -----------------------------------------------------------------------------------------

    def _report(self, code: str, ann: dict, index: int | None, field: str, message: str,
                hint: str | None = None) -> None:
        aid = ann.get("id") if isinstance(ann, dict) else None
        on = f" on {self.images[index]['file_name']}" if index is not None else ""
        self.load_violations.append(issue(code, index, field, f"{self._name} annotation {aid}{on}: {message}",
                                          hint=hint))

    def _collect(self, raw: list, cats: dict[int, dict]) -> None:
        seen_ids: dict[Any, int] = {}
        plain = None
        if not self.num_keypoints:
            sizes = np.array([(im["height"], im["width"]) for im in self.images], dtype=np.int64).reshape(-1, 2)
            labelled = {cid for cid in self.cat_id_to_label if cats[cid]["kind"] == "object"}
            try:
                plain = plainly_usable(raw, self._index_of, sizes, labelled)
            except OverflowError:  # an integer beyond float64: the annotation loop reports it
                plain = None
        for k, ann in enumerate(raw):
            if plain is not None and plain[k]:  # kept as read: see plainly_usable
                segm = ann.get("segmentation")
                ann["_segm"] = segm if segm else None
                self.annotations[self._index_of[ann["image_id"]]].append(ann)
                continue
            if not isinstance(ann, dict):
                self.load_violations.append(issue("ANNOTATION_INVALID", None, "annotations", f"{self._name}: "
                                                  f"annotations[{k}] is a {type(ann).__name__}, not an object"))
                continue
            index = self._index_of.get(ann.get("image_id"))
            missing = [key for key in ("id", "image_id", "category_id", "bbox") if key not in ann]
            if missing:
                self._report("ANNOTATION_INVALID", ann, index, missing[0], f"(annotations[{k}]) has no "
                             f"{', '.join(map(repr, missing))}; it is left out")
                continue
            if ann["id"] in seen_ids:
                self._report("ANNOTATION_ID_DUPLICATE", ann, index, "id", f"id {ann['id']!r} is also used by "
                             f"annotations[{seen_ids[ann['id']]}]; evaluation keys annotations by id")
            else:
                seen_ids[ann["id"]] = k
            if index is None:
                why = (f"is shared by {', '.join(self._ambiguous[ann['image_id']])}"
                       if ann["image_id"] in self._ambiguous
                       else f"is an image left out ({self._left_out[ann['image_id']]})"
                       if ann["image_id"] in self._left_out else "is not in 'images' (or its record was unusable)")
                self._report("ANNOTATION_INVALID", ann, None, "image_id", f"image_id {ann['image_id']!r} {why}; "
                             "it is left out")
                continue
            prepared = self._prepare(ann, index, cats)
            if prepared is not None:
                self.annotations[index].append(prepared)

    def _prepare(self, ann: dict, index: int, cats: dict[int, dict]) -> dict | None:
        """The annotation ready for ``__getitem__`` (``_segm`` normalised, defaults filled in) or None."""
        cid = ann["category_id"]
        cat = cats.get(cid) if isinstance(cid, int) and not isinstance(cid, bool) else None
        if cat is None:
            self._report("ANNOTATION_INVALID", ann, index, "category_id", f"category_id {cid!r} is not in "
                         "'categories'; it is left out")
            return None
        if cat["kind"] != "object":
            what = "the background" if cat["kind"] == "background" else "a placeholder supercategory"
            self._report("ANNOTATION_DROPPED", ann, index, "category_id", f"category {cid} {cat['name']!r} is "
                         f"{what}, not an object class; it is not an instance")
            return None
        if cid not in self.cat_id_to_label:
            self._report("LABEL_UNKNOWN", ann, index, "category_id", f"category {cat['name']!r} is not one of the "
                         f"classes {self.classes[1:]}; it is left out",
                         hint=unknown_label_hint(cat["name"], self.classes[1:],
                                                 "add it to the class list (--classes) or fix the category"))
            return None
        bbox = ann["bbox"]
        if not isinstance(bbox, list) or len(bbox) != 4 or not _all_numbers(bbox):
            self._report("ANNOTATION_INVALID", ann, index, "bbox", f"bbox {bbox!r} is not 4 finite numbers "
                         "[x, y, width, height]; it is left out")
            return None
        x, y, w, h = bbox
        if w < 0 or h < 0:
            self._report("ANNOTATION_INVALID", ann, index, "bbox", f"bbox {bbox} has a negative "
                         f"{'width' if w < 0 else 'height'} (Datumaro: NegativeLength); it is left out",
                         hint="COCO boxes are [x, y, width, height]; an [x1, y1, x2, y2] box gives this")
            return None
        if w == 0 or h == 0:
            self._report("ANNOTATION_DROPPED", ann, index, "bbox", f"bbox {bbox} has zero "
                         f"{'width' if w == 0 else 'height'}; no model can learn from it, so it is not an instance")
            return None
        info = self.images[index]
        if far_outside([x, x + w], [y, y + h], info["height"], info["width"]):
            self._report("ANNOTATION_INVALID", ann, index, "bbox", f"bbox {bbox} lies far outside the "
                         f"{info['width']}x{info['height']} image (beyond one image size from its edges); "
                         "it is left out")
            return None
        segm = self._segmentation(ann, index, info["height"], info["width"])
        if segm is False:
            return None
        out = ann  # kept as read, with the normalised segmentation beside it (no copy: a million of them)
        out["_segm"] = segm
        if "iscrowd" not in ann:
            out["iscrowd"] = 0
            self._report("ANNOTATION_REPAIRED", ann, index, "iscrowd", "has no 'iscrowd'; taken as 0")
        elif not _is_number(ann["iscrowd"]):
            self._report("ANNOTATION_INVALID", ann, index, "iscrowd", f"iscrowd {ann['iscrowd']!r} is not a "
                         "number; it is left out")
            return None
        elif ann["iscrowd"] == 1 and _datumaro_mask(ann):
            out["iscrowd"] = 0
            self.datumaro_masks += 1
        if "area" not in ann:
            out["area"] = self._area(segm, info["height"], info["width"], w * h)
            self._report("ANNOTATION_REPAIRED", ann, index, "area", f"has no 'area'; computed as {out['area']:g} "
                         "from its " + ("segmentation (pycocotools)" if segm is not None else "box"))
        elif not _is_number(ann["area"]):
            self._report("ANNOTATION_INVALID", ann, index, "area", f"area {ann['area']!r} is not a finite "
                         "number; it is left out")
            return None
        if self.num_keypoints:
            out["_kpts"] = self._keypoints(ann, index, cid, cat)
        return out

    def _keypoints(self, ann: dict, index: int, cid: int, cat: dict) -> list[float]:
        """The annotation's ``[x1, y1, v1, ...]`` padded to ``num_keypoints``; zeros (visibility 0) for none, and
        for malformed ones after an ANNOTATION_INVALID (the box and mask stay)."""
        zeros = [0.0] * (3 * self.num_keypoints)
        raw = ann.get("keypoints")
        if raw is None or raw == []:
            return zeros
        k = cat["_k"]
        if not isinstance(raw, list) or not _all_numbers(raw):
            problem = "are not a list of finite numbers [x1, y1, v1, ...]"
        elif len(raw) != 3 * k:
            problem = (f"are {len(raw)} numbers; category {cid} {cat['name']!r} declares {k} keypoints, so "
                       f"{3 * k} ([x, y, visibility] each) are needed")
        else:
            return [float(v) for v in raw] + zeros[3 * k:]
        self._report("ANNOTATION_INVALID", ann, index, "keypoints", f"keypoints {problem}; its keypoints are left "
                     "out (visibility 0), its box and mask are kept")
        return zeros

    @staticmethod
    def _area(segm: Any, h: int, w: int, box_area: float) -> float:
        """The pixel count of the decoded mask, computed on the RLE (no [H, W] array is allocated)."""
        if segm is None:
            return float(box_area)
        return float(mask_utils.area(segmentation_rle(segm, h, w)))

    def _segmentation(self, ann: dict, index: int, h: int, w: int) -> Any:
        """The segmentation normalised (polygon list or RLE dict), None for none, False when unusable."""
        segm = ann.get("segmentation")
        if segm is None or segm == [] or segm == {}:
            return None
        if isinstance(segm, dict):
            return self._rle(ann, index, segm, h, w)
        if not isinstance(segm, list):
            self._report("ANNOTATION_INVALID", ann, index, "segmentation", f"segmentation is a "
                         f"{type(segm).__name__}; COCO has a list of polygons or an RLE dict; it is left out")
            return False
        parts = []
        for j, part in enumerate(segm):
            if not isinstance(part, list) or not _all_numbers(part):
                self._report("ANNOTATION_INVALID", ann, index, "segmentation", f"polygon {j} is not a list of "
                             "finite numbers; it is left out")
                return False
            if len(part) == 4 and self._corners_of_box(part, ann["bbox"]):
                x1, x2 = sorted(part[0::2])
                y1, y2 = sorted(part[1::2])
                parts.append([x1, y1, x2, y1, x2, y2, x1, y2])
                self._report("ANNOTATION_REPAIRED", ann, index, "segmentation", f"polygon {j} has 4 numbers "
                             f"{part}; read as the corners of a rectangle, as labelme2coco writes rectangles "
                             "(pycocotools would read the 4 numbers as a box, detectron2 drops the instance)")
            elif len(part) < 6 or len(part) % 2:
                self._report("ANNOTATION_INVALID", ann, index, "segmentation", f"polygon {j} has {len(part)} "
                             "numbers; a polygon needs an even count of at least 6 (3 points); it is left out")
                return False
            elif far_outside(part[0::2], part[1::2], h, w):
                self._report("ANNOTATION_INVALID", ann, index, "segmentation", f"polygon {j} has a vertex far "
                             f"outside the {w}x{h} image (beyond one image size from its edges; x from "
                             f"{min(part[0::2]):g} to {max(part[0::2]):g}, y from {min(part[1::2]):g} to "
                             f"{max(part[1::2]):g}); it is left out")
                return False
            else:
                parts.append(part)
        return parts

    @staticmethod
    def _corners_of_box(part: list, bbox: list) -> bool:
        """Whether 4 numbers are two corners of the annotation's box (labelme2coco's rectangles), within the
        pixel its mask-derived bbox adds; a labelme2coco *line* (drawn 10 px wide) has 4 numbers too, but a
        larger box."""
        x1, x2 = sorted(part[0::2])
        y1, y2 = sorted(part[1::2])
        bx, by, bw, bh = bbox
        return max(abs(x1 - bx), abs(y1 - by), abs(x2 - (bx + bw)), abs(y2 - (by + bh))) <= 1.5

    def _rle(self, ann: dict, index: int, segm: dict, h: int, w: int) -> Any:
        size, counts = segm.get("size"), segm.get("counts")
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) for v in size)):
            self._report("ANNOTATION_INVALID", ann, index, "segmentation", f"RLE size {size!r} is not [height, "
                         "width]; it is left out")
            return False
        if tuple(size) != (h, w):
            self._report("ANNOTATION_INVALID", ann, index, "segmentation", f"RLE size {size} differs from the "
                         f"image's [height, width] = [{h}, {w}]; it is left out")
            return False
        if isinstance(counts, list):
            runs = counts if all(isinstance(v, int) and not isinstance(v, bool) for v in counts) else None
        elif isinstance(counts, str):
            runs = rle_string_counts(counts)
        else:
            runs = None
        if runs is None or any(v < 0 for v in runs) or sum(runs) != h * w:
            got = "unreadable counts" if runs is None else f"runs summing to {sum(runs)}"
            self._report("ANNOTATION_INVALID", ann, index, "segmentation", f"RLE has {got}; an RLE of a "
                         f"{h}x{w} image covers {h * w} pixels with non-negative runs; it is left out")
            return False
        return {"size": size, "counts": counts}

    # --- samples -------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.images)

    def get_height_and_width(self, idx: int) -> tuple[int, int]:
        return int(self.images[idx]["height"]), int(self.images[idx]["width"])

    def _image_path(self, idx: int) -> Path:
        info = self.images[idx]
        path = Path(self._paths[idx])
        if not path.is_file():
            raise DatasetError(f"{self._name} image {info['id']}: {info['file_name']} is not under the image root "
                               f"{self.images_dir} (give the image folder with --images DIR)")
        return path

    def _apply_orientation(self, idx: int, path: Path, info: ImageHeaderInfo | None = None) -> bool:
        """Whether to turn image ``idx`` upright: the record's height and width say which frame its annotations
        are in (:func:`~reference.data.images.choose_frame`); DECLARED_SIZE_MISMATCH when neither.
        ``info``: the file's header when already read."""
        info = info if info is not None else read_header(path)
        apply = choose_frame(self.get_height_and_width(idx), info, field="height",
                             name=f"{self._name} image {self.images[idx]['id']} (height, width) over {path}",
                             upright_when_undecided=self.upright_when_undecided)
        note = stored_frame_note(info, apply, str(path))
        self._notes.start(idx)
        if note and self.upright_when_undecided:  # labelme2coco's images are upright with or without a tag
            self._notes.add(idx, issue("EXIF_STORED_FRAME", idx, "image", note))
        return apply

    def sample_findings(self, idx: int) -> list[Violation]:
        """What reading sample ``idx`` reads differently from its exporter (the validator reports these)."""
        return self._notes.get_or_reload(idx, lambda: self._apply_orientation(idx, self._image_path(idx)))

    def record(self, idx: int, h: int, w: int) -> SampleRecord:
        """Sample ``idx``'s annotations as read from the file, for an image of ``h`` x ``w``: the file's boxes,
        areas and ``iscrowd``, masks from each annotation's segmentation (its box where it has none)."""
        info = self.images[idx]
        anns = self.annotations[idx]
        boxes = torch.tensor([[float(v) for v in a["bbox"]] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        keypoints = (torch.tensor([a["_kpts"] for a in anns], dtype=torch.float32).reshape(-1, self.num_keypoints, 3)
                     if self.num_keypoints else None)
        return SampleRecord(
            name=f"{self._name} image {info['id']}", image_id=int(info["id"]), height=h, width=w,
            labels=[self.cat_id_to_label[a["category_id"]] for a in anns], boxes=boxes,
            area=[a["area"] for a in anns], iscrowd=[int(a["iscrowd"]) for a in anns],
            masks=AnnotationMasks(anns) if self.has_masks else None, keypoints=keypoints)

    def sample_summaries(self, indices: Sequence[int], *, decode: bool) -> tuple[SummaryBatch | None, list[int]]:
        """Samples ``indices`` as the validator's quick check reads them (:class:`SummaryBatch`): their targets
        as arrays, their masks described by pycocotools' RLE area and box (no mask decoded, one call for the
        batch); with ``decode`` each image is decoded as ``self[idx]`` decodes it (its pixels then dropped),
        else only its header is read. Also the indices left out, those on which ``self[idx]`` would raise: the
        validator checks them the full way."""
        if self.transforms is not None:
            raise ValueError("sample_summaries describes untransformed samples; this dataset has transforms")
        kept, rest, sizes, ids, findings, anns = [], [], [], [], [], []
        for idx in indices:
            try:
                size = self._read_frame(idx, decode)
            except Exception:  # noqa: BLE001 - the full check reports it as loading it reports it
                rest.append(idx)
                continue
            kept.append(idx)
            sizes.append(size)
            ids.append(int(self.images[idx]["id"]))
            findings.append(self._notes.get(idx) or [])
            anns.append(self.annotations[idx])
        if not kept:
            return None, rest
        flat = [a for group in anns for a in group]
        counts = np.fromiter(map(len, anns), dtype=np.int64, count=len(anns))
        boxes = np.array([a["bbox"] for a in flat], dtype=np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        mask_area = mask_box = keypoints = None
        if self.has_masks:
            mask_area, mask_box = self._mask_extents(anns, sizes)
        if self.num_keypoints:
            keypoints = np.array([a["_kpts"] for a in flat], dtype=np.float32).reshape(-1, self.num_keypoints, 3)
        return SummaryBatch(
            indices=kept, sizes=np.array(sizes, dtype=np.int64).reshape(-1, 2), image_ids=ids, counts=counts,
            boxes=boxes, labels=np.array([self.cat_id_to_label[a["category_id"]] for a in flat], dtype=np.int64),
            area=np.array([a["area"] for a in flat], dtype=np.float32),
            iscrowd=np.array([int(a["iscrowd"]) for a in flat], dtype=np.int64), findings=findings,
            mask_area=mask_area, mask_box=mask_box, keypoints=keypoints), rest

    def _read_frame(self, idx: int, decode: bool) -> tuple[int, int]:
        """Sample ``idx``'s (H, W) as ``self[idx]`` would read it, from its header (decoding it with ``decode``);
        raises where ``self[idx]`` would."""
        path = Path(self._paths[idx])
        info = decode_header(path) if decode else read_header(path)
        apply = self._apply_orientation(idx, path, info)
        size = self.get_height_and_width(idx)
        if info.size(apply) != size:
            raise DatasetError(f"{path}: the image's size differs from height/width in {self._name} {size}")
        return size

    def _mask_extents(self, groups: list[list[dict]], sizes: list[tuple[int, int]]
                      ) -> tuple[np.ndarray, np.ndarray]:
        """Pixel count and exclusive box of each annotation's mask as :func:`annotation_mask` draws it, for several
        samples' annotations (``sizes``: their images' (H, W)): from the RLEs, measured in one call, and for a
        box-only annotation from its box."""
        rles: list = []
        boxed = []
        for group, (h, w) in zip(groups, sizes):
            single = []  # one-polygon annotations: rasterised in one call, no merge needed
            for a in group:
                segm = a["_segm"]
                if segm is None:
                    boxed.append((len(rles), a["bbox"], h, w))
                elif isinstance(segm, list) and len(segm) == 1:
                    single.append(len(rles))
                    rles.append(segm[0])
                    continue
                rles.append(None if segm is None else segmentation_rle(segm, h, w))
            if single:
                for k, rle in zip(single, mask_utils.frPyObjects([rles[k] for k in single], h, w)):
                    rles[k] = rle
        area = np.zeros(len(rles), dtype=np.int64)
        box = np.zeros((len(rles), 4), dtype=np.float64)
        measured = [k for k, r in enumerate(rles) if r is not None]
        if measured:
            listed = [rles[k] for k in measured]
            # pycocotools' area() fails on a list of more than 255 RLEs under numpy 2 (it sizes a uint8 array
            # with the count), so it is asked in slices
            area[measured] = np.concatenate([mask_utils.area(listed[s:s + 255]) for s in range(0, len(listed), 255)])
            xywh = mask_utils.toBbox(listed).astype(np.float64)
            box[measured] = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        for k, (x, y, bw, bh), h, w in boxed:  # the box's pixels (see annotation_mask)
            ys, ye = max(int(math.floor(y)), 0), min(max(int(math.ceil(y + bh)), 0), h)
            xs, xe = max(int(math.floor(x)), 0), min(max(int(math.ceil(x + bw)), 0), w)
            area[k] = max(ye - ys, 0) * max(xe - xs, 0)
            box[k] = (xs, ys, xe, ye)
        return area, box

    def header_target(self, idx: int) -> tuple[tuple[int, int], dict]:
        """For :meth:`header_sample`: the size from the image file's header and the target."""
        self._apply_orientation(idx, self._image_path(idx))
        h, w = self.get_height_and_width(idx)
        return (h, w), to_target(self.record(idx, h, w))[0]

    def __getitem__(self, idx: int):
        path = self._image_path(idx)
        img = tv_tensors.Image(read_rgb(path, apply_orientation=lambda info: self._apply_orientation(idx, path, info)))
        h, w = img.shape[-2:]
        if (h, w) != self.get_height_and_width(idx):  # a header that lies about the size
            raise DatasetError(f"{path}: the image's size {(h, w)} differs from height/width in "
                               f"{self._name} {self.get_height_and_width(idx)}")
        target, _ = to_target(self.record(idx, h, w))
        if self.transforms is not None:
            img, target = self.transforms(img, target)
        return img, target
