"""The benchmark tier (``pytest -m benchmark_run``, ``tox -e bench``; never part of the default tier).

Each benchmark asserts only that both sides computed the same thing; speed is reported, as ratios against a
baseline timed in the same process, in the benchmark JSON's ``extra_info``. ``ci/compare_benchmarks.py``
compares those ratios with ``ci/benchmark_baseline.json``, whose thresholds come from the scatter of
recorded runs. Where two things are compared, both do the same work: same weights, same data, same loader.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import statistics
import sys
import time
import timeit
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Subset

from reference.testing import golden
from reference.contract import validate_dataset, validate_sample
from reference.data import PennFudanDataset, open_dataset
from reference.engine.loops import evaluate, train_one_epoch, to_device
from reference.app.train import TrainOptions, run_train
from reference.models import build_model
from reference.testing.synthetic import generate
from reference.training.fit import collate_fn, get_recipe
from reference.transforms import evaluation, get_preset, tutorial

from spec_tests.conftest import FIXTURES, ROOT
from spec_tests.references_way import references_evaluate
from spec_tests.tutorial_datasets import TutorialPennFudanV2

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


def test_validation_cost_over_iterating(benchmark, pennfudan_sized):
    ds = PennFudanDataset(pennfudan_sized)
    ratio = paired_median_ratio(lambda: _iterate(ds), lambda: validate_dataset(ds, num_classes=2))
    small = PennFudanDataset(FIXTURES / "pennfudan" / "train")
    small_ratio = paired_median_ratio(lambda: _iterate(small), lambda: validate_dataset(small), rounds=5)
    benchmark.extra_info.update(validate_over_iterate=round(ratio, 3),
                                validate_over_iterate_160x128_fixture=round(small_ratio, 3))
    report = benchmark.pedantic(validate_dataset, args=(ds,), rounds=3, iterations=1)
    assert report.samples == len(ds)


def test_pennfudan_getitem_against_the_tutorial_class(benchmark):
    root = FIXTURES / "pennfudan" / "train"
    ours, theirs = PennFudanDataset(root), TutorialPennFudanV2(root)
    a, b = interleaved_minimums([lambda: _iterate(ours), lambda: _iterate(theirs)], rounds=7)
    benchmark.extra_info.update(ours_over_tutorial=round(a / b, 3), samples_per_second=round(len(ours) / a, 1),
                                tutorial_samples_per_second=round(len(ours) / b, 1))
    benchmark.pedantic(_iterate, args=(ours,), rounds=3, iterations=1)
    for i in range(len(ours)):  # both sides did the same work: the same samples
        assert torch.equal(ours[i][1]["boxes"], theirs[i][1]["boxes"]), i


def test_get_height_and_width_against_decoding(benchmark):
    ds = PennFudanDataset(FIXTURES / "pennfudan" / "train")
    header, decode = interleaved_minimums([lambda: [ds.get_height_and_width(i) for i in range(len(ds))],
                                           lambda: [ds[i][0].shape for i in range(len(ds))]])
    benchmark.extra_info.update(header_over_decode=round(header / decode, 4))
    sizes = benchmark.pedantic(lambda: [ds.get_height_and_width(i) for i in range(len(ds))], rounds=3, iterations=1)
    assert sizes == [tuple(ds[i][0].shape[-2:]) for i in range(len(ds))]


@pytest.fixture(scope="module")
def trained_small_model():
    """The golden checkpoint (the ``ci`` recipe's small Mask R-CNN), so evaluation sees realistic detections."""
    return golden.trained_model()


@pytest.fixture(scope="module")
def tutorial_split(tmp_path_factory):
    """The tutorial's evaluation split on PennFudan-sized data: 50 of 170 416x320 scenes, as a ``Subset``."""
    root = generate("pennfudan", tmp_path_factory.mktemp("pf170"), count=170, seed=21, size=(416, 320))
    order = torch.randperm(170, generator=torch.Generator().manual_seed(0)).tolist()
    return Subset(PennFudanDataset(root, evaluation()), order[-50:])


@pytest.mark.parametrize("split", ["bundled-val", "tutorial-split-416x320"])
def test_evaluation_against_the_references_way_with_identical_stats(benchmark, trained_small_model, split, request):
    """Ours against :func:`references_evaluate` (the references' steps, timed one by one, one image per
    batch). Ours is timed twice: with the same loader as the references (batch 1) and with the loader
    ``tvref evaluate`` uses (batch 4); both ratios are reported. ``bundled-val`` is the default validation
    split (40 images, 160x128); ``tutorial-split-416x320`` is where the references' whole-dataset ground-truth
    rebuild costs the most: a 50-image ``Subset`` of 170 PennFudan-sized images."""
    if split == "bundled-val":
        ds = PennFudanDataset(FIXTURES / "pennfudan" / "val", evaluation())
    else:
        ds = request.getfixturevalue("tutorial_split")
    loaders = {size: DataLoader(ds, batch_size=size, collate_fn=collate_fn) for size in (1, 4)}
    results = {}

    def ours(size):
        def run():
            results[size] = evaluate(trained_small_model, loaders[size], "cpu")
        return run

    def theirs():
        results["theirs"] = references_evaluate(trained_small_model, ds)

    same, batched, base = interleaved_minimums([ours(1), ours(4), theirs], rounds=3 if split == "bundled-val" else 2)
    steps = results["theirs"]
    assert results[1].stats == steps.stats
    assert results[4].stats == steps.stats
    threads = torch.get_num_threads()
    ceiling = steps.best_possible_speedup(threads)
    benchmark.extra_info.update(
        speedup_same_loader=round(base / same, 3), speedup_over_references=round(base / batched, 3),
        seconds_batch_1=round(same, 3), seconds=round(batched, 3), references_seconds=round(base, 3),
        threads=threads, best_possible_speedup=round(ceiling, 2),
        references_steps={k: round(getattr(steps, k), 3)
                          for k in ("ground_truth", "loading", "inference", "per_batch_cocoeval", "accumulate")})
    benchmark.pedantic(ours(4), rounds=1, iterations=1)


def test_training_iterations_against_a_plain_loop(benchmark):
    """``train_one_epoch`` against the plainest loop doing the same work: every call starts from the same
    weights, optimizer state and RNG state (the RPN and RoI samplers draw from it) on the same batches, so
    both sides run identical iterations and only the engine's bookkeeping differs."""
    ds = PennFudanDataset(FIXTURES / "pennfudan" / "train", tutorial(False))
    batches = list(DataLoader(torch.utils.data.Subset(ds, range(32)), batch_size=4, collate_fn=collate_fn))
    torch.manual_seed(0)
    model = build_model("small_maskrcnn", 2)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    start_model, start_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    finals = {}

    def reset():
        model.load_state_dict(start_model)
        opt.load_state_dict(start_opt)
        torch.manual_seed(1)

    def engine():
        reset()
        log = train_one_epoch(model, opt, batches, "cpu", epoch=1, print_freq=1000)
        finals["engine"] = [round(it["loss"], 6) for it in log.iterations]

    def plain():
        reset()
        model.train()
        losses = []
        for images, targets in batches:
            images, targets = to_device(images, targets, torch.device("cpu"))
            loss = sum(model(images, targets).values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(round(float(loss), 6))
        finals["plain"] = losses

    ours, base = interleaved_minimums([engine, plain], rounds=3)
    assert finals["engine"] == finals["plain"], "the two sides did not run the same iterations"
    benchmark.extra_info.update(throughput_ratio=round(base / ours, 3),
                                seconds_per_iteration=round(ours / len(batches), 4))
    benchmark.pedantic(engine, rounds=1, iterations=1)


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


def test_ci_recipe_training_time(benchmark, tmp_path):
    """The main job's training (the ``ci`` recipe fine-tuning the pretrained stand-in on the bundled data) timed
    end to end: every epoch over every training image, then the final evaluation; its AP is reported (the
    accuracy gate itself runs in the default tier, ``test_demo.py``)."""
    recipe = get_recipe("ci")
    train_images = len(list((FIXTURES / "pennfudan" / "train" / "PNGImages").glob("*.png")))

    def train():
        return run_train(TrainOptions(data=FIXTURES / "pennfudan", out=tmp_path, recipe="ci", weights="standin",
                                      print_freq=1000))

    result, report = benchmark.pedantic(train, rounds=1, iterations=1)
    # what was timed is the whole run: no epoch, batch or the evaluation left out
    assert len(result.history) == recipe.epochs
    assert result.iterations == recipe.epochs * math.ceil(train_images / recipe.batch_size)
    assert result.final is not None and set(result.final.stats) == {"bbox", "segm"}
    benchmark.extra_info.update(
        bbox_ap=round(result.final.stats["bbox"][0], 4), segm_ap=round(result.final.stats["segm"][0], 4),
        seconds_per_iteration=report["timings"]["seconds_per_iteration"], iterations=result.iterations,
        train_seconds=report["timings"]["train_seconds"], epochs=recipe.epochs, torch=torch.__version__)


# ``python -m reference --help`` in a fresh interpreter, then (stderr's last line) the torch modules it loaded
HELP_THEN_LOADED_MODULES = """
import runpy, sys
sys.argv = ["tvref", "--help"]
try:
    runpy.run_module("reference", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
print("loaded:", sorted({m.split(".")[0] for m in sys.modules} & {"torch", "torchvision"}), file=sys.stderr)
"""


def test_help_starts_without_loading_torch(benchmark):
    """``tvref --help`` (issue 15 asks for under 1 s): a fresh interpreter printing the parser's help, beside a
    fresh interpreter that only imports torch, the cost the lazy imports avoid. Times reported, not gated; what
    is asserted is that printing the help loads neither torch nor torchvision."""
    import subprocess

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], capture_output=True, text=True, check=True)

    help_s, torch_s = interleaved_minimums([lambda: run("-c", HELP_THEN_LOADED_MODULES),
                                            lambda: run("-c", "import torch, torchvision")], rounds=5)
    benchmark.extra_info.update(help_seconds=round(help_s, 3), import_torch_seconds=round(torch_s, 3))
    done = benchmark.pedantic(run, args=("-c", HELP_THEN_LOADED_MODULES), rounds=3, iterations=1)
    assert "usage: tvref" in done.stdout
    loaded = done.stderr.strip().splitlines()[-1]
    assert loaded == "loaded: []", f"tvref --help {loaded}"


def _ci_script(name: str):
    """A script of ``ci/`` imported as a module (it puts ``ci/`` on the path for its own imports)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "ci" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def scale_coco(tmp_path_factory) -> tuple[Path, list[Path], list[tuple[int, int]]]:
    """200 generated 640x480 scenes of ``ci/validate_scale.py`` (COCO, polygon masks): the folder, its image
    files in the annotation file's order and their declared (width, height)."""
    scale = _ci_script("validate_scale")
    folder = scale.generate(tmp_path_factory.mktemp("scale200"), 200, seed=0, size=(640, 480))
    images = json.loads(scale.annotation_file(folder).read_text())["images"]
    return (folder, [folder / "images" / scale.SUBSET / im["file_name"] for im in images],
            [(im["width"], im["height"]) for im in images])


def _header_sizes(paths: list[Path]) -> list[tuple[int, int]]:
    out = []
    for p in paths:
        with Image.open(p) as im:
            out.append(im.size)
    return out


def _decoded_shapes(paths: list[Path]) -> list[tuple[int, ...]]:
    """Each file decoded (every pixel, as the decoding path decodes it); its (H, W, bands)."""
    out = []
    for p in paths:
        with Image.open(p) as im:
            im.load()
            out.append((im.height, im.width, len(im.getbands())))
    return out


def test_validation_of_a_coco_folder_over_plain_loops(benchmark, scale_coco):
    """The validation bounds, in one process (no workers): ``validate_dataset(headers_only=True)`` over a loop that
    only reads each file's header (``Image.open(p).size``), and the decoding ``validate_dataset`` over a loop
    that only decodes each file, on the same 200 files, and the part of that loop's time that measuring the
    polygon masks alone takes (the quick check's pycocotools RLEs). Both sides start from an opened dataset and a
    list of paths; the ratios are reported (lower is better, 1.0 is the bound)."""
    folder, paths, declared = scale_coco
    ds = open_dataset(folder)
    reports = {}

    def fast():
        reports["headers"] = validate_dataset(ds, headers_only=True, workers=0)

    def full():
        reports["decoding"] = validate_dataset(ds, workers=0)

    headers = paired_median_ratio(lambda: _header_sizes(paths), fast, rounds=15)
    decoding = paired_median_ratio(lambda: _decoded_shapes(paths), full, rounds=5)
    # the part of the decoding path's extra time that is measuring the polygon masks (pycocotools' RLEs)
    groups, sizes = ds.annotations, [ds.get_height_and_width(i) for i in range(len(ds))]
    masks = paired_median_ratio(lambda: _decoded_shapes(paths), lambda: ds._mask_extents(groups, sizes), rounds=5)
    polygons = sum(len(a["_segm"]) for g in groups for a in g if isinstance(a["_segm"], list))
    per_polygon = min(timeit.repeat(lambda: ds._mask_extents(groups, sizes), number=1, repeat=5)) / polygons
    assert _header_sizes(paths) == declared  # both sides saw the same files
    assert _decoded_shapes(paths) == [(h, w, 3) for w, h in declared]
    assert reports["headers"].to_dict() == reports["decoding"].to_dict()
    assert reports["decoding"].samples == len(paths) and reports["decoding"].to_dict()["summary"]["errors"] == 0
    benchmark.extra_info.update(headers_only_over_header_loop=round(headers, 3),
                                validate_over_decode_loop=round(decoding, 3), images=len(paths),
                                mask_measuring_over_decode_loop=round(masks, 3), polygons=polygons,
                                mask_us_per_polygon=round(per_polygon * 1e6, 1))
    report = benchmark.pedantic(validate_dataset, args=(ds,), kwargs={"headers_only": True, "workers": 0},
                                rounds=3, iterations=1)
    assert report.samples == len(paths)
