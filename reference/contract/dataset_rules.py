"""The rules over a whole dataset and over a pair of splits: the statistics gathered while samples are
checked, classes unused or imbalanced, boxes far from their class's sizes (Datumaro's ImbalancedLabels and
FarFromLabelMean, with its default thresholds), and images, classes and class ids compared across splits."""

from __future__ import annotations

import math
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image

from .checks import Parsed, plain_tensor
from .findings import Report, Violation
from .rules import FAR_FROM_MEAN_STD, IMBALANCE_RATIO, NEAR_DUPLICATE_BITS


@dataclass
class Stats:
    per_class: Counter = field(default_factory=Counter)
    boxes_per_image: Counter = field(default_factory=Counter)
    size_buckets: Counter = field(default_factory=Counter)
    empty: int = 0
    heights: list[int] = field(default_factory=list)
    widths: list[int] = field(default_factory=list)
    # (sample index, instance, label, box width, box height) of every well-formed box with a label, as columns
    # of machine numbers (40 bytes a box, not a tuple's 150): a million boxes take 40 MB
    box_index: array = field(default_factory=lambda: array("q"))
    box_k: array = field(default_factory=lambda: array("q"))
    box_label: array = field(default_factory=lambda: array("q"))
    box_w: array = field(default_factory=lambda: array("d"))
    box_h: array = field(default_factory=lambda: array("d"))

    @property
    def boxes(self) -> Iterator[tuple[int, int, int, float, float]]:
        """The rows of the box columns, in the order the boxes were added."""
        return zip(self.box_index, self.box_k, self.box_label, self.box_w, self.box_h)

    def add(self, index: int, parsed: Parsed) -> None:
        if parsed.size:
            self.heights.append(parsed.size[0])
            self.widths.append(parsed.size[1])
        if parsed.labels is not None:
            self.per_class.update(parsed.labels)
        if parsed.boxes is not None:
            n = len(parsed.boxes)
            self.boxes_per_image[str(n)] += 1
            self.empty += n == 0
            for k, (x1, y1, x2, y2) in enumerate(parsed.boxes):  # COCO: small < 32^2 <= medium < 96^2 <= large
                a = (x2 - x1) * (y2 - y1)
                self.size_buckets["small" if a < 32**2 else "medium" if a < 96**2 else "large"] += 1
                if parsed.labels is not None and k < len(parsed.labels) and math.isfinite(a) and a > 0:
                    self.box_index.append(index)
                    self.box_k.append(k)
                    self.box_label.append(parsed.labels[k])
                    self.box_w.append(x2 - x1)
                    self.box_h.append(y2 - y1)

    def add_run(self, indices: list[int], sizes: np.ndarray, counts: np.ndarray, boxes: np.ndarray,
                labels: np.ndarray) -> None:
        """:meth:`add` of consecutive samples at once, each with a size and as many labels as boxes (XYXY
        float32 rows, sample after sample): the same numbers, in the same order, as adding them one by one."""
        self.heights.extend(sizes[:, 0].tolist())
        self.widths.extend(sizes[:, 1].tolist())
        self.per_class.update(labels.tolist())
        self.boxes_per_image.update(map(str, counts.tolist()))
        self.empty += int((counts == 0).sum())
        b = boxes.astype(np.float64)
        w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        a = w * h
        small = a < 32**2
        medium = ~small & (a < 96**2)
        for bucket, where in (("small", small), ("medium", medium), ("large", ~small & ~medium)):
            if where.any():
                self.size_buckets[bucket] += int(where.sum())
        keep = np.isfinite(a) & (a > 0)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
        self.box_index.extend(np.repeat(np.asarray(indices, dtype=np.int64), counts)[keep].tolist())
        self.box_k.extend((np.arange(len(b)) - np.repeat(starts, counts))[keep].tolist())
        self.box_label.extend(labels[keep].tolist())
        self.box_w.extend(w[keep].tolist())
        self.box_h.extend(h[keep].tolist())

    def to_dict(self, names: list[str] | None) -> dict[str, Any]:
        return {
            "instances_per_class": {class_name(label, names): n for label, n in sorted(self.per_class.items())},
            "boxes_per_image": dict(sorted(self.boxes_per_image.items(), key=lambda kv: int(kv[0]))),
            "box_size_buckets": {k: self.size_buckets.get(k, 0) for k in ("small", "medium", "large")},
            "empty_images": self.empty,
            "image_height_range": [min(self.heights), max(self.heights)] if self.heights else None,
            "image_width_range": [min(self.widths), max(self.widths)] if self.widths else None,
        }


def class_name(label: int, names: list[str] | None) -> str:
    """The name of ``label`` in ``names`` (background first), else the label as text."""
    if names is not None and 0 <= label < len(names):
        return str(names[label])
    return str(label)


def class_names_of(dataset: Any) -> list[str] | None:
    """The dataset's ``classes`` (background first), looking through ``torch.utils.data.Subset``."""
    while dataset is not None:
        names = getattr(dataset, "classes", None)
        if isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names):
            return list(names)
        dataset = getattr(dataset, "dataset", None)
    return None


def dataset_checks(stats: Stats, names: list[str] | None, complete: bool) -> list[Violation]:
    """The rules over the whole dataset: classes declared but unused (only when every sample was checked),
    class imbalance and boxes far from their class's size distribution (Datumaro's ImbalancedLabels and
    FarFromLabelMean, with its default thresholds)."""
    out: list[Violation] = []
    if names is not None and complete:
        for label, name in enumerate(names[1:], start=1):
            if stats.per_class.get(label, 0) == 0:
                out.append(Violation.of("CLASS_UNUSED", None, "labels", None,
                                        f"class {label} {name!r} is declared but has no instance",
                                        "a head trained without examples of a class never predicts it; drop it "
                                        "from the class list or annotate it"))
    counts = {label: n for label, n in stats.per_class.items() if n > 0}
    if len(counts) >= 2:
        most, least = max(counts, key=counts.get), min(counts, key=counts.get)
        ratio = counts[most] / counts[least]
        if ratio > IMBALANCE_RATIO:
            out.append(Violation.of("CLASS_IMBALANCE", None, "labels", None,
                                    f"class {class_name(most, names)!r} has {counts[most]} instances, "
                                    f"{class_name(least, names)!r} {counts[least]}: ratio {ratio:.1f} > "
                                    f"{IMBALANCE_RATIO:g}", "sample the rare class more often or annotate more of it"))
    labels = np.asarray(stats.box_label, dtype=np.int64)
    w, h = np.asarray(stats.box_w, dtype=np.float64), np.asarray(stats.box_h, dtype=np.float64)
    order = np.argsort(labels, kind="stable")  # each class's boxes in the order they were added
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    for rows in np.split(order, bounds) if len(order) else []:
        label = int(labels[rows[0]])
        for what, values in (("area", w[rows] * h[rows]), ("aspect ratio (w/h)", w[rows] / h[rows])):
            # the builtin sum, value after value, so that the figures are those of the plain loop
            mean = sum(values.tolist()) / len(values)
            std = math.sqrt(sum(((values - mean) ** 2).tolist()) / len(values))
            if std == 0:
                continue
            far = np.abs(values - mean) > FAR_FROM_MEAN_STD * std
            for j, v in zip(rows[far].tolist(), values[far].tolist()):
                out.append(Violation.of("BOX_SIZE_OUTLIER", stats.box_index[j], "boxes", stats.box_k[j],
                                        f"box {what} {v:.3g} is {abs(v - mean) / std:.1f} standard "
                                        f"deviations from the mean {mean:.3g} of class "
                                        f"{class_name(label, names)!r}",
                                        "often a box in the wrong units or on the wrong image"))
    return out


def image_fingerprint(image: Any) -> tuple[str, int]:
    """sha1 of an image's uint8 pixels (exact duplicates) and its 64-bit pHash (near duplicates; ``imagehash``,
    a runtime dependency of the project)."""
    import hashlib

    import imagehash  # a runtime dependency; imported here, since only the split comparison needs it

    if isinstance(image, Image.Image):
        pil = image.convert("RGB")
    else:
        t = plain_tensor(image)
        if t.is_floating_point():
            t = (t.clamp(0, 1) * 255).round()
        t = t.to(torch.uint8)
        pil = Image.fromarray(t.permute(1, 2, 0).contiguous().numpy() if t.ndim == 3 else t.numpy())
        pil = pil.convert("RGB")
    digest = hashlib.sha1(pil.tobytes() + repr(pil.size).encode()).hexdigest()
    return digest, int(str(imagehash.phash(pil)), 16)


def compare_splits(train: Report, val: Report, train_names: list[str] | None,
                   val_names: list[str] | None) -> list[Violation]:
    """Rules across a training and a validation split, as violations indexed by the validation sample:
    images in both (same pixels, or pHashes at most NEAR_DUPLICATE_BITS apart; needs ``fingerprint=True``
    in both validations), classes with instances in one split only, and a class name with another id."""
    out: list[Violation] = []
    if train_names is not None and val_names is not None:
        val_ids = {n: i for i, n in enumerate(val_names)}
        for i, n in enumerate(train_names):
            if n in val_ids and val_ids[n] != i:
                out.append(Violation.of("SPLIT_CLASS_ID_MISMATCH", None, "labels",
                                        None, f"class {n!r} is label {i} in the training split and {val_ids[n]} in "
                                        "the validation split", "give both splits one class list (--classes FILE)"))
    a = train.statistics.get("instances_per_class", {})
    b = val.statistics.get("instances_per_class", {})
    for name in sorted(set(a) | set(b)):
        if not a.get(name) or not b.get(name):
            where, other = ("training", "validation") if a.get(name) else ("validation", "training")
            out.append(Violation.of("SPLIT_CLASS_MISSING", None, "labels", None,
                                    f"class {name!r} has instances in the {where} split but none in the {other} split",
                                    "the class is never trained on or never evaluated"))
    exact = {sha: i for i, sha, _ in train.fingerprints}
    hashes = [(i, ph) for i, _, ph in train.fingerprints if ph is not None]
    for j, sha, ph in val.fingerprints:
        match = exact.get(sha)
        how = "the same pixels as"
        if match is None and ph is not None:
            near = [(bin(ph ^ q).count("1"), i) for i, q in hashes]
            close = min(near, default=None)
            if close is not None and close[0] <= NEAR_DUPLICATE_BITS:
                match, how = close[1], f"a near-duplicate (pHash {close[0]} bits apart) of"
        if match is not None:
            out.append(Violation.of("SPLIT_DUPLICATE_IMAGE", j, "image", None,
                                    f"validation sample {j} is {how} training sample {match}",
                                    "an image in both splits inflates the validation scores; keep it in one"))
    return out

