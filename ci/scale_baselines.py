"""The baselines ``ci/validate_scale.py`` sets beside ``tvref validate``, each run as its own process so that its
start-up counts as tvref's does.

``decode``: a torch DataLoader over a COCO file's images whose workers only decode each file with Pillow, in
the validator's chunks, and send back the sizes (the decode bound of the decoding path); prints
``{"samples": N, "pixels": P, "loop_seconds": S}``, S timed from making the DataLoader to its last chunk, as
``tvref validate`` logs its sample loop.
``coco``: pycocotools' ``COCO(file)``, timed around that call alone; prints ``{"seconds": S, "annotations": N}``.
Both print their JSON as the last line of stdout (pycocotools prints its own lines before it).

    python ci/scale_baselines.py decode FOLDER/annotations/instances_default.json FOLDER/images/default --workers 2
    python ci/scale_baselines.py coco FOLDER/annotations/instances_default.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


class DecodeOnly:
    """The image files, ``[chunk]`` decoding each file of a chunk of indices with Pillow (every pixel, as the
    decoding path does); only their sizes leave the worker, a chunk at a time, as the decoding path sends its
    findings back (the same chunk size, so both sides pay the same round trips)."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, chunk: list[int]) -> list[tuple[int, int]]:
        from PIL import Image

        sizes = []
        for i in chunk:
            with Image.open(self.paths[i]) as im:
                im.load()
                sizes.append(im.size)
        return sizes


def image_paths(annotations: Path, image_dir: Path, max_samples: int | None = None) -> list[Path]:
    """The files of the COCO file's images, in its order (tvref's order), the first ``max_samples`` of them."""
    images = json.loads(annotations.read_text())["images"]
    return [image_dir / im["file_name"] for im in images[:max_samples]]


def decode(paths: list[Path], workers: int) -> dict:
    """Every file decoded in ``workers`` DataLoader processes (0: this one), in chunks of the validator's batch
    size; the count, the pixels seen and the loop's seconds (workers started, every file decoded)."""
    from torch.utils.data import DataLoader

    from reference.contract.traversal import BATCH_CHUNK

    chunks = [list(range(s, min(s + BATCH_CHUNK, len(paths)))) for s in range(0, len(paths), BATCH_CHUNK)]
    samples = pixels = 0
    start = time.perf_counter()
    loader = DataLoader(DecodeOnly(paths), batch_size=None, sampler=chunks, num_workers=workers,
                        collate_fn=_as_is)
    for sizes in loader:
        for w, h in sizes:
            samples += 1
            pixels += w * h
    return {"samples": samples, "pixels": pixels, "loop_seconds": time.perf_counter() - start}


def _as_is(item):
    return item


def coco_load(annotations: Path) -> dict:
    """Seconds of ``COCO(file)`` alone (the import is outside the timing)."""
    from pycocotools.coco import COCO

    start = time.perf_counter()
    coco = COCO(str(annotations))
    return {"seconds": time.perf_counter() - start, "annotations": len(coco.anns)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    d = sub.add_parser("decode", help="decode every image of a COCO file in a DataLoader")
    d.add_argument("annotations", type=Path)
    d.add_argument("image_dir", type=Path)
    d.add_argument("--workers", type=int, default=0)
    d.add_argument("--max-samples", type=int)
    c = sub.add_parser("coco", help="time pycocotools' COCO(file)")
    c.add_argument("annotations", type=Path)
    a = p.parse_args(argv)
    if a.what == "decode":
        result = decode(image_paths(a.annotations, a.image_dir, a.max_samples), a.workers)
    else:
        result = coco_load(a.annotations)
    sys.stdout.flush()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
