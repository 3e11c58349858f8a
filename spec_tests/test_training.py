"""fit(): checkpoints that resume bit for bit, survive a non-finite loss, and refuse foreign files."""

from __future__ import annotations

import pickle
from dataclasses import replace

import pytest
import torch
from torch.utils.data import Subset

from reference.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from reference.datasets import PennFudanDataset
from reference.engine import NonFiniteLossError
from reference.models import build_model
from reference.training import FitConfig, fit, get_recipe
from reference.transforms import evaluation, tutorial

from .conftest import FIXTURES

RECIPE = replace(get_recipe("ci"), epochs=3, eval_every=2)


def _data():
    train = Subset(PennFudanDataset(FIXTURES / "pennfudan" / "train", tutorial(True)), range(8))
    val = Subset(PennFudanDataset(FIXTURES / "pennfudan" / "val", evaluation()), range(4))
    return train, val


def _cfg(**kw):
    return FitConfig("small_maskrcnn", 2, RECIPE, epochs=3, seed=7, print_freq=100, **kw)


def _model():
    torch.manual_seed(7)
    return build_model("small_maskrcnn", 2)


class _KillAt(torch.utils.data.Dataset):
    """Raises KeyboardInterrupt on the n-th item fetched, as a kill in the middle of an epoch would."""

    def __init__(self, ds, n):
        self.ds, self.n, self.fetched = ds, n, 0

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        self.fetched += 1
        if self.fetched == self.n:
            raise KeyboardInterrupt
        return self.ds[i]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    train, val = _data()
    out = tmp_path_factory.mktemp("full")
    result = fit(_model(), train, val, _cfg(), out)
    return result, load_checkpoint(out / "last.pt")


def test_same_seed_gives_identical_losses(uninterrupted, tmp_path):
    train, val = _data()
    again = fit(_model(), train, val, _cfg(), tmp_path)
    assert again.losses_per_iteration == uninterrupted[0].losses_per_iteration


def test_a_validation_set_does_not_change_the_training_trajectory(uninterrupted, tmp_path):
    """The validation pass runs the model in train mode (for its losses), where the samplers draw random
    numbers; the gate's run (no validation) and the demo (validation every epoch) must train alike."""
    train, _ = _data()
    fit(_model(), train, None, _cfg(), tmp_path)
    alone = load_checkpoint(tmp_path / "last.pt")
    for k, v in uninterrupted[1]["model"].items():
        assert torch.equal(alone["model"][k], v), k


def test_outputs_follow_the_umask(tmp_path):
    import os

    previous = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "c.pt", {"epoch": 1})
    finally:
        os.umask(previous)
    assert (tmp_path / "c.pt").stat().st_mode & 0o777 == 0o644


def test_resuming_a_run_killed_mid_epoch_gives_the_uninterrupted_weights_bit_for_bit(uninterrupted, tmp_path):
    train, val = _data()
    with pytest.raises(KeyboardInterrupt):
        fit(_model(), _KillAt(train, 8 + 8 + 5), val, _cfg(), tmp_path)  # in epoch 2, after 5 of 8 samples
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 2
    fit(_model(), train, val, _cfg(), tmp_path, resume=tmp_path / "last.pt")
    resumed = load_checkpoint(tmp_path / "last.pt")
    expected = uninterrupted[1]
    assert resumed["epoch"] == expected["epoch"] == 3
    for k, v in expected["model"].items():
        assert torch.equal(resumed["model"][k], v), k


def test_checkpoint_holds_every_state_and_loads_with_weights_only(uninterrupted):
    state = uninterrupted[1]
    assert {"model", "optimizer", "scheduler", "scaler", "epoch", "rng", "history"} <= set(state)
    assert set(state["rng"]) >= {"torch", "python"}
    assert len(state["history"]) == 3 and state["history"][-1]["bbox_ap"] is not None


def test_a_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    train, val = _data()
    model = _model()
    original = model.forward
    calls = {"n": 0}

    def poisoned(images, targets=None):
        out = original(images, targets)
        if model.training and targets is not None:
            calls["n"] += 1
            if calls["n"] > 2 + 1:  # epoch 0 has 2 training batches, validation runs 1 more
                out = {k: v * float("nan") for k, v in out.items()}
        return out

    model.forward = poisoned
    with pytest.raises(NonFiniteLossError) as info:
        fit(model, train, val, _cfg(), tmp_path)
    assert info.value.epoch == 1 and info.value.image_ids
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_resuming_with_another_model_or_class_count_is_refused(uninterrupted, tmp_path):
    train, val = _data()
    save_checkpoint(tmp_path / "c.pt", {**uninterrupted[1], "num_classes": 5})
    with pytest.raises(CheckpointError, match="num_classes=5"):
        fit(_model(), train, val, _cfg(), tmp_path / "out", resume=tmp_path / "c.pt")


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_file_with_pickled_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"format": "tvref-checkpoint/1", "x": _Payload(str(marker))}))
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


def test_an_interrupted_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"epoch": 1})
    monkeypatch.setattr("os.replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        save_checkpoint(path, {"epoch": 2})
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
