"""Validation at scale: samples/s of ``tvref validate`` with 1 and 2 DataLoader workers, decoding the images and
reading only their headers (``--headers-only``), beside a plain decode loop over the same files with the same
workers, pycocotools' load time of the same annotation file and Datumaro's ``datum validate -t detection``, on
one folder, in one run.

The folder holds ``--count`` generated scenes (default 2,000, 640x480 JPEG, two classes, polygon masks; every
image depends only on ``--seed`` and its index) in the COCO layout Datumaro reads and writes
(``annotations/instances_default.json``, ``images/default/``), which ``tvref`` reads as CVAT's export. It is
kept under ``--out`` and reused by a later run with the same parameters. Datumaro runs from its own virtual
environment (``.venv-datumaro``, created with ``pip install 'datumaro[cli]'`` when missing), so that it cannot
change the project's numpy or torch. Every time is the wall-clock time of the whole command, start-up
included, as a user meets it (pycocotools' row times the ``COCO(file)`` call alone); ``tvref`` and the plain
loop also time their sample loop (from making the DataLoader, workers started, to the last sample: tvref logs
it), whose rate and ratios are the like-for-like comparison; the rest of the command is start-up (imports,
reading the annotation file). Peak RSS is the largest
resident set of the command's processes (``ru_maxrss`` from ``wait4``). The CPU, its core count and the load
average before and after are recorded, since other work on the machine skews the figures.

Large mode (``--train2017``, ``--annotations N``, or ``--images N --instances M``) generates a folder of that
many images (solid-colour JPEGs of varied COCO-like sizes, written once per size and copied) and instances
(polygons of 4 to 8 vertices, their area and box from pycocotools), and measures ``tvref validate
--headers-only`` (``--with-decoding`` adds the decoding path), with its peak memory, beside pycocotools'
``COCO(file)``; Datumaro and the plain loop are skipped there.

    .venv/bin/python ci/validate_scale.py                      # 2,000 images; minutes on 2 cores
    .venv/bin/python ci/validate_scale.py --count 40 --out /tmp/vs --skip-datumaro   # a check of the script
    .venv/bin/python ci/validate_scale.py --train2017          # 118,287 images, 860,001 instances, 2 workers
    .venv/bin/python ci/validate_scale.py --annotations 1000000 --with-decoding   # 100,000 160x120 images
    .venv/bin/python ci/validate_scale.py --train2017 --generate-only   # only make (or find) the folder
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from datumaro_table import DATUMARO_VENV, cpu_name, datumaro_version, ensure_datumaro  # noqa: E402

from reference.testing.synthetic import make_scene  # noqa: E402

CLASSES = ("person", "bottle")
SUBSET = "default"
BASELINES = Path(__file__).resolve().parent / "scale_baselines.py"
TRAIN2017 = (118_287, 860_001)
LARGE_CLASSES = 80
PALETTE = ((124, 116, 104), (90, 120, 150), (200, 180, 150), (60, 60, 60), (150, 90, 70), (110, 150, 90))
PLAIN = "plain decode loop (Pillow, chunks of 256)"
COCO_ROW = "pycocotools COCO(file), the call alone"
DECODING, HEADERS = "tvref validate", "tvref validate --headers-only"


def _size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def annotation_file(folder: Path) -> Path:
    return folder / "annotations" / f"instances_{SUBSET}.json"


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
    annotation_file(out).write_text(json.dumps(doc))
    return out


def _reused(folder: Path, params: dict, make: Callable[[Path], object]) -> Path:
    """``folder``, made by ``make`` unless its ``done.json`` (written once it is complete) holds ``params``."""
    marker = folder / "done.json"
    if marker.is_file() and json.loads(marker.read_text()) == params:
        return folder
    make(folder)
    marker.write_text(json.dumps(params))
    return folder


def dataset_folder(out: Path, count: int, seed: int, size: tuple[int, int]) -> Path:
    """The generated folder for these parameters under ``out``, made when missing."""
    return _reused(out / f"coco_{count}_{size[0]}x{size[1]}_seed{seed}",
                   {"count": count, "seed": seed, "size": list(size)}, lambda f: generate(f, count, seed, size))


def large_sizes(rng: np.random.Generator, count: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """COCO-like image sizes (widths, heights): the long side ``max(size)``, the short one drawn from 3/4 of
    ``min(size)`` up to the long side, three in four landscape."""
    long, short = max(size), min(size)
    other = rng.integers(round(0.75 * short), long + 1, count)
    landscape = rng.random(count) < 0.75
    return np.where(landscape, long, other), np.where(landscape, other, long)


def _polygons(rng: np.random.Generator, w: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One star-shaped polygon inside each (w, h), its radius log-uniform from 4 px to 0.3 of the short side
    (about COCO's mix of small, medium and large boxes): (k, 8, 2) vertices rounded to 0.01 and the vertex
    counts (4 to 8; a row's vertices after its count are unused)."""
    k = len(w)
    top = np.maximum(0.3 * np.minimum(w, h), 4.0)
    r = np.exp(rng.uniform(math.log(4.0), np.log(top), k))
    cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
    nv = rng.integers(4, 9, k)
    angle = (np.arange(8)[None] + rng.uniform(0.0, 0.8, (k, 8))) * (2 * math.pi / nv[:, None])
    radius = r[:, None] * rng.uniform(0.6, 1.0, (k, 8))
    xy = np.stack([cx[:, None] + radius * np.cos(angle), cy[:, None] + radius * np.sin(angle)], axis=2)
    return np.round(xy, 2), nv


def generate_large(out: Path, images: int, instances: int, seed: int, size: tuple[int, int] = (640, 480),
                   chunk: int = 2000) -> Path:
    """A COCO folder of ``images`` images and exactly ``instances`` instances (each on an image drawn
    uniformly, so some images have none; 80 categories), the images solid-colour JPEGs of their declared
    sizes, the instances polygons with the area and box pycocotools gives them; written in chunks of images
    (bounded memory; the chunks draw in turn from one generator, so the bytes depend on ``chunk`` too) and the
    same bytes for the same arguments. Returns the folder."""
    rng = np.random.default_rng(seed)
    widths, heights = large_sizes(rng, images, size)
    counts = np.bincount(rng.integers(0, images, instances), minlength=images)
    img_dir = out / "images" / SUBSET
    img_dir.mkdir(parents=True, exist_ok=True)
    annotation_file(out).parent.mkdir(parents=True, exist_ok=True)
    encoded: dict[tuple[int, int], bytes] = {}
    entries = [{"id": i + 1, "file_name": f"{i:012d}.jpg", "height": int(heights[i]), "width": int(widths[i])}
               for i in range(images)]
    categories = [{"id": k + 1, "name": f"class{k + 1:02d}", "supercategory": ""} for k in range(LARGE_CLASSES)]
    start = time.perf_counter()
    with annotation_file(out).open("w") as f:
        f.write('{"info": {}, "licenses": [], "categories": ' + json.dumps(categories) + ', "images": '
                + json.dumps(entries) + ', "annotations": [')
        next_id, first = 1, True
        for lo in range(0, images, chunk):
            hi = min(lo + chunk, images)
            owner = np.repeat(np.arange(lo, hi), counts[lo:hi])
            xy, nv = _polygons(rng, widths[owner].astype(float), heights[owner].astype(float))
            cats = rng.integers(1, LARGE_CLASSES + 1, len(owner))
            anns, j = [], 0
            for i in range(lo, hi):
                w, h = int(widths[i]), int(heights[i])
                if (w, h) not in encoded:
                    buf = io.BytesIO()
                    Image.new("RGB", (w, h), PALETTE[(w * 7 + h) % len(PALETTE)]).save(buf, "JPEG", quality=30)
                    encoded[(w, h)] = buf.getvalue()
                (img_dir / entries[i]["file_name"]).write_bytes(encoded[(w, h)])
                n = int(counts[i])
                if not n:
                    continue
                flats = [xy[j + m, :nv[j + m]].ravel().tolist() for m in range(n)]
                rles = mask_utils.frPyObjects(flats, h, w)  # one polygon per instance: its merged RLE
                areas, boxes = mask_utils.area(rles), np.round(mask_utils.toBbox(rles), 2)
                for m in range(n):
                    anns.append({"id": next_id, "image_id": i + 1, "category_id": int(cats[j + m]),
                                 "segmentation": [flats[m]], "area": float(areas[m]),
                                 "bbox": boxes[m].tolist(), "iscrowd": 0})
                    next_id += 1
                j += n
            if anns:
                f.write(("" if first else ", ") + json.dumps(anns)[1:-1])
                first = False
            if hi % 10_000 < chunk or hi == images:
                print(f"generated {hi}/{images} images, {next_id - 1}/{instances} instances "
                      f"({time.perf_counter() - start:.0f} s)", file=sys.stderr)
        f.write("]}")
    return out


def large_folder(out: Path, images: int, instances: int, seed: int, size: tuple[int, int]) -> Path:
    """The large-mode folder for these parameters under ``out``, made when missing."""
    params = {"images": images, "instances": instances, "seed": seed, "size": list(size), "kind": "large"}
    return _reused(out / f"coco_large_{images}i_{instances}a_{max(size)}_seed{seed}", params,
                   lambda f: generate_large(f, images, instances, seed, size))


@dataclass
class Done:
    """A finished command: its wall time, exit code, output and peak RSS in MB."""
    seconds: float
    returncode: int
    stdout: str
    stderr: str
    peak_mb: float


# Run between this process and the command: a bare interpreter that forks, execs the command, waits for it with
# wait4 and writes its ru_maxrss (KB) into argv[1]. A forked child's peak starts at its parent's resident set, so
# the command must not be forked from this process, which holds numpy, Pillow and the generated folder's data.
_PEAK = ("import os, sys\npid = os.fork()\nif pid == 0:\n    os.execvp(sys.argv[2], sys.argv[2:])\n"
         "_, status, usage = os.wait4(pid, 0)\nopen(sys.argv[1], 'w').write(str(usage.ru_maxrss))\n"
         "sys.exit(min(abs(os.waitstatus_to_exitcode(status)), 255))")


def timed(cmd: list[str], cwd: Path | None = None) -> Done:
    """Run ``cmd`` to its end through :data:`_PEAK`: its wall time, exit code, output (through files, no pipe
    to drain) and the largest resident set of the command and the processes it waited for (a floor of the
    bare interpreter's, about 10 MB)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err, \
            tempfile.TemporaryDirectory(prefix="peak_") as work:
        peak = Path(work) / "maxrss"
        start = time.perf_counter()
        code = subprocess.run([sys.executable, "-S", "-c", _PEAK, str(peak), *cmd], cwd=cwd, stdout=out,
                              stderr=err).returncode
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        kb = int(peak.read_text()) if peak.is_file() else 0
        return Done(seconds, code, out.read(), err.read(), kb / 1024)


def _checked(cmd: list[str], done: Done) -> Done:
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout[-1500:]}{done.stderr[-1500:]}")
    return done


# the line tvref validate logs when its sample loop ends (reference.contract.traversal)
_LOOP_LINE = re.compile(r"checked (\d+) samples in ([0-9.]+) s")


def run_tvref(folder: Path, workers: int, headers_only: bool, report: Path) -> tuple[Done, float]:
    """``tvref validate FOLDER --workers N [--headers-only] --json REPORT``; exit 0 required. Also the seconds
    of its sample loop, from the line it logs."""
    cmd = [sys.executable, "-m", "reference", "validate", str(folder), "--workers", str(workers),
           "--json", str(report)] + (["--headers-only"] if headers_only else [])
    done = _checked(cmd, timed(cmd, cwd=ROOT))
    found = _LOOP_LINE.findall(done.stderr)
    if not found:
        raise RuntimeError(f"{' '.join(cmd)} logged no sample loop time:\n{done.stderr[-2000:]}")
    return done, float(found[-1][1])


def _last_json(done: Done) -> dict:
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_plain(folder: Path, workers: int) -> tuple[Done, int, float]:
    """The plain decode loop over the folder's images in ``workers`` DataLoader workers; the samples it saw and
    the seconds of its loop."""
    cmd = [sys.executable, str(BASELINES), "decode", str(annotation_file(folder)), str(folder / "images" / SUBSET),
           "--workers", str(workers)]
    done = _checked(cmd, timed(cmd, cwd=ROOT))
    out = _last_json(done)
    return done, out["samples"], out["loop_seconds"]


def run_coco(folder: Path) -> tuple[Done, float]:
    """pycocotools' ``COCO(file)`` on the folder's annotation file in a fresh process; the call's seconds."""
    cmd = [sys.executable, str(BASELINES), "coco", str(annotation_file(folder))]
    done = _checked(cmd, timed(cmd, cwd=ROOT))
    return done, _last_json(done)["seconds"]


def run_datumaro(python: Path, folder: Path) -> tuple[Done, dict]:
    """``datum validate -t detection FOLDER`` and its report (written into a scratch folder)."""
    datum = python.parent / "datum"
    with tempfile.TemporaryDirectory(prefix="datum_validate_") as work:
        # an absolute path: datum runs in the scratch folder, where a relative one would not resolve
        target = str(folder.resolve())
        cmd = [str(datum), "--loglevel", "warning", "validate", "-t", "detection", target]
        done = timed(cmd, cwd=Path(work))
        if done.returncode != 0:
            raise RuntimeError(f"datum validate exited {done.returncode}:\n{done.stderr[-2000:]}")
        report = json.loads((Path(work) / "validation_report.json").read_text())
    return done, report


def _load() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def _cell(v: float | None, fmt: str = ".1f") -> str:
    return "-" if v is None else format(v, fmt)


def markdown(result: dict) -> str:
    m = result["meta"]
    lines = [f"{m['count']} images {m['size']}, {m['instances']} instances; {m['cpu']} ({m['cores']} cores), "
             f"load average {m['load_before']} before, {m['load_after']} after; torch {m['torch']}, "
             f"Datumaro {m.get('datumaro', '-')}",
             "", "| run | workers | seconds | samples/s | start-up s | samples/s in the sample loop | peak RSS MB |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in result["runs"]:
        lines.append(f"| {r['tool']} | {_cell(r['workers'], 'd')} | {r['seconds']:.2f} | {r['samples_per_s']:.1f} | "
                     f"{_cell(r.get('startup_seconds'))} | {_cell(r.get('loop_samples_per_s'))} | "
                     f"{_cell(r.get('peak_rss_mb'), '.0f')} |")
    lines.append("\nPeak RSS: the largest resident set among a command's processes (ru_maxrss). pycocotools' "
                 "seconds: the COCO(file) call alone. The sample loop: from making the DataLoader to the last "
                 "sample (tvref logs it; the plain loop times the same span); start-up: the rest of the command. "
                 "Speed-ups: of the sample loops, but pycocotools' over tvref's whole command.")
    for name, v in result["speedups"].items():
        lines.append(f"\n{name}: {v:.2f}x")
    return "\n".join(lines)


def _row(tool: str, workers: int | None, count: int, runs: list[Done], loops: list[float] | None = None,
         seconds: list[float] | None = None) -> dict:
    """A table row from repeated runs (medians): their wall times, or ``seconds`` timed inside them; with the
    seconds of their sample ``loops``, the loop's rate and the start-up (the rest of the command)."""
    sec = statistics.median(seconds if seconds is not None else [d.seconds for d in runs])
    row = {"tool": tool, "workers": workers, "seconds": sec, "samples_per_s": count / sec,
           "peak_rss_mb": max(d.peak_mb for d in runs)}
    note = ""
    if seconds is not None:
        row["command_seconds"] = statistics.median(d.seconds for d in runs)
        note = f" (the command {row['command_seconds']:.1f} s)"
    if loops is not None:
        loop = statistics.median(loops)
        row.update(loop_seconds=loop, loop_samples_per_s=count / loop,
                   startup_seconds=statistics.median(d.seconds - t for d, t in zip(runs, loops)))
        note = f" (sample loop {loop:.2f} s, {count / loop:.0f} samples/s)"
    label = tool if workers is None else f"{tool} --workers {workers}"
    print(f"{label}: {sec:.1f} s, {count / sec:.1f} samples/s{note}, peak RSS {row['peak_rss_mb']:.0f} MB",
          file=sys.stderr)
    return row


def measure(folder: Path, count: int, workers: list[int], repeats: int, tmp: Path, *, decoding: bool = True,
            plain: bool = True, datumaro: Path | None = None) -> tuple[list[dict], list[dict]]:
    """The table's rows and tvref's reports: tvref (decoding if ``decoding``, and ``--headers-only``) and,
    if ``plain``, the plain decode loop, with each worker count; pycocotools' load; Datumaro from the venv of
    ``datumaro`` if given."""
    rows, reports = [], []
    for headers_only in ((False, True) if decoding else (True,)):
        for w in workers:
            done, loops = [], []
            for k in range(repeats):
                report = tmp / f"{int(headers_only)}_{w}_{k}.json"
                d, loop = run_tvref(folder, w, headers_only, report)
                done.append(d)
                loops.append(loop)
                reports.append(json.loads(report.read_text()))
            rows.append(_row(HEADERS if headers_only else DECODING, w, count, done, loops))
    if plain:
        for w in workers:
            done, loops = [], []
            for _ in range(repeats):
                d, seen, loop = run_plain(folder, w)
                if seen != count:
                    raise RuntimeError(f"the plain decode loop saw {seen} of {count} images")
                done.append(d)
                loops.append(loop)
            rows.append(_row(PLAIN, w, count, done, loops))
    coco = [run_coco(folder) for _ in range(repeats)]
    rows.append(_row(COCO_ROW, None, count, [d for d, _ in coco], seconds=[s for _, s in coco]))
    if datumaro is not None:
        done = [run_datumaro(datumaro, folder) for _ in range(repeats)]
        rows.append(_row("datum validate -t detection", None, count, [d for d, _ in done]))
        rows[-1]["summary"] = done[-1][1].get("summary")
    return rows, reports


def speedups(rows: list[dict], workers: list[int]) -> dict[str, float]:
    """Ratios of the sample loops' times (tvref and the plain loop), and pycocotools' load over tvref's whole
    ``--headers-only`` command."""
    by = {(r["tool"], r["workers"]): r["loop_seconds"] for r in rows if "loop_seconds" in r}
    whole = {(r["tool"], r["workers"]): r["seconds"] for r in rows}
    out = {}
    for tool in (DECODING, HEADERS, PLAIN):
        if (tool, 1) in by and (tool, 2) in by:
            out[f"{tool}: 2 workers over 1"] = by[(tool, 1)] / by[(tool, 2)]
    for w in workers:
        if (DECODING, w) in by and (HEADERS, w) in by:
            out[f"--headers-only over decoding, {w} worker(s)"] = by[(DECODING, w)] / by[(HEADERS, w)]
    for w in workers:
        if (DECODING, w) in by and (PLAIN, w) in by:
            out[f"decoding path over the plain decode loop, {w} worker(s)"] = by[(PLAIN, w)] / by[(DECODING, w)]
    for w in workers:
        if (HEADERS, w) in whole and (COCO_ROW, None) in whole:
            out[f"pycocotools' COCO() load over the whole tvref --headers-only run, {w} worker(s)"] = (
                whole[(COCO_ROW, None)] / whole[(HEADERS, w)])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--size", type=_size, help="WxH, default 640x480 (large mode: the long side and 3/4 of the "
                   "short one bound the varied sizes; --annotations: 160x120)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/validate_scale", help="the generated folder and the results go here")
    p.add_argument("--workers", help="DataLoader worker counts to measure, comma-separated (default 1,2; large "
                   "mode 2)")
    p.add_argument("--repeats", type=int, default=1, help="runs per configuration; the median is reported")
    p.add_argument("--skip-datumaro", action="store_true")
    p.add_argument("--datumaro-venv", default=str(DATUMARO_VENV))
    large = p.add_argument_group("large mode")
    large.add_argument("--images", type=int, help="generate this many images (with --instances)")
    large.add_argument("--instances", type=int, help="and this many instances")
    large.add_argument("--train2017", action="store_true", help=f"--images {TRAIN2017[0]} --instances {TRAIN2017[1]}")
    large.add_argument("--annotations", type=int, metavar="N", help="N instances on N/10 images (160x120)")
    large.add_argument("--with-decoding", action="store_true", help="also the decoding path")
    p.add_argument("--generate-only", action="store_true", help="make (or find) the folder, print it, measure nothing")
    a = p.parse_args(argv)
    modes = sum([a.train2017, a.annotations is not None, a.images is not None or a.instances is not None])
    if modes > 1:
        p.error("choose one of --train2017, --annotations, --images/--instances")
    if a.train2017:
        a.images, a.instances = TRAIN2017
    elif a.annotations is not None:
        a.images, a.instances = max(a.annotations // 10, 1), a.annotations
        a.size = a.size or (160, 120)
    is_large = a.images is not None or a.instances is not None
    if is_large and (a.images is None or a.instances is None or a.images < 1 or a.instances < 0):
        p.error("--images (at least 1) and --instances go together")
    size = a.size or (640, 480)
    if a.count < 1 or a.repeats < 1:
        p.error("--count and --repeats must be at least 1")
    workers = [int(w) for w in (a.workers or ("2" if is_large else "1,2")).split(",") if w.strip()]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if (out / f"results-{stamp}.json").exists():
        print(f"{out}/results-{stamp}.json exists; wait a second and run again", file=sys.stderr)
        return 2
    python = None if a.skip_datumaro or is_large or a.generate_only else ensure_datumaro(Path(a.datumaro_venv))
    if is_large:
        start = time.perf_counter()
        folder = large_folder(out, a.images, a.instances, a.seed, size)
        count, instances = a.images, a.instances
        size_text = f"varied, long side {max(size)}, short side {round(0.75 * min(size))}-{max(size)}"
        print(f"folder ready in {time.perf_counter() - start:.0f} s: {folder}", file=sys.stderr)
    else:
        folder = dataset_folder(out, a.count, a.seed, size)
        count, size_text = a.count, f"{size[0]}x{size[1]}"
        instances = len(json.loads(annotation_file(folder).read_text())["annotations"])

    if a.generate_only:
        print(folder)
        return 0
    meta = {"count": count, "size": size_text, "seed": a.seed, "instances": instances, "cpu": cpu_name(),
            "cores": os.cpu_count(), "load_before": _load(), "python": platform.python_version(),
            "torch": metadata.version("torch"), "folder": str(folder),
            "annotation_mb": round(annotation_file(folder).stat().st_size / 2**20, 1),
            "command": " ".join(["python", "ci/validate_scale.py", *(sys.argv[1:] if argv is None else argv)])}
    if python is not None:
        meta["datumaro"] = datumaro_version(python)
    with tempfile.TemporaryDirectory(prefix="validate_scale_") as tmp:
        runs, reports = measure(folder, count, workers, a.repeats, Path(tmp), decoding=not is_large or
                                a.with_decoding, plain=not is_large, datumaro=python)
    meta["reports_identical"] = all(r == reports[0] for r in reports)
    meta["errors"] = reports[0]["summary"]["errors"]
    meta["load_after"] = _load()
    result = {"meta": meta, "runs": runs, "speedups": speedups(runs, workers)}
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
