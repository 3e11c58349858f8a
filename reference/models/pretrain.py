"""The pretrained stand-in: ``small_maskrcnn`` pretrained on generated shapes, the project's COCO weights.

COCO-pretrained weights cannot be downloaded on the project's machines, so the tutorial's step "start from a
detector pretrained on a large, different dataset" is played by this model: it learns objects in general
(six polygon classes, :data:`reference.testing.synthetic.SHAPE_CLASSES`, at any rotation, on the same kind
of cluttered backgrounds) and never sees a pedestrian. The demo and the accuracy gate then do the tutorial's
head surgery on it and fine-tune it on the bundled pedestrian scenes.

    python -m reference.models.pretrain --out fixtures/pretrained/small_maskrcnn_shapes.pt

Everything is seeded and the scenes depend only on ``(seed, index)``; with the same torch build and thread
count the same command writes the same bytes (the weights are stored as float16, 2.8 MB). The bundled file took
16 minutes with 1 thread on a 2-core Intel Xeon shared with other work (3,000 iterations of batch 4).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.ops import masks_to_boxes

from ..atomic_io import atomic_write_bytes
from . import small_maskrcnn
from ..training.fit import FitConfig, Recipe, fit
from ..transforms import get_preset
from ..testing.synthetic import SHAPE_CLASSES, make_shapes_scene

log = logging.getLogger(__name__)

# The stand-in's recipe. AdamW with a cosine schedule trains the small model from random weights quickly.
RECIPE = Recipe("pretrain", "adamw", 1e-3, 1e-4, 4, 6, "cosine", "tutorial", warmup=True, eval_every=10**6)


@dataclass(frozen=True)
class DataRecipe:
    """The pretraining scenes: ``count`` shape scenes of ``size`` (width, height) drawn with ``seed``."""

    count: int = 2000
    seed: int = 1000
    size: tuple[int, int] = (160, 128)
    max_instances: int = 5


class ShapesDataset(Dataset):
    """The pretraining scenes as ``(image, target)`` pairs, drawn on first use and kept in memory."""

    def __init__(self, data: DataRecipe, transforms=None):
        self.data = data
        self.transforms = transforms
        self.classes = ["background", *SHAPE_CLASSES]
        self._cache: dict[int, tuple[torch.Tensor, list[int], torch.Tensor]] = {}

    def __len__(self) -> int:
        return self.data.count

    def __getitem__(self, idx: int):
        if idx not in self._cache:
            s = make_shapes_scene(self.data.seed, idx, self.data.size, self.data.max_instances)
            self._cache[idx] = (torch.from_numpy(s.image).permute(2, 0, 1).contiguous(), s.labels,
                                torch.from_numpy(s.masks))
        pixels, labels, masks = self._cache[idx]
        boxes = masks_to_boxes(masks)
        # boxes from masks_to_boxes end on the last pixel: a shape one pixel across would have no area
        boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        target = {
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=tuple(pixels.shape[-2:])),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "masks": tv_tensors.Mask(masks.to(torch.uint8)),
            "image_id": idx,
            "area": (boxes[:, 3] - boxes[:, 1]) * (boxes[:, 2] - boxes[:, 0]),
            "iscrowd": torch.zeros(len(labels), dtype=torch.int64),
        }
        image = tv_tensors.Image(pixels)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target


def pretrain(out: Path, data: DataRecipe = DataRecipe(), recipe: Recipe = RECIPE, seed: int = 0,
             threads: int = 1) -> dict:
    """Pretrain ``small_maskrcnn`` on :class:`ShapesDataset` and write its float16 state dict to ``out``.

    Returns the manifest record: file, SHA-256, classes, recipe, data recipe, seed, threads, versions, time.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(seed)
        ds = ShapesDataset(data, get_preset(recipe.transforms, True))
        model = small_maskrcnn(num_classes=len(ds.classes))
        cfg = FitConfig("small_maskrcnn", len(ds.classes), recipe, recipe.epochs, seed, "cpu", print_freq=50,
                        classes=ds.classes)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="tvref-pretrain-") as tmp:
            result = fit(model, ds, None, cfg, tmp)
        seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(before)
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    buffer = _serialise(state)
    atomic_write_bytes(out, buffer)
    import torchvision

    return {
        "file": out.name, "sha256": hashlib.sha256(buffer).hexdigest(), "model": "small_maskrcnn",
        "classes": ds.classes, "recipe": asdict(recipe), "data": asdict(data), "seed": seed, "threads": threads,
        "torch": torch.__version__, "torchvision": torchvision.__version__, "seconds": round(seconds, 1),
        "final_train_loss": round(result.history[-1].train_loss, 4),
        "command": f"python -m reference.models.pretrain --out {out.name}",
    }


def _serialise(state: dict[str, torch.Tensor]) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reference.models.pretrain", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="weights file to write (refused if it exists)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the bundled weights were "
                   "made: another count runs other float kernels and gives other bytes)")
    p.add_argument("--count", type=int, default=DataRecipe.count, help="pretraining scenes")
    p.add_argument("--epochs", type=int, default=RECIPE.epochs)
    p.add_argument("--manifest", type=Path, help="also write the manifest record to this JSON file")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if a.out.exists():
        p.error(f"--out {a.out} exists: choose another path (an earlier file is never overwritten)")
    record = pretrain(a.out, DataRecipe(count=a.count), replace(RECIPE, epochs=a.epochs), a.seed, a.threads)
    text = json.dumps(record, indent=2)
    if a.manifest:
        atomic_write_bytes(a.manifest, (text + "\n").encode())
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
