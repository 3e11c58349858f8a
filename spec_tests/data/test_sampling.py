"""Aspect-ratio grouping, as the references do it, from header sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import SequentialSampler, Subset

from reference.data import PennFudanDataset
from reference.data.sampling import GroupedBatchSampler, aspect_ratio_bins, aspect_ratio_groups
from reference.testing.synthetic import generate
from reference.training.fit import make_loader


def test_bins_are_powers_of_two_over_a_linspace():
    assert aspect_ratio_bins(3) == (2 ** np.linspace(-1, 1, 7)).tolist()
    assert aspect_ratio_bins(0) == [1.0]


class _Sizes(torch.utils.data.Dataset):
    def __init__(self, sizes):
        self.sizes = sizes

    def __len__(self):
        return len(self.sizes)

    def __getitem__(self, i):
        raise AssertionError("grouping must not decode images")

    def get_height_and_width(self, i):
        return self.sizes[i]


def test_groups_come_from_get_height_and_width_without_decoding():
    ds = _Sizes([(100, 100), (100, 300), (300, 100), (100, 150), (100, 100)])
    groups = aspect_ratio_groups(ds, k=3)
    assert groups[0] == groups[4] == 4  # ratio 1.0 sits on the middle edge: bisect_right puts it above
    assert groups[1] == 7 and groups[2] == 0 and groups[3] == 5


def test_subsets_map_to_the_underlying_dataset():
    ds = _Sizes([(100, 100), (100, 300)])
    assert aspect_ratio_groups(Subset(ds, [1]), k=3) == [7]


def test_batches_hold_one_group_and_leftovers_are_completed_from_the_fullest_group():
    groups = [0, 1, 0, 1, 0, 1, 0, 0]
    batches = list(GroupedBatchSampler(SequentialSampler(range(8)), groups, batch_size=3))
    assert batches == [[0, 2, 4], [1, 3, 5]]  # 8 // 3 = 2 batches, both filled by the sampler
    # 7 // 3 = 2 batches; the sampler fills one, the other is group 1 topped up with its own first sample
    batches = list(GroupedBatchSampler(SequentialSampler(range(7)), [0, 1, 0, 1, 0, 0, 0], batch_size=3))
    assert batches == [[0, 2, 4], [1, 3, 1]]


def test_the_remaining_group_is_padded_with_its_own_samples():
    batches = list(GroupedBatchSampler(SequentialSampler(range(4)), [0, 1, 1, 2], batch_size=2))
    assert batches[0] == [1, 2]
    assert batches[1] == [0, 0]  # buffers [0] and [3] tie in length; the first-opened group is completed


def test_training_loader_groups_mixed_aspect_ratios(tmp_path):
    wide = generate("pennfudan", tmp_path / "wide", count=6, seed=1, size=(160, 96))
    tall = generate("pennfudan", tmp_path / "tall", count=6, seed=2, size=(96, 160))
    ds = torch.utils.data.ConcatDataset([PennFudanDataset(wide), PennFudanDataset(tall)])
    ds.get_height_and_width = lambda i: (96, 160) if i < 6 else (160, 96)
    loader = make_loader(ds, 3, train=True, seed=0, epoch=0, group_factor=3)
    for images, _ in loader:
        assert len({tuple(img.shape[-2:]) for img in images}) == 1


@pytest.mark.parametrize("factor", [-1, 3])
def test_single_aspect_ratio_data_gives_the_same_batches_either_way(factor, fixtures_dir):
    ds = Subset(PennFudanDataset(fixtures_dir / "pennfudan" / "train"), range(12))
    loader = make_loader(ds, 4, train=True, seed=3, epoch=1, group_factor=factor)
    ids = [[t["image_id"] for t in targets] for _, targets in loader]
    plain = make_loader(ds, 4, train=True, seed=3, epoch=1)
    assert ids == [[t["image_id"] for t in targets] for _, targets in plain]
