"""Aspect-ratio grouped batches, as torchvision's ``references/detection`` builds them.

Images are put in groups by width / height (bins ``2 ** linspace(-1, 1, 2k + 1)``) so that a batch holds
images of similar shape and pads less. Sizes come from ``dataset.get_height_and_width(i)`` (a header read)
when the dataset has it, else from decoding the image.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from itertools import chain, repeat
from typing import Iterator, Sequence

import numpy as np
from torch.utils.data import BatchSampler, Sampler, Subset


def _height_and_width(dataset, idx: int) -> tuple[int, int]:
    if isinstance(dataset, Subset):
        return _height_and_width(dataset.dataset, dataset.indices[idx])
    getter = getattr(dataset, "get_height_and_width", None)
    if getter is not None:
        return tuple(getter(idx))
    image = dataset[idx][0]
    return (image.height, image.width) if hasattr(image, "height") else tuple(image.shape[-2:])


def aspect_ratio_bins(k: int) -> list[float]:
    """The bin edges for group factor ``k``: ``2 ** linspace(-1, 1, 2k + 1)``, or ``[1.0]`` for k = 0."""
    if k <= 0:
        return [1.0]
    return (2 ** np.linspace(-1, 1, 2 * k + 1)).tolist()


def aspect_ratio_groups(dataset, k: int = 3) -> list[int]:
    """The group of every sample: the number of bin edges its width / height ratio is at or above."""
    bins = aspect_ratio_bins(k)
    groups = []
    for i in range(len(dataset)):
        h, w = _height_and_width(dataset, i)
        groups.append(bisect.bisect_right(bins, w / h))
    return groups


class GroupedBatchSampler(BatchSampler):
    """Batches whose members share a group, in the order ``sampler`` yields them.

    As in the references: ``len(sampler) // batch_size`` batches; when the sampler runs out, the fullest
    unfinished groups are completed by repeating their own samples.
    """

    def __init__(self, sampler: Sampler, group_ids: Sequence[int], batch_size: int):
        self.sampler, self.group_ids, self.batch_size = sampler, list(group_ids), batch_size

    def __iter__(self) -> Iterator[list[int]]:
        buffers: dict[int, list[int]] = defaultdict(list)
        seen: dict[int, list[int]] = defaultdict(list)
        emitted = 0
        for idx in self.sampler:
            g = self.group_ids[idx]
            buffers[g].append(idx)
            seen[g].append(idx)
            if len(buffers[g]) == self.batch_size:
                yield buffers.pop(g)
                emitted += 1
        remaining = len(self) - emitted
        for g, buf in sorted(buffers.items(), key=lambda kv: len(kv[1]), reverse=True):
            if remaining <= 0:
                break
            missing = self.batch_size - len(buf)
            yield buf + list(chain.from_iterable(repeat(seen[g], missing // len(seen[g]) + 1)))[:missing]
            remaining -= 1

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size
