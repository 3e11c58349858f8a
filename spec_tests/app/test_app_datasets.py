"""app.datasets: how a single data folder is split into training and validation."""

from __future__ import annotations

import pytest

from reference.app.datasets import TUTORIAL_HELD_OUT, held_out_count


def test_penn_fudans_170_images_hold_out_the_tutorials_50():
    assert TUTORIAL_HELD_OUT == 50
    assert held_out_count(170) == 50


@pytest.mark.parametrize("n,held", [(2, 1), (10, 2), (40, 8), (149, 29), (150, 50), (5000, 50)])
def test_a_folder_too_small_for_50_keeps_a_fifth_for_validation(n, held):
    assert held_out_count(n) == held
    assert n - held >= 1
