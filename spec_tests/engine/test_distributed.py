"""Two gloo processes under torchrun agree with one process (evaluation and the training step)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from reference.engine.loops import evaluate
from reference.training.fit import make_loader

from spec_tests.conftest import ROOT
from spec_tests.dist_worker import MeanModel, eval_dataset, eval_model, step_batch

pytestmark = pytest.mark.extended  # three interpreters per torchrun launch: the extended tier

# Gradients are averaged by an all-reduce in float32: the sum of two halves may round differently from the
# whole batch's, by a few ulps.
GRAD_TOL = 1e-6


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist") / "rank0.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "spec_tests" / "dist_worker.py"), str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_two_processes_evaluate_to_the_same_stats_as_one(two_process_run):
    assert two_process_run["world_size"] == 2
    single = evaluate(eval_model(), make_loader(eval_dataset(), 2, train=False, seed=0, epoch=0), "cpu")
    assert 0.2 < single.stats["bbox"][0] < 0.9  # a score that every image's detections move
    assert two_process_run["stats"] == single.stats


def test_a_ddp_step_gives_the_gradients_of_one_process_with_the_combined_batch(two_process_run):
    model = MeanModel()
    model(step_batch()).backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(torch.tensor(two_process_run["grads"][name]), p.grad, rtol=0, atol=GRAD_TOL)


def test_train_command_runs_under_torchrun_and_only_rank_zero_writes(tmp_path):
    data = tmp_path / "data"
    from reference.testing.synthetic import generate

    # one batch of two images and one validation image per rank: what is checked is who writes, not training
    generate("pennfudan", data / "train", count=4, seed=1)
    generate("pennfudan", data / "val", count=2, seed=2)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "reference",
           "--quiet", "train", "--data", str(data), "--out", str(out), "--epochs", "1", "--print-freq", "100"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("checkpoint:") == 1
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["epoch"] == 1
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "best.pt", "checkpoint.json", "history.png", "last.pt", "report.json", "report.md"]
