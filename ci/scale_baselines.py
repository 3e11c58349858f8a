"""The baselines ``ci/validate_scale.py`` sets beside ``tvref validate``, each run as its own process so that its
start-up counts as tvref's does.

``decode``: a torch DataLoader over a COCO file's images whose workers only decode each file to RGB with Pillow
and send back its shape (the decode bound of the decoding path); prints ``{"samples": N, "pixels": P}``.
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
    """The image files, each read by ``[i]`` as Pillow's RGB pixels; only their shape leaves the worker."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, ...]:
        import numpy as np
        from PIL import Image

        return np.asarray(Image.open(self.paths[i]).convert("RGB")).shape


def image_paths(annotations: Path, image_dir: Path, max_samples: int | None = None) -> list[Path]:
    """The files of the COCO file's images, in its order (tvref's order), the first ``max_samples`` of them."""
    images = json.loads(annotations.read_text())["images"]
    return [image_dir / im["file_name"] for im in images[:max_samples]]


def decode(paths: list[Path], workers: int) -> dict:
    """Every file decoded in ``workers`` DataLoader processes (0: this one); the count and the pixels seen."""
    from torch.utils.data import DataLoader

    samples = pixels = 0
    for shape in DataLoader(DecodeOnly(paths), batch_size=None, num_workers=workers):
        samples += 1
        pixels += int(shape[0]) * int(shape[1])
    return {"samples": samples, "pixels": pixels}


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
