"""Benchmarks (pytest-benchmark). Speed is asserted only as a ratio against a baseline timed in the same
process; the figures land in the benchmark JSON (``extra_info``) and the README quotes them from there.

Timing noise: each side is the minimum of several interleaved rounds, which on an otherwise idle 2-core
machine varies by a few percent; the tolerances below are wider than that and say why.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, Subset

from reference import gate
from reference.contract import validate_dataset, validate_sample
from reference.datasets import PennFudanDataset
from reference.engine import evaluate, train_one_epoch, to_device
from reference.jobs import TrainOptions, run_train
from reference.models import build_model
from reference.synthetic import generate
from reference.training import collate_fn, get_recipe
from reference.transforms import evaluation, get_preset, tutorial

from .conftest import FIXTURES
from .references_way import references_evaluate
from .tutorial_datasets import TutorialPennFudanV2

pytestmark = pytest.mark.benchmark_run


def interleaved_minimums(fns, rounds: int = 5) -> list[float]:
    """Minimum wall time of each function over ``rounds`` rounds, run alternately to share any drift."""
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for k, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - start)
    return best


def _iterate(ds):
    for i in range(len(ds)):
        ds[i]


@pytest.fixture(scope="module")
def pennfudan_sized(tmp_path_factory) -> Path:
    """PennFudan-sized scenes (the real images are about 300-500 px a side), 40 of them."""
    return generate("pennfudan", tmp_path_factory.mktemp("pfbig"), count=40, seed=21, size=(416, 320))


def paired_median_ratio(base, fn, rounds: int = 15) -> float:
    """Median over rounds of time(fn) / time(base), each pair run back to back."""
    ratios = []
    for _ in range(rounds):
        start = time.perf_counter()
        base()
        middle = time.perf_counter()
        fn()
        ratios.append((time.perf_counter() - middle) / (middle - start))
    return statistics.median(ratios)


def test_validation_costs_at_most_ten_percent_more_than_iterating(benchmark, pennfudan_sized):
    ds = PennFudanDataset(pennfudan_sized)
    ratio = paired_median_ratio(lambda: _iterate(ds), lambda: validate_dataset(ds, num_classes=2))
    small = PennFudanDataset(FIXTURES / "pennfudan" / "train")
    small_ratio = paired_median_ratio(lambda: _iterate(small), lambda: validate_dataset(small), rounds=5)
    benchmark.extra_info.update(validate_over_iterate=round(ratio, 3),
                                validate_over_iterate_160x128_fixture=round(small_ratio, 3))
    benchmark.pedantic(validate_dataset, args=(ds,), rounds=3, iterations=1)
    # Target: at most 10% more. The median of paired ratios scatters by a few percent between runs on an
    # idle 2-core machine (measured 1.086-1.095 for the same code), so the assertion allows 5% on top.
    assert ratio <= 1.15, f"validation costs {ratio:.2f}x iterating on 416x320 images"


def test_pennfudan_getitem_is_not_slower_than_the_tutorial_class(benchmark):
    root = FIXTURES / "pennfudan" / "train"
    ours, theirs = PennFudanDataset(root), TutorialPennFudanV2(root)
    a, b = interleaved_minimums([lambda: _iterate(ours), lambda: _iterate(theirs)], rounds=7)
    benchmark.extra_info.update(ours_over_tutorial=round(a / b, 3), samples_per_second=round(len(ours) / a, 1),
                                tutorial_samples_per_second=round(len(ours) / b, 1))
    benchmark.pedantic(_iterate, args=(ours,), rounds=3, iterations=1)
    assert a / b <= 1.10, f"PennFudanDataset takes {a / b:.2f}x the tutorial class's time (10% timing slack)"


def test_get_height_and_width_is_far_cheaper_than_decoding(benchmark):
    ds = PennFudanDataset(FIXTURES / "pennfudan" / "train")
    header, decode = interleaved_minimums([lambda: [ds.get_height_and_width(i) for i in range(len(ds))],
                                           lambda: [ds[i][0].shape for i in range(len(ds))]])
    benchmark.extra_info.update(header_over_decode=round(header / decode, 4))
    benchmark.pedantic(lambda: [ds.get_height_and_width(i) for i in range(len(ds))], rounds=3, iterations=1)
    assert header / decode < 0.2


@pytest.fixture(scope="module")
def trained_small_model():
    """A small Mask R-CNN with a few epochs of training, so evaluation sees realistic detections."""
    train = PennFudanDataset(FIXTURES / "pennfudan" / "train", tutorial(True))
    loader = DataLoader(torch.utils.data.Subset(train, range(64)), batch_size=4, shuffle=True, collate_fn=collate_fn,
                        generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = build_model("small_maskrcnn", 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    for epoch in range(3):
        train_one_epoch(model, opt, loader, "cpu", epoch, print_freq=1000)
    return model.eval()


@pytest.fixture(scope="module")
def tutorial_split(tmp_path_factory):
    """The tutorial's evaluation split on PennFudan-sized data: 50 of 170 416x320 scenes, as a ``Subset``."""
    root = generate("pennfudan", tmp_path_factory.mktemp("pf170"), count=170, seed=21, size=(416, 320))
    order = torch.randperm(170, generator=torch.Generator().manual_seed(0)).tolist()
    return Subset(PennFudanDataset(root, evaluation()), order[-50:])


@pytest.mark.parametrize("split", ["bundled-val", "tutorial-split-416x320"])
def test_evaluation_is_faster_than_the_references_way_with_identical_stats(benchmark, trained_small_model, split,
                                                                           request):
    """Ours against :func:`references_evaluate` (the references' steps, timed one by one), with the loader
    ``tvref evaluate`` uses (batches of 4, torch's thread count kept). ``bundled-val`` is the default
    validation split (40 images, 160x128); ``tutorial-split-416x320`` is where the references' whole-dataset
    ground-truth rebuild costs the most: a 50-image ``Subset`` of 170 PennFudan-sized images."""
    if split == "bundled-val":
        ds = PennFudanDataset(FIXTURES / "pennfudan" / "val", evaluation())
    else:
        ds = request.getfixturevalue("tutorial_split")
    loader = DataLoader(ds, batch_size=4, collate_fn=collate_fn)
    results = {}

    def ours():
        results["ours"] = evaluate(trained_small_model, loader, "cpu")

    def theirs():
        results["theirs"] = references_evaluate(trained_small_model, ds)

    a, b = interleaved_minimums([ours, theirs], rounds=3 if split == "bundled-val" else 2)
    steps = results["theirs"]
    assert results["ours"].stats == steps.stats
    threads = torch.get_num_threads()
    ceiling = steps.best_possible_speedup(threads)
    benchmark.extra_info.update(
        speedup_over_references=round(b / a, 3), seconds=round(a, 3), references_seconds=round(b, 3),
        threads=threads, best_possible_speedup=round(ceiling, 2), share_of_ceiling=round(b / a / ceiling, 3),
        references_steps={k: round(getattr(steps, k), 3)
                          for k in ("ground_truth", "loading", "inference", "per_batch_cocoeval", "accumulate")})
    benchmark.pedantic(ours, rounds=1, iterations=1)
    # Measured alone on 2 cores: 1.9-2.0x (ceiling 2.3x) on bundled-val, 2.4-2.5x (ceiling 2.95x) on the
    # tutorial split. The threshold sits 30% under the lower figure, for scatter and for a busy machine
    # (pytest -n 2 runs two tests at once, and ours needs both cores where the references' way uses one).
    assert b / a >= 1.35, f"evaluation took {a:.3f}s, the references' way {b:.3f}s (ceiling {ceiling:.2f}x)"


def test_training_iterations_are_as_fast_as_a_plain_loop(benchmark):
    ds = PennFudanDataset(FIXTURES / "pennfudan" / "train", tutorial(False))
    batches = list(DataLoader(torch.utils.data.Subset(ds, range(32)), batch_size=4, collate_fn=collate_fn))
    torch.manual_seed(0)
    model = build_model("small_maskrcnn", 2)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def engine():
        train_one_epoch(model, opt, batches, "cpu", epoch=1, print_freq=1000)

    def plain():
        model.train()
        for images, targets in batches:
            images, targets = to_device(images, targets, torch.device("cpu"))
            loss = sum(model(images, targets).values())
            opt.zero_grad()
            loss.backward()
            opt.step()

    ours, base = interleaved_minimums([engine, plain], rounds=3)
    benchmark.extra_info.update(throughput_ratio=round(base / ours, 3),
                                seconds_per_iteration=round(ours / len(batches), 4))
    benchmark.pedantic(engine, rounds=1, iterations=1)
    assert base / ours >= 0.95, f"train_one_epoch runs at {base / ours:.3f} of a plain loop's throughput"


@pytest.mark.parametrize("preset", ["tutorial", "mills"])
def test_transform_preset_cost_per_sample(benchmark, preset):
    ds = PennFudanDataset(FIXTURES / "pennfudan" / "train")
    samples = [ds[i] for i in range(32)]
    transform = get_preset(preset, train=True)
    torch.manual_seed(0)

    def run():
        return [transform(image, target) for image, target in samples]

    (seconds,) = interleaved_minimums([run], rounds=3)
    outputs = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(ms_per_sample=round(seconds / len(samples) * 1e3, 3))
    errors = [v for image, target in outputs for v in validate_sample(image, target, num_classes=2, model_ready=True)
              if v.severity == "error"]
    assert errors == []


def test_ci_recipe_reaches_the_accuracy_gate(benchmark, tmp_path):
    """The headline run: the small Mask R-CNN, the ci recipe, the bundled data, 2 CPU cores, random init."""
    checks = gate.gate_for("ci")
    reached = {}

    def on_epoch(rec):
        done = gate.check_gate(None, checks)
        if rec.bbox_ap is not None and "seconds" not in reached:
            values = {"bbox AP": rec.bbox_ap, "segm AP": rec.segm_ap}
            done = [replace(c, actual=values.get(c.metric)) for c in checks]
            if all(c.passed for c in done):
                reached["epoch"] = rec.epoch
        reached.setdefault("elapsed", 0.0)
        reached["elapsed"] += rec.seconds
        if "epoch" in reached and "seconds" not in reached:
            reached["seconds"] = reached["elapsed"]

    def train():
        return run_train(TrainOptions(data=FIXTURES / "pennfudan", out=tmp_path, recipe="ci", print_freq=1000),
                         on_epoch=on_epoch)

    result, report = benchmark.pedantic(train, rounds=1, iterations=1)
    final = gate.assert_gate(result.final, checks)
    benchmark.extra_info.update(
        bbox_ap=round(result.final.stats["bbox"][0], 4), segm_ap=round(result.final.stats["segm"][0], 4),
        seconds_per_iteration=report["timings"]["seconds_per_iteration"], iterations=result.iterations,
        train_seconds=report["timings"]["train_seconds"], seconds_to_gate=round(reached.get("seconds", -1), 1),
        epochs=get_recipe("ci").epochs, torch=torch.__version__)
    assert all(c.passed for c in final)
