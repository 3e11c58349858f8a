"""Annotation files shaped exactly as the tools write them, for the loader tests and ``fixtures/exports``.

Three small scenes annotated as a labelme 5.x user would (grouped shapes, ``__ignore__``, a rectangle, a circle,
a mask shape, inline ``imageData``, a ``labels.txt``, and point / line / linestrip shapes that mark no area),
then exported the ways the tools export them. What each writer mirrors, from the tools' own code:

- :func:`write_labelme`: labelme's ``LabelFile.save`` and ``MainWindow.saveLabels`` (5.x): keys ``version,
  flags, shapes, imagePath, imageData, imageHeight, imageWidth``; each shape ``label, points, group_id,
  description, shape_type, flags, mask`` (a mask shape: its two corners and a base64 PNG of the 0/1 patch);
  ``json.dump(indent=2, ensure_ascii=False)``.
- :func:`labelme2coco`: ``examples/instance_segmentation/labelme2coco.py``: categories from ``labels.txt``
  (line 0 ``__ignore__`` skipped, ``_background_`` id 0, then 1..), ``JPEGImages/<stem>.jpg`` re-saved and named
  relative to ``annotations.json``, one annotation per ``(label, group_id)`` with the masks united, ``area`` and
  ``bbox`` from the united mask's RLE, each shape's points flattened into a polygon (a circle as a polygon of
  ``max(int(pi / arccos(1 - 1/r)), 12)`` points; a rectangle as its two corners, 4 numbers, since the script's
  ``if shape_type == "circle": ... else:`` overwrites the rectangle branch), labels outside the list skipped.
  Its ``shape_to_mask`` refuses mask shapes; an instance with one is written as a compressed RLE here.
- :func:`write_cvat`: CVAT's "COCO 1.0" (Datumaro's ``coco_instances`` exporter, ``merge_images=False``):
  ``annotations/instances_default.json`` and ``images/default/``; ids from 1; empty-string info and
  supercategories; rectangles with ``segmentation: []`` and area w*h; masks as uncompressed RLE with
  ``iscrowd`` 1; ``attributes`` per annotation; no point, line or ignore annotations.
- :func:`write_roboflow`: Roboflow's COCO export: ``<split>/_annotations.coco.json`` beside the split's images
  (``<stem>_jpg.rf.<hash>.jpg``), category 0 the project's name with supercategory "none" and the classes
  (sorted by name) from 1 with it as supercategory, ids from 0.
- :func:`write_label_studio`: label-studio-converter's ``Converter.convert_to_coco``: ``result.json`` (indent 2)
  and ``images/``; image and annotation ids from 0; categories ``{id, name}`` from 0 in sorted label order;
  ``file_name`` the relative ``images/<hash>-<name>`` of the copied upload (``utils.download``) or, where the
  copy failed, the task's own ``/data/upload/<project>/<hash>-<name>`` (logged, the item kept); rectangles with
  ``segmentation: []``, integer ``bbox``, ``ignore: 0``; ``info.contributor`` "Label Studio".
- :func:`write_cvat_keypoints`: CVAT's "COCO Keypoints 1.0" (Datumaro's ``_KeypointsConverter``):
  ``annotations/person_keypoints_default.json``; every category with ``keypoints`` and ``skeleton`` (``[]`` for
  labels without points); each annotation the instance's fields plus ``keypoints`` ``[x, y, v, ...]`` (v 0
  absent, 1 hidden, 2 visible) and ``num_keypoints``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

LABELS_TXT = "__ignore__\n_background_\nperson\nbottle\n"
SIZE = (96, 72)  # width, height
# A mask shape's patch: 20 x 12 px with a notch, top-left corner at (60, 40); labelme's points are the corners.
MASK_ORIGIN = (60, 40)


def _mask_patch() -> np.ndarray:
    patch = np.ones((12, 20), dtype=np.uint8)
    patch[:4, 14:] = 0
    return patch


def _shape(label, points, shape_type="polygon", group_id=None, mask=None) -> dict:
    return {"label": label, "points": [[float(x), float(y)] for x, y in points], "group_id": group_id,
            "description": "", "shape_type": shape_type, "flags": {}, "mask": mask}


def _png_b64(arr: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("utf-8")


NO_AREA = ("point", "line", "linestrip")


def scenes(no_area: bool = True) -> list[tuple[str, list[dict], bool]]:
    """(stem, shapes, inline imageData) of the three scenes; ``no_area=False`` leaves out the point, line and
    linestrip shapes (labelme2coco exports those as instances of their drawn, 10 px wide, outline)."""
    ph, pw = _mask_patch().shape
    x0, y0 = MASK_ORIGIN
    every = [
        ("scene_0", [
            _shape("person", [(10, 8), (24, 8), (26, 40), (8, 40)], group_id=1),
            _shape("person", [(12, 46), (22, 46), (21, 66), (13, 66)], group_id=1),  # the leg below an occluder
            _shape("bottle", [(40, 20), (48, 20), (50, 50), (38, 50)]),
            _shape("__ignore__", [(70, 50), (90, 50), (90, 68), (70, 68)]),
            _shape("bottle", [(80, 6), (64, 30)], "rectangle"),
            _shape("person", [(5, 5)], "point"),
        ], False),
        ("scene_1", [
            _shape("bottle", [(30, 30), (30, 40)], "circle"),
            _shape("person", [(x0, y0), (x0 + pw - 1, y0 + ph - 1)], "mask", mask=_png_b64(_mask_patch())),
            _shape("person", [(5, 60), (20, 62), (30, 58)], "linestrip"),
        ], True),
        ("scene_2", [
            _shape("bottle", [(70, 10), (73, 10), (74, 60), (70, 60)]),  # thin: 4-5 px wide
            _shape("person", [(10, 10), (30, 10), (30, 30), (10, 30)], group_id=2),
            _shape("person", [(12, 34), (28, 34), (28, 60), (12, 60)], group_id=2),
            _shape("bottle", [(40, 40), (50, 40), (50, 62), (40, 62)], group_id=2),  # same group, other label
            _shape("person", [(2, 2), (90, 4)], "line"),
        ], False),
    ]
    if no_area:
        return every
    return [(stem, [s for s in shapes if s["shape_type"] not in NO_AREA], inline) for stem, shapes, inline in every]


def _picture(stem: str) -> Image.Image:
    """A small deterministic picture: a gradient with a few filled shapes (nothing depends on its content)."""
    seed = int(hashlib.sha1(stem.encode()).hexdigest()[:8], 16)
    rng = np.random.default_rng(seed)
    w, h = SIZE
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 2 + seed % 50) % 256, (yy * 3) % 256, (xx + yy + 40) % 256], axis=-1).astype(np.uint8)
    im = Image.fromarray(base)
    draw = ImageDraw.Draw(im)
    for _ in range(3):
        x, y = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
        draw.ellipse((x, y, x + 18, y + 14), fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    return im


def _jpeg_bytes(im: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def write_labelme(out: Path, no_area: bool = True) -> Path:
    """The annotated folder as labelme saves it, plus ``labels.txt`` (labelme's ``--labels`` file)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "labels.txt").write_text(LABELS_TXT)
    w, h = SIZE
    for stem, shapes, inline in scenes(no_area):
        data = _jpeg_bytes(_picture(stem))
        if not inline:
            (out / f"{stem}.jpg").write_bytes(data)
        doc = {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": f"{stem}.jpg",
               "imageData": base64.b64encode(data).decode("utf-8") if inline else None,
               "imageHeight": h, "imageWidth": w}
        with open(out / f"{stem}.json", "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False, indent=2)
    return out


def _shape_to_mask(shape: dict, h: int, w: int) -> np.ndarray:
    """labelme.utils.shape_to_mask, plus the mask-shape placement of labelme's shapes_to_label."""
    if shape["shape_type"] == "mask":
        patch = np.asarray(Image.open(io.BytesIO(base64.b64decode(shape["mask"])))).astype(bool)
        out = np.zeros((h, w), dtype=bool)
        x1, y1 = (int(round(v)) for v in shape["points"][0])
        out[y1:y1 + patch.shape[0], x1:x1 + patch.shape[1]] = patch[:h - y1, :w - x1]
        return out
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    xy = [tuple(p) for p in shape["points"]]
    kind = shape["shape_type"]
    if kind == "circle":
        (cx, cy), (px, py) = xy
        d = math.sqrt((cx - px) ** 2 + (cy - py) ** 2)
        draw.ellipse(((cx - d, cy - d), (cx + d, cy + d)), outline=1, fill=1)
    elif kind == "rectangle":
        (a, b), (c, d) = xy
        draw.rectangle(((min(a, c), min(b, d)), (max(a, c), max(b, d))), outline=1, fill=1)
    elif kind == "line":
        draw.line(xy=xy, fill=1, width=10)
    elif kind == "linestrip":
        draw.line(xy=xy, fill=1, width=10)
    elif kind == "point":
        (cx, cy), r = xy[0], 5
        draw.ellipse(((cx - r, cy - r), (cx + r, cy + r)), outline=1, fill=1)
    else:
        draw.polygon(xy=xy, outline=1, fill=1)
    return np.array(canvas, dtype=bool)


def labelme2coco(src: Path, out: Path) -> Path:
    """What ``labelme2coco.py src out --labels src/labels.txt --noviz`` writes (see the module docstring)."""
    (out / "JPEGImages").mkdir(parents=True)
    data = {"info": {"description": None, "url": None, "version": None, "year": 2025, "contributor": None,
                     "date_created": "2025-01-01 00:00:00.000000"},
            "licenses": [{"url": None, "id": 0, "name": None}], "type": "instances",
            "images": [], "categories": [], "annotations": []}
    class_name_to_id = {}
    for i, line in enumerate((src / "labels.txt").read_text().splitlines()):
        class_id, name = i - 1, line.strip()
        if class_id == -1:
            assert name == "__ignore__"
            continue
        class_name_to_id[name] = class_id
        data["categories"].append({"supercategory": None, "id": class_id, "name": name})
    for image_id, path in enumerate(sorted(src.glob("*.json"))):
        doc = json.loads(path.read_text(encoding="utf-8"))
        raw = base64.b64decode(doc["imageData"]) if doc["imageData"] else (src / doc["imagePath"]).read_bytes()
        img = np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))
        Image.fromarray(img).save(out / "JPEGImages" / f"{path.stem}.jpg")  # imgviz.io.imsave: Pillow defaults
        h, w = img.shape[:2]
        data["images"].append({"license": 0, "url": None, "file_name": f"JPEGImages/{path.stem}.jpg",
                               "height": h, "width": w, "date_captured": None, "id": image_id})
        masks: dict = {}
        segmentations: dict = {}
        has_mask_shape: set = set()
        for k, shape in enumerate(doc["shapes"]):
            group_id = shape.get("group_id")
            instance = (shape["label"], group_id if group_id is not None else f"uuid-{k}")
            mask = _shape_to_mask(shape, h, w)
            masks[instance] = masks[instance] | mask if instance in masks else mask
            if shape["shape_type"] == "mask":
                has_mask_shape.add(instance)
            if shape["shape_type"] == "circle":
                (x1, y1), (x2, y2) = shape["points"]
                r = np.linalg.norm([x2 - x1, y2 - y1])
                n = max(int(np.pi / np.arccos(1 - 1 / r)), 12)
                t = np.arange(n)
                pts = np.stack((x1 + r * np.sin(2 * np.pi / n * t), y1 + r * np.cos(2 * np.pi / n * t)), axis=1)
                points_coco = pts.flatten().tolist()
            else:  # rectangles land here too: their two corners, 4 numbers
                points_coco = np.asarray(shape["points"]).flatten().tolist()
            segmentations.setdefault(instance, []).append(points_coco)
        for instance, mask in masks.items():
            if instance[0] not in class_name_to_id:
                continue
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            segm = segmentations[instance]
            if instance in has_mask_shape:
                segm = {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}
            data["annotations"].append({
                "id": len(data["annotations"]), "image_id": image_id, "category_id": class_name_to_id[instance[0]],
                "segmentation": segm, "area": float(mask_utils.area(rle)),
                "bbox": mask_utils.toBbox(rle).flatten().tolist(), "iscrowd": 0})
    with open(out / "annotations.json", "w") as f:
        json.dump(data, f)
    return out


def _coco_instances(src: Path):
    """(stem, image bytes, [(label, group key, shape_type, shape)]) per scene, for the exporters below."""
    for stem, _shapes, inline in scenes():
        if not (src / f"{stem}.json").is_file():
            continue
        doc = json.loads((src / f"{stem}.json").read_text(encoding="utf-8"))
        raw = base64.b64decode(doc["imageData"]) if inline else (src / f"{stem}.jpg").read_bytes()
        yield stem, raw, doc["shapes"]


def _instances(shapes: list[dict], h: int, w: int):
    """labelme's instances (label, shapes) in first-appearance order, without ignore and no-area shapes."""
    groups: dict = {}
    for k, s in enumerate(shapes):
        if s["label"] in ("__ignore__", "_background_") or s["shape_type"] in ("point", "line", "linestrip"):
            continue
        key = (s["label"], s["group_id"] if s["group_id"] is not None else f"shape-{k}")
        groups.setdefault(key, []).append(s)
    return [(label, parts) for (label, _), parts in groups.items()]


def _polygon(s: dict) -> list[float]:
    if s["shape_type"] == "circle":  # Datumaro's Ellipse.as_polygon: 32 points on the rim
        (cx, cy), (px, py) = s["points"]
        r = math.hypot(cx - px, cy - py)
        return [v for t in range(32) for v in (cx + r * math.cos(2 * math.pi * t / 32),
                                              cy + r * math.sin(2 * math.pi * t / 32))]
    return [float(v) for p in s["points"] for v in p]


def write_cvat(src: Path, out: Path) -> Path:
    """CVAT's "COCO 1.0" export of the scenes (see the module docstring)."""
    (out / "images" / "default").mkdir(parents=True)
    (out / "annotations").mkdir()
    w, h = SIZE
    cats = ["person", "bottle"]
    data = {"licenses": [{"name": "", "id": 0, "url": ""}],
            "info": {"contributor": "", "date_created": "", "description": "", "url": "", "version": "", "year": ""},
            "categories": [{"id": i + 1, "name": n, "supercategory": ""} for i, n in enumerate(cats)],
            "images": [], "annotations": []}
    for image_id, (stem, raw, shapes) in enumerate(_coco_instances(src), start=1):
        (out / "images" / "default" / f"{stem}.jpg").write_bytes(raw)
        data["images"].append({"id": image_id, "width": w, "height": h, "file_name": f"{stem}.jpg", "license": 0,
                               "flickr_url": "", "coco_url": "", "date_captured": 0})
        for label, parts in _instances(shapes, h, w):
            ann = {"id": len(data["annotations"]) + 1, "image_id": image_id, "category_id": cats.index(label) + 1}
            if parts[0]["shape_type"] == "rectangle":
                (a, b), (c, d) = parts[0]["points"]
                box = [min(a, c), min(b, d), abs(c - a), abs(d - b)]
                ann.update(segmentation=[], area=float(box[2] * box[3]), bbox=box, iscrowd=0,
                           attributes={"occluded": False, "rotation": 0.0})
            elif any(p["shape_type"] == "mask" for p in parts):
                m = np.zeros((h, w), dtype=bool)
                for p in parts:
                    m |= _shape_to_mask(p, h, w)
                rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
                counts = _uncompressed_counts(m)
                ann.update(segmentation={"counts": counts, "size": [h, w]}, area=float(mask_utils.area(rle)),
                           bbox=[round(float(v), 2) for v in mask_utils.toBbox(rle)], iscrowd=1,
                           attributes={"occluded": False})
            else:
                polys = [_polygon(p) for p in parts]
                rle = mask_utils.merge(mask_utils.frPyObjects(polys, h, w))
                xs = [v for q in polys for v in q[0::2]]
                ys = [v for q in polys for v in q[1::2]]
                ann.update(segmentation=polys, area=float(mask_utils.area(rle)),
                           bbox=[round(min(xs), 2), round(min(ys), 2), round(max(xs) - min(xs), 2),
                                 round(max(ys) - min(ys), 2)], iscrowd=0, attributes={"occluded": False})
            data["annotations"].append(ann)
    (out / "annotations" / "instances_default.json").write_text(json.dumps(data))
    return out


def _uncompressed_counts(m: np.ndarray) -> list[int]:
    """Column-major run lengths starting with background, as COCO's uncompressed RLE."""
    flat = m.T.flatten().astype(np.uint8)
    counts, current, run = [], 0, 0
    for v in flat:
        if v == current:
            run += 1
        else:
            counts.append(run)
            current, run = v, 1
    counts.append(run)
    return [int(c) for c in counts]


def write_roboflow(src: Path, out: Path, splits: dict[str, list[str]] | None = None) -> Path:
    """Roboflow's COCO (segmentation) export of the scenes: scene_0 and scene_1 in train/, scene_2 in valid/."""
    splits = splits or {"train": ["scene_0", "scene_1"], "valid": ["scene_2"]}
    w, h = SIZE
    names = sorted(["person", "bottle"])
    by_stem = {stem: (raw, shapes) for stem, raw, shapes in _coco_instances(src)}
    for split, stems in splits.items():
        folder = out / split
        folder.mkdir(parents=True)
        data = {"info": {"year": "2025", "version": "1", "description": "Exported from roboflow.com",
                         "contributor": "", "url": "https://public.roboflow.com/object-detection/undefined",
                         "date_created": "2025-01-01T00:00:00+00:00"},
                "licenses": [{"id": 1, "url": "https://creativecommons.org/licenses/by/4.0/", "name": "CC BY 4.0"}],
                "categories": [{"id": 0, "name": "scenes", "supercategory": "none"}]
                + [{"id": i + 1, "name": n, "supercategory": "scenes"} for i, n in enumerate(names)],
                "images": [], "annotations": []}
        for image_id, stem in enumerate(stems):
            raw, shapes = by_stem[stem]
            name = f"{stem}_jpg.rf.{hashlib.md5(raw).hexdigest()}.jpg"
            (folder / name).write_bytes(raw)
            data["images"].append({"id": image_id, "license": 1, "file_name": name, "height": h, "width": w,
                                   "date_captured": "2025-01-01T00:00:00+00:00"})
            for label, parts in _instances(shapes, h, w):
                m = np.zeros((h, w), dtype=bool)
                for p in parts:
                    m |= _shape_to_mask(p, h, w)
                polys = ([_polygon(p) for p in parts] if not any(p["shape_type"] in ("mask", "rectangle")
                                                                  for p in parts) else None)
                if polys is None:  # Roboflow stores every shape as a polygon: the mask's box outline here
                    ys, xs = np.nonzero(m)
                    x0, y0, x1, y1 = float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)
                    polys = [[x0, y0, x1, y0, x1, y1, x0, y1]]
                xs = [v for q in polys for v in q[0::2]]
                ys = [v for q in polys for v in q[1::2]]
                bbox = [round(min(xs), 3), round(min(ys), 3), round(max(xs) - min(xs), 3), round(max(ys) - min(ys), 3)]
                data["annotations"].append({"id": len(data["annotations"]), "image_id": image_id,
                                            "category_id": names.index(label) + 1, "bbox": bbox,
                                            "area": round(bbox[2] * bbox[3], 3), "segmentation": polys, "iscrowd": 0})
        (folder / "_annotations.coco.json").write_text(json.dumps(data))
    return out


def write_label_studio(src: Path, out: Path, copied: bool = True) -> Path:
    """Label Studio's COCO export of the scenes' boxes (see the module docstring); ``copied=False``: the images
    were not copied, ``file_name`` is the upload path on the Label Studio server."""
    (out / "images").mkdir(parents=True)
    w, h = SIZE
    names = sorted(["person", "bottle"])
    data = {"images": [], "categories": [{"id": i, "name": n} for i, n in enumerate(names)], "annotations": [],
            "info": {"year": 2025, "version": "1.0", "description": "", "contributor": "Label Studio", "url": "",
                     "date_created": "2025-01-01 00:00:00.000000"}}
    for stem, raw, shapes in _coco_instances(src):
        upload = f"{hashlib.md5(raw).hexdigest()[:8]}-{stem}.jpg"
        if copied:
            (out / "images" / upload).write_bytes(raw)
        image_id = len(data["images"])
        data["images"].append({"width": w, "height": h, "id": image_id,
                               "file_name": f"images/{upload}" if copied else f"/data/upload/3/{upload}"})
        for label, parts in _instances(shapes, h, w):
            m = np.zeros((h, w), dtype=bool)
            for p in parts:
                m |= _shape_to_mask(p, h, w)
            ys, xs = np.nonzero(m)
            x, y, bw, bh = int(xs.min()), int(ys.min()), int(xs.max() - xs.min()), int(ys.max() - ys.min())
            data["annotations"].append({"id": len(data["annotations"]), "image_id": image_id,
                                        "category_id": names.index(label), "segmentation": [], "bbox": [x, y, bw, bh],
                                        "ignore": 0, "iscrowd": 0, "area": bw * bh})
    with open(out / "result.json", "w", encoding="utf8") as f:
        json.dump(data, f, indent=2)
    return out


KEYPOINT_NAMES = ["head", "left_hand", "right_hand"]


def write_cvat_keypoints(out: Path) -> Path:
    """CVAT's "COCO Keypoints 1.0" export of one 96 x 72 picture with two skeletons of ``person`` (3 points, one
    hidden, one absent) and a ``bottle`` label without points (see the module docstring)."""
    (out / "images" / "default").mkdir(parents=True)
    (out / "annotations").mkdir()
    w, h = SIZE
    (out / "images" / "default" / "pose.jpg").write_bytes(_jpeg_bytes(_picture("pose")))
    points = [[20.0, 10.0, 2, 12.0, 30.0, 2, 28.0, 30.0, 1], [60.0, 12.0, 2, 0.0, 0.0, 0, 70.0, 34.0, 2]]
    data = {"licenses": [{"name": "", "id": 0, "url": ""}],
            "info": {"contributor": "", "date_created": "", "description": "", "url": "", "version": "", "year": ""},
            "categories": [{"id": 1, "name": "person", "supercategory": "", "keypoints": KEYPOINT_NAMES,
                            "skeleton": [[1, 2], [1, 3]]},
                           {"id": 2, "name": "bottle", "supercategory": "", "keypoints": [], "skeleton": []}],
            "images": [{"id": 1, "width": w, "height": h, "file_name": "pose.jpg", "license": 0, "flickr_url": "",
                        "coco_url": "", "date_captured": 0}],
            "annotations": []}
    for k, kp in enumerate(points):
        xs, ys = kp[0::3], kp[1::3]
        seen = [(x, y) for x, y, v in zip(xs, ys, kp[2::3]) if v]
        x0, y0 = min(x for x, _ in seen), min(y for _, y in seen)
        x1, y1 = max(x for x, _ in seen), max(y for _, y in seen)
        data["annotations"].append({"id": k + 1, "image_id": 1, "category_id": 1, "segmentation": [],
                                    "area": (x1 - x0) * (y1 - y0), "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0,
                                    "attributes": {"occluded": False}, "keypoints": kp,
                                    "num_keypoints": sum(1 for v in kp[2::3] if v)})
    (out / "annotations" / "person_keypoints_default.json").write_text(json.dumps(data))
    return out


def write_all(out: Path) -> Path:
    """Every export of the three scenes under ``out``: labelme/, labelme2coco/, cvat/, roboflow/."""
    if out.exists():
        shutil.rmtree(out)
    src = write_labelme(out / "labelme")
    labelme2coco(src, out / "labelme2coco")
    write_cvat(src, out / "cvat")
    write_roboflow(src, out / "roboflow")
    return out


if __name__ == "__main__":  # regenerate the committed copy: python -m spec_tests.tool_exports
    print(write_all(Path(__file__).resolve().parent.parent / "fixtures" / "exports"))
