"""Side by side with Datumaro: damaged COCO folders, what ``tvref validate`` and ``datum validate`` report.

Every case is a small clean COCO folder (generated scenes, Datumaro's own layout:
``annotations/instances_default.json`` and ``images/default/``, which ``tvref`` reads as CVAT's export) with one
defect. Our validator runs in-process (the report ``tvref validate --json`` writes); Datumaro's ``datum validate
-t detection`` and ``-t segmentation`` run through Datumaro's own command-line entry point inside a separate
virtual environment (``.venv-datumaro``, made here with ``pip install 'datumaro[cli]'`` when missing, so that
Datumaro's pins never touch the project's numpy or torch). Datumaro writes ``validation_report.json``
(``validation_reports``: ``anomaly_type``, ``severity``, ``item_id``, ...); an exception out of its command is
a crash, shown with the exception's type.

Both columns show what a case adds to the clean folder's report, so that the statistical warnings a small
dataset always gets (Datumaro's FewSamplesInLabel, ImbalancedDistInLabel, ...) do not hide the defect.

    .venv/bin/python ci/datumaro_table.py --out runs/datumaro_table   # table.md, table.json
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reference.testing.synthetic import make_scene  # noqa: E402

DATUMARO_VENV = ROOT / ".venv-datumaro"
DATUMARO_REQUIREMENT = "datumaro[cli]"
SUBSET = "default"
CLASSES = ("person", "bottle")

Doc = dict


# --- the clean folder -------------------------------------------------------------------------------------------

def clean_doc(count: int = 6, seed: int = 0, size: tuple[int, int] = (96, 72)) -> tuple[Doc, list[np.ndarray]]:
    """A COCO instances document of ``count`` generated scenes (polygons, two classes) and their pixels."""
    images, anns, pixels = [], [], []
    for i in range(count):
        s = make_scene(seed, i, size, num_classes=len(CLASSES), max_instances=3, occlusion=False)
        h, w = s.image.shape[:2]
        pixels.append(s.image)
        images.append({"id": i + 1, "file_name": f"img_{i:03d}.jpg", "height": h, "width": w})
        for lab, poly in zip(s.labels, s.polygons):
            flat = [round(float(v), 2) for p in poly for v in p]
            rle = mask_utils.merge(mask_utils.frPyObjects([flat], h, w))
            x, y, bw, bh = (round(float(v), 2) for v in mask_utils.toBbox(rle))
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": lab, "segmentation": [flat],
                         "area": float(mask_utils.area(rle)), "bbox": [x, y, bw, bh], "iscrowd": 0})
    doc = {"info": {}, "licenses": [], "images": images, "annotations": anns,
           "categories": [{"id": k + 1, "name": n, "supercategory": ""} for k, n in enumerate(CLASSES)]}
    return doc, pixels


def write_folder(out: Path, doc: Doc, pixels: list[np.ndarray]) -> Path:
    """The Datumaro/CVAT COCO layout: ``annotations/instances_default.json`` and ``images/default/``."""
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    (out / "images" / SUBSET).mkdir(parents=True, exist_ok=True)
    for im, px in zip(doc["images"], pixels):
        if isinstance(im, dict) and isinstance(im.get("file_name"), str):
            Image.fromarray(px).save(out / "images" / SUBSET / im["file_name"], quality=92)
    # allow_nan: a NaN case writes the bare NaN token, as Python's json (and so many exporters) does
    (out / "annotations" / f"instances_{SUBSET}.json").write_text(json.dumps(doc, allow_nan=True))
    return out


# --- the defects ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    name: str
    defect: str  # the table's first column
    change: Callable[[Doc], None]  # edits the annotation document
    files: Callable[[Doc, Path], None] | None = None  # then edits the written folder, when the defect is a file


def _ann(doc: Doc, k: int = 0) -> dict:
    return doc["annotations"][k]


def _set_bbox(k: int, fn: Callable[[list], list]) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        _ann(doc, k)["bbox"] = fn(list(_ann(doc, k)["bbox"]))
    return change


def _set(k: int, key: str, value) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        _ann(doc, k)[key] = value
    return change


def _drop(k: int, key: str) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        del _ann(doc, k)[key]
    return change


def _image_of(doc: Doc, ann: dict) -> dict:
    return next(im for im in doc["images"] if im["id"] == ann["image_id"])


def _duplicate_image_id(doc: Doc) -> None:
    doc["images"][1]["id"] = doc["images"][0]["id"]


def _rle_wrong_size(doc: Doc) -> None:
    a = _ann(doc)
    im = _image_of(doc, a)
    m = np.zeros((im["height"] + 8, im["width"]), dtype=np.uint8, order="F")
    m[10:30, 10:30] = 1
    rle = mask_utils.encode(m)
    a["segmentation"] = {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}
    a["iscrowd"] = 1


def _rle_bad_counts(doc: Doc) -> None:
    a = _ann(doc)
    im = _image_of(doc, a)
    a["segmentation"] = {"size": [im["height"], im["width"]], "counts": [5, 7, 3]}  # runs sum to 15, not H*W
    a["iscrowd"] = 1


def _rle_garbage(doc: Doc) -> None:
    a = _ann(doc)
    im = _image_of(doc, a)
    a["segmentation"] = {"size": [im["height"], im["width"]], "counts": "\x7f\x7f not an RLE"}
    a["iscrowd"] = 1


def _out_of_bounds(doc: Doc) -> None:
    a = _ann(doc)
    im = _image_of(doc, a)
    x, y, w, h = a["bbox"]
    a["bbox"] = [im["width"] - w / 2, y, w, h]


def _missing_image_size(doc: Doc) -> None:
    del doc["images"][0]["height"]


def _size_differs(doc: Doc) -> None:
    doc["images"][0]["width"] += 16


def _unchanged(doc: Doc) -> None:
    pass


def _missing_file(doc: Doc, folder: Path) -> None:
    (folder / "images" / SUBSET / doc["images"][0]["file_name"]).unlink()


def _orphan(doc: Doc) -> None:
    _ann(doc)["image_id"] = 999


def _unknown_category(doc: Doc) -> None:
    _ann(doc)["category_id"] = 7


def _duplicate_ann_id(doc: Doc) -> None:
    _ann(doc, 1)["id"] = _ann(doc, 0)["id"]


def _short_polygon(doc: Doc) -> None:
    _ann(doc)["segmentation"] = [[10.0, 10.0, 20.0, 10.0]]


def _area_x4(doc: Doc) -> None:
    _ann(doc)["area"] *= 4


def _no_images(doc: Doc) -> None:
    doc["images"], doc["annotations"] = [], []


CASES: tuple[Case, ...] = (
    Case("duplicate-image-id", "duplicate image id (two files, one id)", _duplicate_image_id),
    Case("bbox-length-3", "bbox of the wrong length (3 numbers)", _set_bbox(0, lambda b: b[:3])),
    Case("negative-width", "negative bbox width", _set_bbox(0, lambda b: [b[0] + b[2], b[1], -b[2], b[3]])),
    Case("negative-height", "negative bbox height", _set_bbox(0, lambda b: [b[0], b[1] + b[3], b[2], -b[3]])),
    Case("zero-size-box", "zero-size box (width 0)", _set_bbox(0, lambda b: [b[0], b[1], 0.0, b[3]])),
    Case("nan-bbox", "NaN in a bbox", _set_bbox(0, lambda b: [math.nan, b[1], b[2], b[3]])),
    Case("nan-area", "NaN area", _set(0, "area", math.nan)),
    Case("box-out-of-bounds", "box out of the image (half beyond the right edge)", _out_of_bounds),
    Case("iscrowd-2", "iscrowd 2", _set(0, "iscrowd", 2)),
    Case("missing-bbox", "annotation without bbox", _drop(0, "bbox")),
    Case("missing-category", "annotation without category_id", _drop(0, "category_id")),
    Case("missing-image-height", "image record without height", _missing_image_size),
    Case("rle-size-mismatch", "RLE size differs from the image", _rle_wrong_size),
    Case("rle-bad-runs", "bad RLE (runs do not cover the image)", _rle_bad_counts),
    Case("rle-garbage", "bad RLE (undecodable counts string)", _rle_garbage),
    Case("short-polygon", "polygon of 2 points", _short_polygon),
    Case("area-x4", "area 4x the mask's (a forgotten rescale)", _area_x4),
    Case("unknown-category", "category_id not in categories", _unknown_category),
    Case("orphan-annotation", "annotation of an image id not in images", _orphan),
    Case("duplicate-annotation-id", "two annotations with one id", _duplicate_ann_id),
    Case("image-size-differs", "image record's width differs from the file", _size_differs),
    Case("missing-image-file", "image file missing", _unchanged, _missing_file),
    Case("no-images", "no images at all (empty dataset)", _no_images),
)


def build_cases(out: Path, cases: tuple[Case, ...] = CASES, count: int = 6, seed: int = 0) -> dict[str, Path]:
    """The clean folder (``clean``) and one damaged folder per case under ``out``."""
    doc, pixels = clean_doc(count, seed)
    folders = {"clean": write_folder(out / "clean", doc, pixels)}
    for case in cases:
        damaged = copy.deepcopy(doc)
        case.change(damaged)
        folder = write_folder(out / case.name, damaged, pixels)
        if case.files is not None:
            case.files(damaged, folder)
        folders[case.name] = folder
    return folders


# --- ours -------------------------------------------------------------------------------------------------------

def run_ours(folder: Path) -> dict:
    """Our report for a folder as ``tvref validate FOLDER --json`` writes it, or the one-line refusal (exit 2)."""
    from reference.contract import validate_dataset
    from reference.data import DatasetError, open_dataset

    try:
        dataset = open_dataset(folder)
    except DatasetError as exc:
        return {"refused": str(exc).splitlines()[0]}
    return validate_dataset(dataset).to_dict()


def our_codes(report: dict) -> dict[str, int]:
    if "refused" in report:
        return {"exit 2 (one line)": 1}
    out: dict[str, int] = {}
    for v in report["violations"]:
        out[v["code"]] = out.get(v["code"], 0) + 1
    return out


# --- Datumaro ---------------------------------------------------------------------------------------------------

def ensure_datumaro(venv: Path = DATUMARO_VENV) -> Path:
    """The Python of a virtual environment holding Datumaro's CLI, created and filled when missing."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    probe = subprocess.run([str(python), "-c", "import datumaro, tabulate, tensorboardX"], capture_output=True)
    if probe.returncode != 0:
        print(f"installing {DATUMARO_REQUIREMENT} into {venv} (a few minutes)", file=sys.stderr)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", DATUMARO_REQUIREMENT], check=True)
    return python


def datumaro_version(python: Path) -> str:
    return subprocess.run([str(python), "-c", "import datumaro; print(datumaro.__version__)"], check=True,
                          capture_output=True, text=True).stdout.strip()


# Runs inside the Datumaro environment: Datumaro's own CLI entry point (what ``datum`` runs) once per folder and
# task, in one process so that Datumaro is imported once. Prints one JSON line per run.
_DRIVER = r'''
import json, os, sys, traceback, logging
from datumaro.cli.__main__ import main
jobs = json.loads(sys.stdin.read())
for folder, task, workdir in jobs:
    os.makedirs(workdir, exist_ok=True)
    os.chdir(workdir)
    for f in os.listdir(workdir):
        os.remove(os.path.join(workdir, f))
    result = {"folder": folder, "task": task}
    try:
        code = main(["--loglevel", "critical", "validate", "-t", task, folder])
        result["exit"] = code
        report = os.path.join(workdir, "validation_report.json")
        if os.path.exists(report):
            with open(report) as f:
                doc = json.load(f)
            result["anomalies"] = [r["anomaly_type"] for r in doc.get("validation_reports", [])]
    except BaseException as exc:
        result["crash"] = type(exc).__name__
        result["message"] = str(exc).splitlines()[0][:200] if str(exc) else ""
    logging.getLogger().handlers.clear()
    print(json.dumps(result), flush=True)
'''


def run_datumaro(python: Path, folders: list[Path], tasks: tuple[str, ...], workdir: Path) -> dict:
    """``{(folder, task): result}``; result has ``anomalies`` (a list of anomaly types) or ``crash``."""
    jobs = [[str(f), t, str(workdir / f.name / t)] for f in folders for t in tasks]
    proc = subprocess.run([str(python), "-c", _DRIVER], input=json.dumps(jobs), capture_output=True, text=True)
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            results[(r["folder"], r["task"])] = r
    if len(results) != len(jobs):
        raise RuntimeError(f"the Datumaro driver answered {len(results)} of {len(jobs)} runs:\n{proc.stderr[-2000:]}")
    return results


def datumaro_cell(result: dict, baseline: dict) -> str:
    """What a run adds to the clean folder's: new anomaly types (with counts), ``crash (Type)`` or nothing."""
    if "crash" in result:
        return f"crash ({result['crash']})"
    if result.get("exit", 0) != 0 or "anomalies" not in result:
        return f"error (exit {result.get('exit')})"
    return _added(_count(result["anomalies"]), _count(baseline.get("anomalies", [])))


def _count(items: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for k in items:
        out[k] = out.get(k, 0) + 1
    return out


def _added(now: dict[str, int], before: dict[str, int]) -> str:
    extra = {k: n - before.get(k, 0) for k, n in sorted(now.items()) if n > before.get(k, 0)}
    return ", ".join(k if n == 1 else f"{k} x{n}" for k, n in extra.items()) or "nothing"


# --- the table --------------------------------------------------------------------------------------------------

def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def markdown(rows: list[dict], tasks: tuple[str, ...]) -> str:
    head = "| defect | ours (codes) | " + " | ".join(f"Datumaro `-t {t}`" for t in tasks) + " |"
    lines = [head, "|" + " --- |" * (2 + len(tasks))]
    for r in rows:
        lines.append(f"| {r['defect']} | {r['ours']} | " + " | ".join(r["datumaro"][t] for t in tasks) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/datumaro_table", help="folder for table.md, table.json (and the cases)")
    p.add_argument("--tasks", default="detection,segmentation", help="Datumaro task types, comma-separated")
    p.add_argument("--datumaro-venv", default=str(DATUMARO_VENV))
    a = p.parse_args(argv)
    out = Path(a.out)
    if out.exists() and any(out.iterdir()):
        print(f"{out} exists and is not empty; choose another --out (earlier tables are never overwritten)",
              file=sys.stderr)
        return 2
    tasks = tuple(t.strip() for t in a.tasks.split(",") if t.strip())
    python = ensure_datumaro(Path(a.datumaro_venv))
    with tempfile.TemporaryDirectory(prefix="dm_cases_") as tmp:
        folders = build_cases(Path(tmp) / "cases")
        ours = {name: our_codes(run_ours(f)) for name, f in folders.items()}
        theirs = run_datumaro(python, list(folders.values()), tasks, Path(tmp) / "work")
        rows = []
        for case in CASES:
            f = str(folders[case.name])
            rows.append({
                "case": case.name, "defect": case.defect,
                "ours": _added(ours[case.name], ours["clean"]),
                "datumaro": {t: datumaro_cell(theirs[(f, t)], theirs[(str(folders["clean"]), t)]) for t in tasks},
            })
        clean = {"ours": ours["clean"], "datumaro": {t: _count(theirs[(str(folders["clean"]), t)].get(
            "anomalies", [])) for t in tasks}}
    import torch

    from reference import __version__ as ours_version

    meta = {"cpu": cpu_name(), "python": platform.python_version(), "torch": torch.__version__,
            "tvdetect_reference": ours_version, "datumaro": datumaro_version(python),
            "command": " ".join(["python", "ci/datumaro_table.py", *(sys.argv[1:] if argv is None else argv)])}
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.json").write_text(json.dumps({"meta": meta, "clean": clean, "rows": rows}, indent=2))
    text = markdown(rows, tasks)
    (out / "table.md").write_text(text + "\n")
    print(text)
    print(f"\n{meta}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
