"""Generated detection data in the tutorials' on-disk layouts (PennFudan, LabelMe, COCO).

The real PennFudan archive cannot be downloaded on the project's machines, so the suite proves everything on
scenes drawn here: pedestrian-like silhouettes (head, shirt, trousers, two legs) of varied size, colour and
pose on varied backgrounds with unannotated distractor shapes, so that a model has to learn shape and not
just colour. Instances touch and, in the PennFudan layout, occlude each other.

Every image depends only on ``(seed, index)``; the same call gives the same bytes on the same machine.

    python -m reference.testing.synthetic --layout pennfudan --out DIR --count 64 --seed 0
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from ..data.common import rasterise_polygon

log = logging.getLogger(__name__)

LAYOUTS = ("pennfudan", "labelme", "coco")
DEFECTS = {
    "pennfudan": ("missing-mask", "rgba-image", "mask-size", "truncated-png", "extra-image"),
    "labelme": ("short-polygon", "path-escape", "unknown-class"),
    "coco": ("path-escape",),
}
Polygon = list[tuple[float, float]]


@dataclass(frozen=True)
class Scene:
    """One generated image: pixels (H, W, 3 uint8), instance labels (1-based), outlines and visible masks."""

    image: np.ndarray
    labels: list[int]
    polygons: list[Polygon]
    masks: np.ndarray  # [N, H, W] bool, the visible part of each instance


def _rasterise(polygon: Polygon, size: tuple[int, int]) -> np.ndarray:
    """The polygon's pixels, [H, W] bool, for an image of ``size`` (W, H): drawn as the LabelMe loader draws."""
    w, h = size
    return rasterise_polygon(polygon, h, w).astype(bool)


def _pedestrian(rng: np.random.Generator, cx: float, top: float, height: float) -> Polygon:
    """A closed silhouette: head, shoulders, arms, two legs with a gap. Taller than wide (about 1:2.6)."""
    w = height * rng.uniform(0.32, 0.42)
    head_r = height * 0.1
    head_cy = top + head_r
    neck_y = top + 2 * head_r
    shoulder_y = neck_y + 0.04 * height
    hip_y = top + 0.55 * height
    bottom = top + height
    arm = w * rng.uniform(0.45, 0.55)
    leg_gap = w * rng.uniform(0.04, 0.12)
    stride = w * rng.uniform(-0.12, 0.12)
    pts: Polygon = [(cx - 0.12 * w, neck_y)]
    for a in np.linspace(math.radians(225), math.radians(-45), 9):  # head: from lower left over the top
        pts.append((cx + head_r * math.cos(a) * 0.85, head_cy - head_r * math.sin(a)))
    pts += [
        (cx + 0.12 * w, neck_y), (cx + 0.4 * w, shoulder_y), (cx + arm, shoulder_y + 0.06 * height),
        (cx + arm, hip_y), (cx + 0.36 * w, hip_y), (cx + 0.36 * w + stride, bottom),
        (cx + leg_gap + stride * 0.3, bottom), (cx, hip_y + 0.08 * height),
        (cx - leg_gap - stride * 0.3, bottom), (cx - 0.36 * w - stride, bottom), (cx - 0.36 * w, hip_y),
        (cx - arm, hip_y), (cx - arm, shoulder_y + 0.06 * height), (cx - 0.4 * w, shoulder_y),
    ]
    return [(float(np.clip(x, 0, 1e6)), float(y)) for x, y in pts]


def _bottle(rng: np.random.Generator, cx: float, top: float, height: float) -> Polygon:
    """A second class for multi-class layouts: a narrow-necked bottle."""
    w = height * rng.uniform(0.3, 0.4)
    neck = top + 0.3 * height
    return [(cx - 0.12 * w, top), (cx + 0.12 * w, top), (cx + 0.12 * w, neck), (cx + 0.5 * w, neck + 0.1 * height),
            (cx + 0.5 * w, top + height), (cx - 0.5 * w, top + height), (cx - 0.5 * w, neck + 0.1 * height),
            (cx - 0.12 * w, neck)]


_SHAPES = (_pedestrian, _bottle)


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    c0, c1 = rng.integers(40, 220, size=(2, 3))
    t = np.linspace(0.0, 1.0, h)[:, None, None] if rng.random() < 0.5 else np.linspace(0.0, 1.0, w)[None, :, None]
    img = np.broadcast_to(c0 + (c1 - c0) * t, (h, w, 3)).astype(np.float64).copy()
    for _ in range(int(rng.integers(2, 6))):  # unannotated distractors: discs and slabs
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        rx, ry = rng.uniform(4, w / 5), rng.uniform(4, h / 5)
        yy, xx = np.ogrid[:h, :w]
        if rng.random() < 0.5:
            region = ((xx - x0) / rx) ** 2 + ((yy - y0) / ry) ** 2 <= 1
        else:
            region = (np.abs(xx - x0) <= rx) & (np.abs(yy - y0) <= ry)
        img[region] = rng.integers(0, 256, size=3)
    return img


def _paint(img: np.ndarray, mask: np.ndarray, polygon: Polygon, rng: np.random.Generator) -> None:
    """Head in a skin tone, shirt above the hips, trousers below: colour alone does not find a person."""
    ys = [y for _, y in polygon]
    top, bottom = min(ys), max(ys)
    rows = np.arange(img.shape[0])[:, None]
    head = mask & (rows < top + 0.2 * (bottom - top))
    shirt = mask & ~head & (rows < top + 0.55 * (bottom - top))
    img[mask] = rng.integers(0, 256, size=3)
    img[shirt] = rng.integers(0, 256, size=3)
    img[head] = rng.integers(120, 256) * np.array([1.0, 0.8, 0.65])


def _visible(full: list[np.ndarray], h: int, w: int) -> np.ndarray:
    """Each instance's visible part, [N, H, W] bool: what no later (nearer) instance covers."""
    visible = []
    for i, m in enumerate(full):
        v = m.copy()
        for later in full[i + 1:]:
            v &= ~later
        visible.append(v)
    return np.stack(visible) if visible else np.zeros((0, h, w), dtype=bool)


def make_scene(seed: int, index: int, size: tuple[int, int] = (160, 128), num_classes: int = 1,
               max_instances: int = 4, allow_empty: bool = False, occlusion: bool = True) -> Scene:
    """Draw scene ``index`` of a dataset seeded ``seed``. ``size`` is (width, height)."""
    rng = np.random.default_rng([seed, index])
    w, h = size
    img = _background(rng, w, h)
    low = 0 if allow_empty else 1
    wanted = int(rng.integers(low, max_instances + 1))
    labels: list[int] = []
    polygons: list[Polygon] = []
    full: list[np.ndarray] = []
    for _ in range(wanted * 4):  # a few tries per instance; rejected placements are redrawn
        if len(labels) == wanted:
            break
        label = int(rng.integers(1, num_classes + 1))
        height = rng.uniform(0.4, 0.85) * h
        if polygons and rng.random() < 0.35:  # touch the previous instance's right edge
            prev_x = max(x for x, _ in polygons[-1])
            cx = prev_x + height * 0.2
        else:
            cx = rng.uniform(0.1 * w, 0.9 * w)
        top = rng.uniform(0, h - height)
        poly = _SHAPES[(label - 1) % len(_SHAPES)](rng, cx, top, height)
        if max(x for x, _ in poly) >= w - 1 or min(x for x, _ in poly) <= 0:
            continue
        m = _rasterise(poly, size)
        covered = np.zeros_like(m)
        for other in full:
            covered |= other
        overlap = (m & covered).sum() / max(int(m.sum()), 1)
        if overlap > (0.3 if occlusion else 0.0):
            continue
        # an earlier instance must keep most of itself visible
        if any((o & ~m).sum() < 0.6 * o.sum() for o in full):
            continue
        labels.append(label)
        polygons.append(poly)
        full.append(m)
    for poly, m in zip(polygons, full):
        _paint(img, m, poly, rng)
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return Scene(image=image, labels=labels, polygons=polygons, masks=_visible(full, h, w))


# The pretraining stand-in's data (:mod:`reference.models.pretrain`): a distribution of its own, so that
# fine-tuning on the pedestrian scenes is a transfer, as COCO -> PennFudan is. Six polygon classes, none of
# them a person: regular solids, stars, crosses and arrows at any rotation and aspect ratio.
SHAPE_CLASSES = ("triangle", "square", "hexagon", "star", "cross", "arrow")


def _shape(rng: np.random.Generator, kind: str, cx: float, cy: float, size: float) -> Polygon:
    """Polygon ``kind`` centred on ``(cx, cy)``, ``size`` across, rotated and stretched at random."""
    if kind in ("triangle", "square", "hexagon"):
        n = {"triangle": 3, "square": 4, "hexagon": 6}[kind]
        pts = [(math.cos(2 * math.pi * k / n), math.sin(2 * math.pi * k / n)) for k in range(n)]
    elif kind == "star":
        inner = rng.uniform(0.35, 0.55)
        pts = [((1 if k % 2 == 0 else inner) * math.cos(math.pi * k / 5),
                (1 if k % 2 == 0 else inner) * math.sin(math.pi * k / 5)) for k in range(10)]
    elif kind == "cross":
        a = rng.uniform(0.25, 0.4)
        pts = [(a, 1), (a, a), (1, a), (1, -a), (a, -a), (a, -1), (-a, -1), (-a, -a), (-1, -a), (-1, a),
               (-a, a), (-a, 1)]
    else:  # arrow
        a, head = rng.uniform(0.2, 0.35), rng.uniform(0.0, 0.4)
        pts = [(-1, a), (head, a), (head, 0.8), (1, 0), (head, -0.8), (head, -a), (-1, -a)]
    angle, stretch = rng.uniform(0, 2 * math.pi), rng.uniform(0.6, 1.0)
    ca, sa = math.cos(angle), math.sin(angle)
    r = size / 2
    return [(cx + r * (x * ca - y * stretch * sa), cy + r * (x * sa + y * stretch * ca)) for x, y in pts]


def make_shapes_scene(seed: int, index: int, size: tuple[int, int] = (160, 128), max_instances: int = 5) -> Scene:
    """Scene ``index`` of the stand-in's pretraining data: 1 to ``max_instances`` shapes of
    :data:`SHAPE_CLASSES` (labels 1-6), each one or two colours, on the same kind of background as the
    pedestrian scenes. Shapes may overlap a little; each keeps most of itself visible."""
    rng = np.random.default_rng([seed, index, 7])
    w, h = size
    img = _background(rng, w, h)
    wanted = int(rng.integers(1, max_instances + 1))
    labels: list[int] = []
    polygons: list[Polygon] = []
    full: list[np.ndarray] = []
    for _ in range(wanted * 4):
        if len(labels) == wanted:
            break
        label = int(rng.integers(1, len(SHAPE_CLASSES) + 1))
        across = rng.uniform(0.15, 0.7) * h
        cx, cy = rng.uniform(across / 2, w - across / 2), rng.uniform(across / 2, h - across / 2)
        poly = _shape(rng, SHAPE_CLASSES[label - 1], cx, cy, across)
        if min(x for x, _ in poly) <= 0 or max(x for x, _ in poly) >= w - 1 \
                or min(y for _, y in poly) <= 0 or max(y for _, y in poly) >= h - 1:
            continue
        m = _rasterise(poly, size)
        covered = np.zeros_like(m)
        for other in full:
            covered |= other
        if (m & covered).sum() > 0.2 * max(int(m.sum()), 1) or any((o & ~m).sum() < 0.6 * o.sum() for o in full):
            continue
        labels.append(label)
        polygons.append(poly)
        full.append(m)
    for m in full:
        colour = rng.integers(0, 256, size=3)
        img[m] = colour
        if rng.random() < 0.5:  # a second colour on one half: colour alone does not find the outline
            rows = np.arange(h)[:, None] < rng.uniform(0, h)
            img[m & rows] = rng.integers(0, 256, size=3)
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return Scene(image=image, labels=labels, polygons=polygons, masks=_visible(full, h, w))


def _write_pennfudan(out: Path, scenes: Sequence[Scene]) -> None:
    (out / "PNGImages").mkdir(parents=True, exist_ok=True)
    (out / "PedMasks").mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(scenes):
        ids = np.zeros(s.image.shape[:2], dtype=np.uint8)
        for k, m in enumerate(s.masks, start=1):
            ids[m] = k
        Image.fromarray(s.image).save(out / "PNGImages" / f"FudanPed{i + 1:05d}.png")
        Image.fromarray(ids, mode="L").save(out / "PedMasks" / f"FudanPed{i + 1:05d}_mask.png")


def _labelme_doc(s: Scene, image_name: str, classes: Sequence[str]) -> dict:
    h, w = s.image.shape[:2]
    shapes = [{"label": classes[lab - 1], "points": [[round(x, 2), round(y, 2)] for x, y in poly],
               "group_id": None, "shape_type": "polygon", "flags": {}}
              for lab, poly in zip(s.labels, s.polygons)]
    return {"version": "5.2.1", "flags": {}, "shapes": shapes, "imagePath": image_name, "imageData": None,
            "imageHeight": h, "imageWidth": w}


def _write_labelme(out: Path, scenes: Sequence[Scene], classes: Sequence[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(scenes):
        name = f"card_{i:04d}"
        Image.fromarray(s.image).save(out / f"{name}.jpg", quality=92)
        (out / f"{name}.json").write_text(json.dumps(_labelme_doc(s, f"{name}.jpg", classes), indent=1))


def coco_category_ids(num_classes: int) -> list[int]:
    """Deliberately not contiguous (1, 3, 5, ...), so that label mapping is exercised."""
    return [2 * k + 1 for k in range(num_classes)]


def _write_coco(out: Path, scenes: Sequence[Scene], classes: Sequence[str]) -> None:
    (out / "images").mkdir(parents=True, exist_ok=True)
    cat_ids = coco_category_ids(len(classes))
    images, anns = [], []
    for i, s in enumerate(scenes):
        h, w = s.image.shape[:2]
        name = f"{i:06d}.png"
        Image.fromarray(s.image).save(out / "images" / name)
        images.append({"id": 100 + i, "file_name": name, "height": h, "width": w})
        for lab, poly in zip(s.labels, s.polygons):
            xs, ys = [p[0] for p in poly], [p[1] for p in poly]
            flat = [round(v, 2) for p in poly for v in p]
            area = float(mask_utils.area(mask_utils.merge(mask_utils.frPyObjects([flat], h, w))))
            anns.append({"id": len(anns) + 1, "image_id": 100 + i, "category_id": cat_ids[lab - 1],
                         "segmentation": [flat], "area": area, "iscrowd": 0,
                         "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]})
    doc = {"images": images, "annotations": anns,
           "categories": [{"id": cid, "name": n, "supercategory": "object"} for cid, n in zip(cat_ids, classes)]}
    (out / "annotations.json").write_text(json.dumps(doc))


def _inject(layout: str, out: Path, defect: str) -> None:
    """Break a generated folder in one chosen way, for tests of the datasets' error reporting."""
    if defect not in DEFECTS[layout]:
        raise ValueError(f"defect {defect!r} is not known for layout {layout!r}; choose from {DEFECTS[layout]}")
    if layout == "pennfudan":
        img, mask = out / "PNGImages" / "FudanPed00001.png", out / "PedMasks" / "FudanPed00001_mask.png"
        if defect == "missing-mask":
            mask.unlink()
        elif defect == "rgba-image":
            Image.open(img).convert("RGBA").save(img)
        elif defect == "mask-size":
            Image.open(mask).resize((7, 5)).save(mask)
        elif defect == "truncated-png":
            img.write_bytes(img.read_bytes()[:200])
        elif defect == "extra-image":
            Image.open(img).save(out / "PNGImages" / "FudanPed99999.png")
    elif layout == "labelme":
        path = sorted(out.glob("*.json"))[0]
        doc = json.loads(path.read_text())
        if defect == "short-polygon":
            doc["shapes"][0]["points"] = doc["shapes"][0]["points"][:2]
        elif defect == "path-escape":
            doc["imagePath"] = "../../outside.jpg"
        elif defect == "unknown-class":
            doc["shapes"][0]["label"] = "unicorn"
        path.write_text(json.dumps(doc))
    elif layout == "coco":
        path = out / "annotations.json"
        doc = json.loads(path.read_text())
        doc["images"][0]["file_name"] = "../../outside.png"
        path.write_text(json.dumps(doc))


def generate(layout: str, out: str | Path, count: int, seed: int, size: tuple[int, int] = (160, 128),
             classes: Sequence[str] = ("person",), defect: str | None = None) -> Path:
    """Write ``count`` scenes in ``layout`` to ``out`` and return the folder."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose from {LAYOUTS}")
    out = Path(out)
    occlusion = layout == "pennfudan"  # polygons of the other layouts describe whole, unoccluded instances
    scenes = [make_scene(seed, i, size, num_classes=len(classes), allow_empty=layout == "coco",
                         occlusion=occlusion) for i in range(count)]
    if layout == "pennfudan":
        _write_pennfudan(out, scenes)
    elif layout == "labelme":
        _write_labelme(out, scenes, classes)
    else:
        _write_coco(out, scenes, classes)
    if defect:
        _inject(layout, out, defect)
    log.info("wrote %d %s scenes to %s", count, layout, out)
    return out


def _size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reference.testing.synthetic", description=__doc__.split("\n\n")[0])
    p.add_argument("--layout", choices=LAYOUTS, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--count", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=_size, default=(160, 128), help="WxH, default 160x128")
    p.add_argument("--classes", nargs="+", default=["person"])
    p.add_argument("--defect", default=None, help="inject one defect: " +
                   "; ".join(f"{k}: {', '.join(v)}" for k, v in DEFECTS.items()))
    a = p.parse_args(argv)
    out = generate(a.layout, a.out, a.count, a.seed, a.size, a.classes, a.defect)
    print(f"wrote {a.count} {a.layout} images to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
