"""Run under ``torchrun --nproc_per_node=2``: distributed evaluation and a DDP training step.

Rank 0 writes what it measured to the JSON file named by argv[1]; the test compares it with one process.
"""

from __future__ import annotations

import json
import sys

import torch
from torch import nn
from torch.utils.data import Subset

from reference.engine import distributed
from reference.data import PennFudanDataset
from reference.engine.loops import evaluate
from reference.training.fit import make_loader
from reference.transforms import evaluation

FIXTURES = __import__("pathlib").Path(__file__).resolve().parent.parent / "fixtures"
EVAL_INDICES = list(range(7))  # odd, so the distributed sampler pads one rank with a duplicate


class JitterDetector(nn.Module):
    """Detections derived from the ground truth with per-image shifts and one false positive each.

    The AP it earns depends on every image's detections being counted exactly once, which is what the
    gather across processes must get right (a lost shard or a double-counted padding image changes it).
    """

    def __init__(self, dataset):
        super().__init__()
        self.table = {}
        for i in range(len(dataset)):
            image, target = dataset[i]
            boxes = target["boxes"].clone() + float(i % 4)
            boxes = torch.cat([boxes, torch.tensor([[0.0, 0.0, 20.0, 20.0]])])
            scores = torch.linspace(0.9, 0.5, len(boxes)) - 0.05 * (i % 3)
            self.table[self._key(image)] = {"boxes": boxes, "scores": scores,
                                            "labels": torch.ones(len(boxes), dtype=torch.int64)}

    @staticmethod
    def _key(image):
        return round(float(image.double().sum()), 3)

    def forward(self, images):
        return [self.table[self._key(img)] for img in images]


def eval_model() -> nn.Module:
    return JitterDetector(eval_dataset())


def eval_dataset():
    return Subset(PennFudanDataset(FIXTURES / "pennfudan" / "val", evaluation()), EVAL_INDICES)


class MeanModel(nn.Module):
    """A loss that is a mean over the images of the batch, as the gradient comparison needs."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.head = nn.Linear(3, 1)

    def forward(self, images):
        feats = torch.stack([img.mean(dim=(1, 2)) for img in images])
        return (self.head(feats) ** 2).mean()


def step_batch():
    g = torch.Generator().manual_seed(9)
    return [torch.rand((3, 8, 8), generator=g) for _ in range(4)]


def main(out: str) -> None:
    info = distributed.init_from_env(torch.device("cpu"))
    result = {"world_size": info.world_size}
    loader = make_loader(eval_dataset(), 2, train=False, seed=0, epoch=0)
    result["stats"] = evaluate(eval_model(), loader, "cpu").stats
    model = nn.parallel.DistributedDataParallel(MeanModel())
    half = step_batch()[2 * info.rank: 2 * info.rank + 2]
    model(half).backward()
    result["grads"] = {k: p.grad.tolist() for k, p in model.module.named_parameters()}
    if info.is_main:
        with open(out, "w") as f:
            json.dump(result, f)
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
