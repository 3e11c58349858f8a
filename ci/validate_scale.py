"""Validation at scale: samples/s of ``tvref validate`` with 1 and 2 DataLoader workers, decoding the images and
reading only their headers (``--headers-only``), and of Datumaro's ``datum validate -t detection``, on one folder.

The folder holds ``--count`` generated scenes (default 2,000, 640x480 JPEG, two classes, polygon masks; every
image depends only on ``--seed`` and its index) in the COCO layout Datumaro reads and writes
(``annotations/instances_default.json``, ``images/default/``), which ``tvref`` reads as CVAT's export. It is
kept under ``--out`` and reused by a later run with the same parameters. Datumaro runs from its own virtual
environment (``.venv-datumaro``, created with ``pip install 'datumaro[cli]'`` when missing), so that it cannot
change the project's numpy or torch. Every time is the wall-clock time of the whole command, start-up
included, as a user meets it; for ``tvref`` the same command on one sample gives the start-up cost (imports,
reading the annotation file, starting workers), and the rate after start-up and the speed-ups use the rest.
The CPU, its core count and the load average before and after are recorded, since other work on the machine
skews the figures.

    .venv/bin/python ci/validate_scale.py                      # 2,000 images; minutes on 2 cores
    .venv/bin/python ci/validate_scale.py --count 40 --out /tmp/vs   # a quick check of the script itself
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image
from pycocotools import mask as mask_utils

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from datumaro_table import DATUMARO_VENV, cpu_name, datumaro_version, ensure_datumaro  # noqa: E402

from reference.testing.synthetic import make_scene  # noqa: E402

CLASSES = ("person", "bottle")
SUBSET = "default"


def _size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def generate(out: Path, count: int, seed: int, size: tuple[int, int] = (640, 480)) -> Path:
    """``count`` scenes as a COCO folder (images as JPEG, instances as polygons with their pycocotools area and
    box); returns the folder. The same arguments give the same bytes."""
    img_dir = out / "images" / SUBSET
    img_dir.mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(count):
        s = make_scene(seed, i, size, num_classes=len(CLASSES), max_instances=4, occlusion=False)
        h, w = s.image.shape[:2]
        name = f"{i:06d}.jpg"
        Image.fromarray(s.image).save(img_dir / name, quality=90)
        images.append({"id": i + 1, "file_name": name, "height": h, "width": w})
        for lab, poly in zip(s.labels, s.polygons):
            flat = [round(float(v), 2) for p in poly for v in p]
            rle = mask_utils.merge(mask_utils.frPyObjects([flat], h, w))
            box = [round(float(v), 2) for v in mask_utils.toBbox(rle)]
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": lab, "segmentation": [flat],
                         "area": float(mask_utils.area(rle)), "bbox": box, "iscrowd": 0})
        if (i + 1) % 250 == 0:
            print(f"generated {i + 1}/{count}", file=sys.stderr)
    doc = {"info": {}, "licenses": [], "images": images, "annotations": anns,
           "categories": [{"id": k + 1, "name": n, "supercategory": ""} for k, n in enumerate(CLASSES)]}
    (out / "annotations" / f"instances_{SUBSET}.json").write_text(json.dumps(doc))
    return out


def dataset_folder(out: Path, count: int, seed: int, size: tuple[int, int]) -> Path:
    """The generated folder for these parameters under ``out``, made when missing (``done.json`` marks one
    that was written to the end)."""
    folder = out / f"coco_{count}_{size[0]}x{size[1]}_seed{seed}"
    marker = folder / "done.json"
    params = {"count": count, "seed": seed, "size": list(size)}
    if marker.is_file() and json.loads(marker.read_text()) == params:
        return folder
    generate(folder, count, seed, size)
    marker.write_text(json.dumps(params))
    return folder


def timed(cmd: list[str], cwd: Path | None = None) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    return time.perf_counter() - start, proc


def run_tvref(folder: Path, workers: int, headers_only: bool, report: Path, max_samples: int | None = None) -> float:
    """Seconds for ``tvref validate FOLDER --workers N [--headers-only] --json REPORT``; exit 0 required."""
    cmd = [sys.executable, "-m", "reference", "--quiet", "validate", str(folder), "--workers", str(workers),
           "--json", str(report)] + (["--headers-only"] if headers_only else []) + (
           ["--max-samples", str(max_samples)] if max_samples is not None else [])
    seconds, proc = timed(cmd, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-1500:]}{proc.stderr[-1500:]}")
    return seconds


def run_datumaro(python: Path, folder: Path) -> tuple[float, dict]:
    """Seconds for ``datum validate -t detection FOLDER`` and its report (written into a scratch folder)."""
    datum = python.parent / "datum"
    with tempfile.TemporaryDirectory(prefix="datum_validate_") as work:
        # an absolute path: datum runs in the scratch folder, where a relative one would not resolve
        target = str(folder.resolve())
        seconds, proc = timed([str(datum), "--loglevel", "warning", "validate", "-t", "detection", target],
                              cwd=Path(work))
        if proc.returncode != 0:
            raise RuntimeError(f"datum validate exited {proc.returncode}:\n{proc.stderr[-2000:]}")
        report = json.loads((Path(work) / "validation_report.json").read_text())
    return seconds, report


def _load() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def markdown(result: dict) -> str:
    m = result["meta"]
    lines = [f"{m['count']} images {m['size']}, {m['instances']} instances; {m['cpu']} ({m['cores']} cores), "
             f"load average {m['load_before']} before, {m['load_after']} after; torch {m['torch']}, "
             f"Datumaro {m.get('datumaro', '-')}",
             "", "| validator | workers | seconds | samples/s | start-up s | samples/s after start-up |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in result["runs"]:
        steady = f"{r['steady_samples_per_s']:.1f}" if r.get("steady_samples_per_s") else "-"
        startup = f"{r['startup_seconds']:.1f}" if r.get("startup_seconds") is not None else "-"
        lines.append(f"| {r['tool']} | {r['workers'] if r['workers'] is not None else '-'} | {r['seconds']:.1f} | "
                     f"{r['samples_per_s']:.1f} | {startup} | {steady} |")
    for name, v in result["speedups"].items():
        lines.append(f"\n{name}: {v:.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--size", type=_size, default=(640, 480), help="WxH, default 640x480")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/validate_scale", help="the generated folder and the results go here")
    p.add_argument("--workers", default="1,2", help="DataLoader worker counts to measure, comma-separated")
    p.add_argument("--repeats", type=int, default=1, help="runs per configuration; the median is reported")
    p.add_argument("--skip-datumaro", action="store_true")
    p.add_argument("--datumaro-venv", default=str(DATUMARO_VENV))
    a = p.parse_args(argv)
    if a.count < 1 or a.repeats < 1:
        p.error("--count and --repeats must be at least 1")
    workers = [int(w) for w in a.workers.split(",") if w.strip()]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if (out / f"results-{stamp}.json").exists():
        print(f"{out}/results-{stamp}.json exists; wait a second and run again", file=sys.stderr)
        return 2
    python = None if a.skip_datumaro else ensure_datumaro(Path(a.datumaro_venv))
    folder = dataset_folder(out, a.count, a.seed, a.size)
    doc = json.loads((folder / "annotations" / f"instances_{SUBSET}.json").read_text())

    import torch

    meta = {"count": a.count, "size": f"{a.size[0]}x{a.size[1]}", "seed": a.seed, "instances": len(doc["annotations"]),
            "cpu": cpu_name(), "cores": os.cpu_count(), "load_before": _load(), "python": platform.python_version(),
            "torch": torch.__version__, "folder": str(folder),
            "command": " ".join(["python", "ci/validate_scale.py", *(sys.argv[1:] if argv is None else argv)])}
    if python is not None:
        meta["datumaro"] = datumaro_version(python)
    runs, reports = [], {}
    with tempfile.TemporaryDirectory(prefix="validate_scale_") as tmp:
        for headers_only in (False, True):
            for w in workers:
                name = "tvref validate" + (" --headers-only" if headers_only else "")
                times = []
                for k in range(a.repeats):
                    report = Path(tmp) / f"{int(headers_only)}_{w}_{k}.json"
                    times.append(run_tvref(folder, w, headers_only, report))
                    reports[(headers_only, w)] = json.loads(report.read_text())
                sec = statistics.median(times)
                # the fixed cost (imports, reading the annotation file, worker start-up): the same command on
                # one sample
                fixed = statistics.median(run_tvref(folder, w, headers_only, Path(tmp) / "one.json", max_samples=1)
                                          for _ in range(a.repeats))
                steady = (a.count - 1) / (sec - fixed) if a.count > 1 and sec > fixed else None
                runs.append({"tool": name, "workers": w, "seconds": sec, "samples_per_s": a.count / sec,
                             "startup_seconds": fixed, "steady_samples_per_s": steady})
                print(f"{name} --workers {w}: {sec:.1f} s, {a.count / sec:.1f} samples/s (start-up {fixed:.1f} s)",
                      file=sys.stderr)
        if python is not None:
            times = []
            for _ in range(a.repeats):
                sec, dm_report = run_datumaro(python, folder)
                times.append(sec)
            sec = statistics.median(times)
            runs.append({"tool": "datum validate -t detection", "workers": None, "seconds": sec,
                         "samples_per_s": a.count / sec, "summary": dm_report.get("summary")})
            print(f"datum validate -t detection: {sec:.1f} s, {a.count / sec:.1f} samples/s", file=sys.stderr)
    first = next(iter(reports.values()))
    meta["reports_identical"] = all(r == first for r in reports.values())
    meta["errors"] = first["summary"]["errors"]
    meta["load_after"] = _load()
    by = {(r["tool"], r["workers"]): r["seconds"] - (r.get("startup_seconds") or 0.0) for r in runs}
    speedups = {}  # of the time after start-up
    for tool in ("tvref validate", "tvref validate --headers-only"):
        if (tool, 1) in by and (tool, 2) in by:
            speedups[f"{tool}: 2 workers over 1"] = by[(tool, 1)] / by[(tool, 2)]
    for w in workers:
        if ("tvref validate", w) in by and ("tvref validate --headers-only", w) in by:
            speedups[f"--headers-only over decoding, {w} worker(s)"] = (by[("tvref validate", w)]
                                                                       / by[("tvref validate --headers-only", w)])
    result = {"meta": meta, "runs": runs, "speedups": speedups}
    (out / f"results-{stamp}.json").write_text(json.dumps(result, indent=2))
    text = markdown(result)
    (out / f"results-{stamp}.md").write_text(text + "\n")
    print(text)
    if not meta["reports_identical"]:
        print("the reports of the runs differ (see the JSON files); that is a bug", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
