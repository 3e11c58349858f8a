"""fit(): checkpoints that resume bit for bit, survive a non-finite loss, and refuse foreign files."""

from __future__ import annotations

import pickle
from dataclasses import replace

import pytest
import torch
from torch.utils.data import Subset

from reference.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from reference.data import PennFudanDataset
from reference.engine.loops import NonFiniteLossError
from reference.models import build_model
from reference.training.fit import FitConfig, fit, get_recipe
from reference.transforms import evaluation, tutorial

from spec_tests.conftest import FIXTURES

# the references' warmup on, as the tutorial recipe has it: resume and seeding are checked through its scheduler too.
# Two images a batch, four a split: two iterations an epoch (a kill can land mid-epoch), each as cheap as can be.
# the loop's behaviours (resume, schedules, seeds) on a cosine AdamW recipe under the ci name: the demo's own recipe
# (SGD with a step schedule) is pinned in test_seed_recipes.py; cosine re-planning needs a cosine schedule
CI_COSINE = replace(get_recipe("ci"), optimizer="adamw", lr=1e-3, weight_decay=1e-4, batch_size=4, epochs=3,
                    schedule="cosine", warmup=False, eval_every=3)
RECIPE = replace(CI_COSINE, epochs=3, eval_every=2, warmup=True, batch_size=2)


def _data():
    train = Subset(PennFudanDataset(FIXTURES / "pennfudan" / "train", tutorial(True)), range(4))
    val = Subset(PennFudanDataset(FIXTURES / "pennfudan" / "val", evaluation()), range(2))
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
        fit(_model(), _KillAt(train, 4 + 4 + 3), val, _cfg(), tmp_path)  # in epoch 2, after 3 of 4 samples
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
    state = {k: v for k, v in uninterrupted[1].items() if k != "tensors_sha256"}
    save_checkpoint(tmp_path / "c.pt", {**state, "num_classes": 5})
    with pytest.raises(CheckpointError, match="num_classes 5 in the checkpoint, 2 now"):
        fit(_model(), train, val, _cfg(), tmp_path / "out", resume=tmp_path / "c.pt")


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_file_with_pickled_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"format": "tvref-checkpoint/1", "x": _Payload(str(marker))}))
    with pytest.raises(CheckpointError, match="not a checkpoint") as info:
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()
    message = str(info.value)
    assert "\n" not in message and "(Unsupported" in message  # what torch's safe unpickler objected to
    assert "weights_only" not in message and "trust" not in message  # never torch's advice to load it unsafely


def test_an_interrupted_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"epoch": 1})
    monkeypatch.setattr("os.replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        save_checkpoint(path, {"epoch": 2})
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


# --- resume checks ----------------------------------------------------------------------------------------------

def test_resuming_with_another_recipe_is_refused_naming_it_before_loading_any_state(uninterrupted, tmp_path):
    """The ci recipe's AdamW state loaded into the tutorial recipe's SGD used to crash (KeyError 'momentum')."""
    train, val = _data()
    save_checkpoint(tmp_path / "c.pt", uninterrupted[1])
    cfg = FitConfig("small_maskrcnn", 2, replace(get_recipe("tutorial"), epochs=3), epochs=3, seed=7)
    with pytest.raises(CheckpointError, match="recipe 'ci' in the checkpoint, 'tutorial' now") as info:
        fit(_model(), train, val, cfg, tmp_path / "out", resume=tmp_path / "c.pt")
    assert "\n" not in str(info.value)


def test_resuming_with_another_recipe_setting_is_refused_naming_the_setting(uninterrupted, tmp_path):
    train, val = _data()
    cfg = FitConfig("small_maskrcnn", 2, replace(RECIPE, lr=0.5), epochs=3, seed=7)
    save_checkpoint(tmp_path / "c.pt", uninterrupted[1])
    with pytest.raises(CheckpointError, match=r"recipe\.lr 0\.001 in the checkpoint, 0\.5 now"):
        fit(_model(), train, val, cfg, tmp_path / "out", resume=tmp_path / "c.pt")


def test_resuming_with_another_seed_or_data_is_refused_naming_both(uninterrupted, tmp_path):
    train, val = _data()
    save_checkpoint(tmp_path / "c.pt", uninterrupted[1])
    with pytest.raises(CheckpointError) as info:
        fit(_model(), Subset(train, range(3)), val, FitConfig("small_maskrcnn", 2, RECIPE, epochs=3, seed=8),
            tmp_path / "out", resume=tmp_path / "c.pt")
    assert "seed 7 in the checkpoint, 8 now" in str(info.value)
    assert "data train_samples 4 in the checkpoint, 3 now" in str(info.value)


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(2))


def _record_lrs(monkeypatch) -> list[tuple[int, float]]:
    """Replace the epoch's training with a record of the learning rate it would start at (no model runs)."""
    from reference.engine.loops import EpochLog

    seen: list[tuple[int, float]] = []

    def fake_epoch(model, optimizer, loader, device, epoch, *args, **kwargs):
        seen.append((epoch, optimizer.param_groups[0]["lr"]))
        return EpochLog([{"loss": 1.0}], {"loss": 1.0})

    monkeypatch.setattr("reference.training.fit.train_one_epoch", fake_epoch)
    return seen


def _tiny_fit(out, epochs, recipe=None, resume=None):
    recipe = recipe or replace(CI_COSINE, epochs=epochs)
    cfg = FitConfig("tiny", 1, recipe, epochs=epochs, seed=0)
    return fit(_Tiny(), list(range(8)), None, cfg, out, resume=resume)


def test_more_epochs_on_resume_continue_the_cosine_planned_for_the_new_length(tmp_path, monkeypatch):
    """The old T_max kept the schedule of the shorter run, and past its end the learning rate rose again."""
    import math

    seen = _record_lrs(monkeypatch)
    _tiny_fit(tmp_path, 2)
    assert [e for e, _ in seen] == [0, 1]
    seen.clear()
    _tiny_fit(tmp_path, 5, resume=tmp_path / "last.pt")
    lr = CI_COSINE.lr
    expected = [(e, lr * (1 + math.cos(math.pi * e / 5)) / 2) for e in (2, 3, 4)]
    assert [e for e, _ in seen] == [2, 3, 4]
    assert [v for _, v in seen] == pytest.approx([v for _, v in expected], rel=1e-9)
    assert load_checkpoint(tmp_path / "last.pt")["epochs"] == 5


def test_a_resume_with_the_planned_epochs_keeps_the_schedule_untouched(tmp_path, monkeypatch):
    seen = _record_lrs(monkeypatch)
    _tiny_fit(tmp_path / "a", 4)
    straight = list(seen)
    seen.clear()
    from reference.training import fit as training

    recording = training.train_one_epoch

    def killed_at_epoch_2(model, optimizer, loader, device, epoch, *args, **kwargs):
        if epoch == 2:
            raise KeyboardInterrupt
        return recording(model, optimizer, loader, device, epoch, *args, **kwargs)

    monkeypatch.setattr("reference.training.fit.train_one_epoch", killed_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        _tiny_fit(tmp_path / "b", 4)
    monkeypatch.setattr("reference.training.fit.train_one_epoch", recording)
    _tiny_fit(tmp_path / "b", 4, resume=tmp_path / "b" / "last.pt")
    assert seen == straight  # epochs 0, 1, then 2, 3 after the resume, at the same rates


def test_fewer_epochs_than_done_are_refused_on_resume(tmp_path, monkeypatch):
    _record_lrs(monkeypatch)
    _tiny_fit(tmp_path, 3)
    with pytest.raises(CheckpointError, match="epochs: 3 are done already, 2 asked for"):
        _tiny_fit(tmp_path, 2, recipe=replace(CI_COSINE, epochs=3), resume=tmp_path / "last.pt")


def test_another_length_of_a_onecycle_run_is_refused_with_the_reason(tmp_path, monkeypatch):
    _record_lrs(monkeypatch)
    onecycle = replace(get_recipe("mills"), amp=False)
    _tiny_fit(tmp_path, 2, recipe=onecycle)
    with pytest.raises(CheckpointError, match="epochs 2 in the checkpoint, 4 now .OneCycleLR's length is fixed"):
        _tiny_fit(tmp_path, 4, recipe=onecycle, resume=tmp_path / "last.pt")


def test_zero_or_negative_epochs_are_refused(tmp_path):
    with pytest.raises(ValueError, match="at least 1"):
        _tiny_fit(tmp_path, 0)
    assert not (tmp_path / "last.pt").exists()


# --- the one-batch warmup trap ----------------------------------------------------------------------------------

def test_one_batch_per_epoch_warms_up_within_epoch_zero_instead_of_pinning_the_learning_rate(caplog):
    """LinearLR(total_iters=len - 1 = 0) never leaves 1/1000: the references' run would train at lr / 1000."""
    from spec_tests.engine.test_engine import LossModel, batches, sgd

    model = LossModel()
    opt = sgd(model)
    steps = []
    opt.register_step_pre_hook(lambda o, args, kwargs: steps.append(o.param_groups[0]["lr"]))
    with caplog.at_level("WARNING", logger="reference.engine.loops"):
        from reference.engine.loops import train_one_epoch

        train_one_epoch(model, opt, batches(1), "cpu", epoch=0)
    assert steps == [pytest.approx(5e-6)]  # the one step is still the warmup's first
    assert opt.param_groups[0]["lr"] == pytest.approx(0.005)  # and the warmup is over at the end of epoch 0
    assert any("pin the learning rate" in r.getMessage() for r in caplog.records)


# --- checkpoint integrity ---------------------------------------------------------------------------------------

def _flip_a_weight_byte(path):
    """Change one byte of a tensor's data inside the checkpoint's zip (stored uncompressed), as disk rot would."""
    raw = bytearray(path.read_bytes())
    marker = bytes(torch.full((64,), 0.123456789, dtype=torch.float32).numpy().tobytes())
    at = raw.find(marker)
    assert at > 0
    raw[at + 100] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_weights_changed_on_disk_are_refused_by_their_sha256(tmp_path):
    save_checkpoint(tmp_path / "c.pt", {"epoch": 1, "model": {"w": torch.full((64,), 0.123456789)}})
    assert torch.equal(load_checkpoint(tmp_path / "c.pt")["model"]["w"], torch.full((64,), 0.123456789))
    _flip_a_weight_byte(tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="do not match the SHA-256 recorded in the file"):
        load_checkpoint(tmp_path / "c.pt")


def test_checkpoint_json_records_each_checkpoints_sha256_and_load_checks_it(tmp_path, monkeypatch):
    import json

    _record_lrs(monkeypatch)
    _tiny_fit(tmp_path, 1)
    meta = json.loads((tmp_path / "checkpoint.json").read_text())
    digest = meta["files"]["last.pt"]["tensors_sha256"]
    assert digest == load_checkpoint(tmp_path / "last.pt")["tensors_sha256"] and len(digest) == 64
    meta["files"]["last.pt"]["tensors_sha256"] = "0" * 64
    (tmp_path / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="recorded in checkpoint.json"):
        load_checkpoint(tmp_path / "last.pt")


def test_checkpoints_from_before_digests_still_load():
    from reference.testing.golden import trained_checkpoint

    state = load_checkpoint(trained_checkpoint())
    assert "tensors_sha256" not in state and state["model"]


def test_an_empty_checkpoint_file_is_refused_in_one_line(tmp_path):
    (tmp_path / "c.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty file"):
        load_checkpoint(tmp_path / "c.pt")


def test_a_truncated_checkpoint_is_refused_in_one_line(tmp_path):
    save_checkpoint(tmp_path / "c.pt", {"epoch": 1, "model": {"w": torch.ones(1000)}})
    (tmp_path / "c.pt").write_bytes((tmp_path / "c.pt").read_bytes()[:1500])
    with pytest.raises(CheckpointError, match="not a checkpoint of this project") as info:
        load_checkpoint(tmp_path / "c.pt")
    assert "\n" not in str(info.value)


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(proc.stdout)


def test_the_next_write_removes_temporary_files_of_a_killed_writer_and_keeps_live_ones(tmp_path):
    import os

    orphan = tmp_path / f".last.pt.{_dead_pid()}.abcd1234.tmp"
    orphan.write_bytes(b"x" * 1000)  # what a kill in the middle of save_checkpoint leaves behind
    live = tmp_path / f".best.pt.{os.getpid()}.abcd1234.tmp"
    live.write_bytes(b"y")
    user_file = tmp_path / ".notes.tmp"
    user_file.write_bytes(b"z")
    save_checkpoint(tmp_path / "last.pt", {"epoch": 1})
    assert not orphan.exists()
    assert live.exists() and user_file.exists()
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1


def test_an_unknown_schedule_is_refused_not_run_as_onecycle(tmp_path):
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        _tiny_fit(tmp_path, 1, recipe=replace(CI_COSINE, schedule="linear"))
    assert not (tmp_path / "last.pt").exists()


def test_seconds_per_iteration_leaves_out_validation_and_evaluation(tmp_path, monkeypatch):
    """A fake clock that only validation advances: the per-iteration cost must not see it."""
    from types import SimpleNamespace

    from reference.reporting.run_report import build_report

    _record_lrs(monkeypatch)
    clock = [0.0]
    monkeypatch.setattr("reference.training.fit.time", SimpleNamespace(perf_counter=lambda: clock[0]))

    def slow_validation(*args, **kwargs):
        clock[0] += 100.0
        return 1.0

    monkeypatch.setattr("reference.training.fit.validation_loss", slow_validation)
    monkeypatch.setattr("reference.training.fit.evaluate",
                        lambda *a, **k: SimpleNamespace(stats={"bbox": [0.5]}, named=lambda: {}))
    cfg = FitConfig("tiny", 1, replace(CI_COSINE, epochs=2), epochs=2, seed=0)
    result = fit(_Tiny(), list(range(8)), list(range(4)), cfg, tmp_path)
    timings = build_report(result, {})["timings"]
    assert timings["train_seconds"] == 200.0  # the run's wall time includes validation ...
    assert timings["seconds_per_iteration"] == 0.0  # ... the cost of an iteration does not


def test_worker_processes_load_the_batches_the_main_process_loads():
    """``--workers N``: the same samples in the same batches; only where they are loaded changes."""
    from reference.training.fit import make_loader

    ds = Subset(PennFudanDataset(FIXTURES / "pennfudan" / "val", evaluation()), range(6))
    ids = {}
    for workers in (0, 2):
        loader = make_loader(ds, 2, train=True, seed=3, epoch=1, workers=workers)
        assert loader.num_workers == workers
        ids[workers] = [[int(t["image_id"]) for t in targets] for _, targets in loader]
    assert ids[2] == ids[0] and sorted(i for batch in ids[0] for i in batch) == list(range(6))
