"""The seeds' recipes and transform presets, pinned value by value, each beside the seed text it comes from.

Every value is read from the objects the code uses: the :class:`~reference.training.fit.Recipe` in ``RECIPES``, the
optimizer and scheduler that ``make_optimizer`` / ``make_scheduler`` build on a tiny ``nn.Linear``, the warmup
that ``reference.engine.loops.warmup_scheduler`` builds, and the transform objects ``get_preset`` returns (their
attributes: ``t.p``, ``t.scale``, ...). A drift in any of them fails the default tier.

Every quote (``source: "text"``, registered with :func:`quotes` or carried by a parametrised case) is checked
to occur in its source by :func:`test_quoted_seed_text_occurs_in_the_seed`, after collapsing runs of white
space to one space and reducing Markdown links ``[text](url "title")`` to their text (seed 001 wraps every
name in one). The sources sit in ``shared/`` beside the repository (CI copies it to ``../shared``); where it is
absent only that presence check is skipped, never a value check.

Sources: 000 (older tutorial, Chinese) and 003 (the same, Korean), 001 (newer tutorial), 002 (LabelMe Mask
R-CNN guide), and ``behaviors`` (``shared/reference-behaviors.md``: what torchvision's
``references/detection/engine.py``, which the tutorials import, does; the seeds do not spell its warmup out).

Departures from a seed are pinned as the code has them and marked ``DEPARTURE`` with the code's reason, or
"the code gives no reason". The ``ci`` recipe is not pinned here (its owner pins it).
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from torch import nn
from torchvision.transforms import v2

from reference.engine import loops as engine
from reference.transforms import legacy
from reference.training import fit as training
from reference.engine.loops import EpochLog, warmup_scheduler
from reference.training.fit import RECIPES, FitConfig, make_optimizer, make_scheduler
from reference.transforms import PRESETS, PadSquare, RecomputeArea, ResizeMax, get_preset

# ---------------------------------------------------------------------------------------------------- quotes

SHARED = Path(__file__).resolve().parents[2] / "shared"
SEEDS = SHARED / "seeds"
SOURCES = {
    "000": SEEDS / "000_47941f74860eb7b5.txt",
    "001": SEEDS / "001_05469b70777db946.txt",
    "002": SEEDS / "002_91eb8d6842b64050.txt",
    "003": SEEDS / "003_23c38fd52a6f6448.txt",
    "behaviors": SHARED / "reference-behaviors.md",
}


@dataclass(frozen=True)
class Q:
    """A short verbatim quote of a seed: ``source`` is a key of :data:`SOURCES`."""

    source: str
    text: str

    def __str__(self) -> str:
        return f'{self.source}: "{self.text}"'


QUOTED: list[tuple[str, Q]] = []  # (the test that relies on it, the quote): checked at the end of this file


def quotes(*qs: Q) -> Callable:
    """Register the seed text a test pins (for the presence check) and append it to the test's docstring."""
    def deco(fn: Callable) -> Callable:
        QUOTED.extend((fn.__name__, q) for q in qs)
        fn.__doc__ = (fn.__doc__ or "").rstrip() + "\n\nSeed text:\n" + "\n".join(f"    {q}" for q in qs)
        return fn
    return deco


_LINK = re.compile(r'\[([^\[\]]*)\]\((?:[^()"\s]|\s*"[^"]*")*\)')


def normalise(text: str) -> str:
    """Markdown links to their text, runs of white space to one space."""
    return re.sub(r"\s+", " ", _LINK.sub(r"\1", text)).strip()


@lru_cache(maxsize=None)
def source_text(source: str) -> str:
    return normalise(SOURCES[source].read_text(encoding="utf-8", errors="replace"))


# --------------------------------------------------------------------------------------------------- helpers

TUTORIAL, MILLS = RECIPES["tutorial"], RECIPES["mills"]


def tiny() -> nn.Module:
    """The smallest module with a trainable and a frozen parameter."""
    m = nn.Linear(2, 1)
    m.bias.requires_grad_(False)
    return m


def group(recipe) -> dict[str, Any]:
    """The optimizer's one parameter group as ``make_optimizer`` builds it."""
    return make_optimizer(recipe, tiny()).param_groups[0]


def scheduler(recipe, epochs: int = 10, steps: int = 7):
    return make_scheduler(recipe, make_optimizer(recipe, tiny()), epochs, steps)


def steps(name: str, train: bool) -> list:
    return list(get_preset(name, train).transforms)


def the(kind: type, transforms: list, nth: int = 0):
    found = [t for t in transforms if type(t) is kind]
    assert len(found) > nth, f"no {kind.__name__} #{nth} in {[type(t).__name__ for t in transforms]}"
    return found[nth]


def resize_max_of(transforms: list):
    """Seed 002's ResizeMax: ``v2.Resize(size=None, max_size=N)`` (torchvision >= 0.20) or the fallback."""
    found = [t for t in transforms if isinstance(t, ResizeMax) or (type(t) is v2.Resize and t.size is None)]
    assert len(found) == 1, [type(t).__name__ for t in transforms]
    return found[0]


def square_resize_of(transforms: list) -> v2.Resize:
    found = [t for t in transforms if type(t) is v2.Resize and t.size is not None]
    assert len(found) == 1, [type(t).__name__ for t in transforms]
    return found[0]


# ----------------------------------------------------------------------------------- tutorial (000/001/003)

SGD_000 = Q("000", "optimizer = torch.optim.SGD(params, lr=0.005, momentum=0.9, weight_decay=0.0005)")
SGD_001 = Q("001", "optimizer = torch.optim.SGD( params, lr=0.005, momentum=0.9, weight_decay=0.0005 )")
SGD_003 = Q("003", "optimizer = torch.optim.SGD(params, lr=0.005, momentum=0.9, weight_decay=0.0005)")
STEP_000 = Q("000", "lr_scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.1)")
STEP_001 = Q("001", "lr_scheduler = torch.optim.lr_scheduler.StepLR( optimizer, step_size=3, gamma=0.1 )")
STEP_003 = Q("003", "lr_scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.1)")
LOOP_000 = Q("000", "train_one_epoch(model, optimizer, data_loader, device, epoch, print_freq=10) # 更新学习率 "
                    "lr_scheduler.step()")
LOOP_001 = Q("001", "train_one_epoch(model, optimizer, data_loader, device, epoch, print_freq=10) "
                    "# update the learning rate lr_scheduler.step()")


@quotes(SGD_000, SGD_001, SGD_003)
def test_tutorial_optimizer_is_sgd():
    assert TUTORIAL.optimizer == "sgd"
    assert type(make_optimizer(TUTORIAL, tiny())) is torch.optim.SGD


@quotes(SGD_000, SGD_001, SGD_003)
def test_tutorial_learning_rate_is_0_005():
    assert group(TUTORIAL)["lr"] == 0.005


@quotes(SGD_000, SGD_001, SGD_003)
def test_tutorial_momentum_is_0_9():
    assert group(TUTORIAL)["momentum"] == 0.9


@quotes(SGD_000, SGD_001, SGD_003)
def test_tutorial_weight_decay_is_5e_4():
    assert group(TUTORIAL)["weight_decay"] == 0.0005


@quotes(SGD_000, SGD_001, SGD_003)
def test_tutorial_sgd_is_plain_sgd_without_nesterov_or_dampening():
    """The seeds pass only lr, momentum and weight decay: the rest stay torch's defaults."""
    g = group(TUTORIAL)
    assert g["nesterov"] is False and g["dampening"] == 0


@quotes(Q("000", "params = [p for p in model.parameters() if p.requires_grad]"),
        Q("001", "params = [p for p in model.parameters() if p.requires_grad]"))
def test_optimizers_get_only_the_trainable_parameters():
    """Both recipes. DEPARTURE for mills: seed 002 passes ``model.parameters()`` (every parameter); the code
    gives no reason (frozen parameters have no gradient, so AdamW leaves them alone either way)."""
    for recipe in (TUTORIAL, MILLS):
        model = tiny()
        (params,) = [g["params"] for g in make_optimizer(recipe, model).param_groups]
        assert [id(p) for p in params] == [id(model.weight)]


@quotes(STEP_000, STEP_001, STEP_003)
def test_tutorial_schedule_is_step_lr():
    assert TUTORIAL.schedule == "step"
    assert type(scheduler(TUTORIAL)) is torch.optim.lr_scheduler.StepLR


@quotes(STEP_000, STEP_001, STEP_003)
def test_tutorial_step_lr_step_size_is_3():
    assert scheduler(TUTORIAL).step_size == 3


@quotes(STEP_000, STEP_001, STEP_003)
def test_tutorial_step_lr_gamma_is_0_1():
    assert scheduler(TUTORIAL).gamma == 0.1


@quotes(STEP_000, STEP_001)
def test_tutorial_step_lr_divides_the_rate_by_ten_every_three_epochs():
    """The schedule the two numbers give, epoch by epoch (epochs 0-2 at 0.005, 3-5 at 0.0005, ...)."""
    sched = scheduler(TUTORIAL)
    lrs = []
    for _ in range(10):
        lrs.append(sched.get_last_lr()[0])
        sched.optimizer.step()
        sched.step()
    assert lrs == pytest.approx([0.005] * 3 + [0.0005] * 3 + [0.00005] * 3 + [0.000005])


@quotes(Q("000", "dataset, batch_size=2, shuffle=True, num_workers=4,"),
        Q("001", "dataset, batch_size=2, shuffle=True, num_workers=4,"),
        Q("003", "dataset, batch_size=2, shuffle=True, num_workers=4,"))
def test_tutorial_batch_size_is_2():
    assert TUTORIAL.batch_size == 2


@quotes(Q("000", "num_epochs = 10"), Q("003", "num_epochs = 10"), Q("001", "# let's train it just for 2 epochs "
                                                                           "num_epochs = 2"))
def test_tutorial_trains_10_epochs_as_the_older_tutorial():
    """The translations (000, 003) train 10 epochs, the newer tutorial (001) 2: the recipe follows 000/003,
    the run whose headline numbers (bbox AP 0.799, segm AP 0.761 after 10 epochs) docs/training.md cites."""
    assert TUTORIAL.epochs == 10


@quotes(LOOP_000, LOOP_001, Q("000", "lr_scheduler.step() # 在测试数据集上进行评估 "
                                     "evaluate(model, data_loader_test, device=device)"))
def test_tutorial_evaluates_every_epoch():
    assert TUTORIAL.eval_every == 1


@quotes(LOOP_000, LOOP_001)
def test_tutorial_trains_in_float32():
    """The tutorials call ``train_one_epoch`` without a scaler: no mixed precision."""
    assert TUTORIAL.amp is False


@quotes(Q("000", "from engine import train_one_epoch, evaluate"),
        Q("001", "from engine import train_one_epoch, evaluate"),
        Q("behaviors", "Only in epoch 0: a warmup `torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1/1000, "
                       "total_iters=min(1000, len(data_loader) - 1))`"))
def test_tutorial_keeps_the_references_epoch_0_warmup():
    assert TUTORIAL.warmup is True


@quotes(Q("001", "transforms.append(T.RandomHorizontalFlip(0.5))"),
        Q("001", "dataset = PennFudanDataset('data/PennFudanPed', get_transform(train=True))"))
def test_tutorial_recipe_uses_the_tutorial_preset():
    """The recipe's transforms are seed 001's ``get_transform`` (the ``tutorial`` preset)."""
    assert TUTORIAL.transforms == "tutorial" and TUTORIAL.transforms in PRESETS


# ------------------------------------------------------------------------------------ the references' warmup

WARMUP = Q("behaviors", "Only in epoch 0: a warmup `torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1/1000, "
                        "total_iters=min(1000, len(data_loader) - 1))`, stepped after every optimizer step.")
WARMUP_LOG = Q("behaviors", "With the tutorial's numbers (base lr 0.005, 60 iterations) the first step runs at lr "
                            "5e-06 and the logged lr reads 0.000090 after iteration 0, 0.000936 after iteration 10, "
                            "0.005000 from iteration 58.")


def _sgd(lr: float = 0.005) -> torch.optim.Optimizer:
    return torch.optim.SGD(tiny().parameters(), lr=lr)


@quotes(WARMUP)
def test_warmup_is_linear_lr_from_one_thousandth():
    w = warmup_scheduler(_sgd(), 60)
    assert type(w) is torch.optim.lr_scheduler.LinearLR
    assert w.start_factor == 1.0 / 1000 and w.end_factor == 1.0


@pytest.mark.parametrize("iterations,total", [(2, 1), (60, 59), (1001, 1000), (5000, 1000)])
@quotes(WARMUP)
def test_warmup_lasts_min_1000_or_batches_minus_1_iterations(iterations, total):
    assert warmup_scheduler(_sgd(), iterations).total_iters == total


@quotes(WARMUP)
def test_warmup_with_one_batch_ends_with_epoch_0_instead_of_pinning_the_rate():
    """DEPARTURE (from the references' engine, deliberate): with one batch ``min(1000, 1 - 1) = 0``, and
    ``LinearLR(total_iters=0)`` never leaves its start factor, so the references' rate would stay at 1/1000 for
    the whole run; the code's reason (``warmup_scheduler``'s docstring): "There the warmup lasts one step
    instead (it ends with epoch 0), with a warning"."""
    assert warmup_scheduler(_sgd(), 1).total_iters == 1


@quotes(WARMUP_LOG)
def test_warmup_logs_the_references_learning_rates_on_the_tutorials_numbers():
    opt = _sgd(TUTORIAL.lr)
    w = warmup_scheduler(opt, 60)
    first = opt.param_groups[0]["lr"]
    logged = []
    for _ in range(60):
        opt.step()
        w.step()
        logged.append(f"{opt.param_groups[0]['lr']:.6f}")
    assert first == pytest.approx(5e-6)
    assert (logged[0], logged[10], logged[58], logged[59]) == ("0.000090", "0.000936", "0.005000", "0.005000")


# ------------------------------------------------------------------------------------------- mills (002)

ADAMW = Q("002", "# AdamW optimizer; includes weight decay for regularization "
                 "optimizer = torch.optim.AdamW(model.parameters(), lr=lr)")
LR_002 = Q("002", "# Learning rate for the model lr = 5e-4")
ONECYCLE = Q("002", "lr_scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, "
                    "total_steps=epochs*len(train_dataloader))")
PER_BATCH = Q("002", "loss.backward() optimizer.step() lr_scheduler.step()")


@quotes(ADAMW)
def test_mills_optimizer_is_adamw():
    assert MILLS.optimizer == "adamw"
    assert type(make_optimizer(MILLS, tiny())) is torch.optim.AdamW


@quotes(LR_002, ADAMW)
def test_mills_learning_rate_is_5e_4():
    assert group(MILLS)["lr"] == 5e-4


@quotes(ADAMW)
def test_mills_weight_decay_is_adamws_default_0_01():
    """Seed 002 names weight decay but passes none: AdamW's own default (0.01) applies, and the recipe pins it."""
    assert group(MILLS)["weight_decay"] == 1e-2
    assert inspect.signature(torch.optim.AdamW).parameters["weight_decay"].default == group(MILLS)["weight_decay"]


@quotes(ADAMW)
def test_mills_adamw_keeps_torchs_other_defaults():
    g, default = group(MILLS), torch.optim.AdamW(tiny().parameters(), lr=5e-4).param_groups[0]
    for key in ("betas", "eps", "amsgrad"):
        assert g[key] == default[key], key


@quotes(ONECYCLE)
def test_mills_schedule_is_one_cycle_lr():
    assert MILLS.schedule == "onecycle"
    assert type(scheduler(MILLS)) is torch.optim.lr_scheduler.OneCycleLR


@quotes(ONECYCLE)
def test_mills_one_cycle_peaks_at_the_recipes_learning_rate():
    assert scheduler(MILLS).optimizer.param_groups[0]["max_lr"] == MILLS.lr == 5e-4


@pytest.mark.parametrize("epochs,steps_per_epoch", [(10, 7), (40, 30), (1, 1)])
@quotes(ONECYCLE)
def test_mills_one_cycle_spans_epochs_times_batches(epochs, steps_per_epoch):
    assert scheduler(MILLS, epochs, steps_per_epoch).total_steps == epochs * steps_per_epoch


@quotes(ONECYCLE)
def test_mills_one_cycle_passes_nothing_but_max_lr_and_total_steps():
    """pct_start, annealing, div factors and momentum cycling are OneCycleLR's defaults, as in the seed."""
    ours = scheduler(MILLS, 10, 7)
    ref_opt = torch.optim.AdamW(tiny().parameters(), lr=MILLS.lr, weight_decay=MILLS.weight_decay)
    ref = torch.optim.lr_scheduler.OneCycleLR(ref_opt, max_lr=MILLS.lr, total_steps=70)
    plain = lambda s: {k: v for k, v in s.state_dict().items() if not callable(v)}  # noqa: E731
    assert plain(ours) == plain(ref)
    strip = lambda g: {k: v for k, v in g.items() if k != "params"}  # noqa: E731
    assert strip(ours.optimizer.param_groups[0]) == strip(ref_opt.param_groups[0])


@quotes(Q("002", "# Set the training batch size bs = 4"))
def test_mills_batch_size_is_4():
    assert MILLS.batch_size == 4


@quotes(Q("002", "# Number of training epochs epochs = 40"))
def test_mills_trains_10_epochs_not_the_seeds_40():
    """DEPARTURE: seed 002 trains 40 epochs; the recipe 10. The code gives no reason."""
    assert MILLS.epochs == 10


@quotes(Q("002", "valid_loss = run_epoch(model, valid_dataloader, None, None, device, scaler, epoch, "
                 "is_training=False)"))
def test_mills_validates_every_epoch():
    assert MILLS.eval_every == 1


@quotes(Q("002", "use_scaler=True)"),
        Q("002", "scaler = torch.cuda.amp.GradScaler() if device.type == 'cuda' and use_scaler else None"))
def test_mills_trains_with_mixed_precision():
    assert MILLS.amp is True


@quotes(ONECYCLE)
def test_mills_has_no_warmup_but_one_cycles_own():
    """Seed 002 steps OneCycleLR alone (its rise is the warm-up); the references' epoch-0 LinearLR is off."""
    assert MILLS.warmup is False


@quotes(Q("002", "# Compose transforms for data augmentation data_aug_tfms = transforms.Compose("))
def test_mills_recipe_uses_the_mills_preset():
    assert MILLS.transforms == "mills" and MILLS.transforms in PRESETS


# --------------------------------------------------- schedules and mixed precision through the training loop

class _Ten(torch.utils.data.Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, i):
        return torch.zeros(1), {}


def _run(recipe, monkeypatch, epochs: int = 2):
    """``_set_up`` and one ``_train_epoch`` of ``training.fit`` on a tiny module, ``train_one_epoch`` replaced by
    a recorder (no model runs): what the loop hands the engine and what it steps itself."""
    seen: dict[str, Any] = {}

    def fake_train_one_epoch(net, optimizer, loader, device, epoch, print_freq, scaler, **kw):
        seen.update(kw, loader_batches=len(loader), batch_size=loader.batch_size, scaler=scaler)
        optimizer.step()  # as the engine does before the loop steps a per-epoch schedule
        return EpochLog(averages={"loss": 0.0})

    monkeypatch.setattr(training, "train_one_epoch", fake_train_one_epoch)
    cfg = FitConfig(model_name="tiny", num_classes=2, recipe=recipe, epochs=epochs)
    run = training._set_up(tiny(), _Ten(), cfg)
    before = run.scheduler.last_epoch
    training._train_epoch(run, _Ten(), cfg, 0)
    return run, seen, run.scheduler.last_epoch - before


@quotes(LOOP_000, LOOP_001)
def test_tutorial_step_lr_steps_once_per_epoch_after_training(monkeypatch):
    run, seen, stepped = _run(TUTORIAL, monkeypatch)
    assert seen["iteration_scheduler"] is None and stepped == 1


@quotes(PER_BATCH)
def test_mills_one_cycle_steps_after_every_optimizer_step(monkeypatch):
    """Handed to the engine, which steps it after each optimizer step; the loop itself does not step it.

    DEPARTURE (small): seed 002 skips the scheduler step when the gradient scaler lowered its scale (a skipped
    optimizer step); the engine steps it every iteration. The code gives no reason."""
    run, seen, stepped = _run(MILLS, monkeypatch)
    assert seen["iteration_scheduler"] is run.scheduler and stepped == 0


@quotes(ONECYCLE)
def test_mills_one_cycle_length_is_planned_from_the_loaders_batches(monkeypatch):
    run, seen, _ = _run(MILLS, monkeypatch, epochs=2)
    assert seen["batch_size"] == 4 and seen["loader_batches"] == 3  # 10 samples in batches of 4
    assert run.scheduler.total_steps == 2 * 3


@pytest.mark.parametrize("recipe", [TUTORIAL, MILLS], ids=["tutorial", "mills"])
@quotes(Q("000", "train_one_epoch(model, optimizer, data_loader, device, epoch, print_freq=10)"),
        Q("002", "# Initialize a gradient scaler for mixed-precision training if the device is a CUDA GPU"))
def test_the_engine_gets_the_recipes_warmup_and_batch_size(recipe, monkeypatch):
    _, seen, _ = _run(recipe, monkeypatch)
    assert seen["warmup"] is recipe.warmup and seen["batch_size"] == recipe.batch_size


@quotes(Q("002", "scaler = torch.cuda.amp.GradScaler() if device.type == 'cuda' and use_scaler else None"))
def test_mixed_precision_on_cpu_runs_without_a_scaler_as_seed_002(monkeypatch):
    """Seed 002's condition: a scaler only on CUDA; on the CPU the mills recipe trains in float32."""
    run, seen, _ = _run(MILLS, monkeypatch)
    assert run.scaler is None and seen["scaler"] is None


# -------------------------------------------------------------------------------------- transform presets

@quotes(Q("001", "def get_transform(train):"),
        Q("002", "valid_tfms = transforms.Compose([resize_pad_tfm, final_tfms])"))
def test_the_presets_are_the_four_pinned_here():
    """A new preset fails this test until its transforms are pinned in this file."""
    assert set(PRESETS) == {"tutorial", "tutorial-legacy", "mills", "eval"}


# tutorial (seed 001's v2 get_transform)

FLIP_001 = Q("001", "if train: transforms.append(T.RandomHorizontalFlip(0.5)) "
                    "transforms.append(T.ToDtype(torch.float, scale=True)) transforms.append(T.ToPureTensor())")


@quotes(FLIP_001)
def test_tutorial_preset_training_is_flip_then_float_then_plain_tensors():
    assert [type(t) for t in steps("tutorial", True)] == [v2.RandomHorizontalFlip, v2.ToDtype, v2.ToPureTensor]


@quotes(FLIP_001)
def test_tutorial_preset_flips_with_p_0_5():
    assert the(v2.RandomHorizontalFlip, steps("tutorial", True)).p == 0.5


@pytest.mark.parametrize("train", [True, False])
@quotes(Q("001", "transforms.append(T.ToDtype(torch.float, scale=True))"))
def test_tutorial_preset_converts_to_float_scaled_to_0_1(train):
    t = the(v2.ToDtype, steps("tutorial", train))
    assert t.dtype == torch.float32 and t.scale is True


@quotes(FLIP_001)
def test_tutorial_preset_does_not_flip_at_evaluation():
    assert [type(t) for t in steps("tutorial", False)] == [v2.ToDtype, v2.ToPureTensor]


# tutorial-legacy (seed 000/003's get_transform with the references' transforms.py)

LEGACY_000 = Q("000", "transforms.append(T.PILToTensor()) transforms.append(T.ConvertImageDtype(torch.float)) "
                      "if train: transforms.append(T.RandomHorizontalFlip(0.5))")
LEGACY_003 = Q("003", "transforms.append(T.PILToTensor()) transforms.append(T.ConvertImageDtype(torch.float)) "
                      "if train: # (역자주: 학습시 50% 확률로 학습 영상을 좌우 반전 변환합니다) "
                      "transforms.append(T.RandomHorizontalFlip(0.5))")


@quotes(LEGACY_000, LEGACY_003)
def test_legacy_preset_training_is_to_tensor_then_float_then_flip():
    """The older order: the flip comes last, on the float tensor."""
    assert [type(t) for t in steps("tutorial-legacy", True)] == [legacy.PILToTensor, legacy.ToDtype,
                                                                 legacy.RandomHorizontalFlip]


@quotes(LEGACY_000, LEGACY_003)
def test_legacy_preset_flips_with_p_0_5():
    assert the(legacy.RandomHorizontalFlip, steps("tutorial-legacy", True)).p == 0.5


@pytest.mark.parametrize("train", [True, False])
@quotes(LEGACY_000, LEGACY_003)
def test_legacy_preset_converts_to_float_scaled_like_convert_image_dtype(train):
    """The seed's ``ConvertImageDtype(torch.float)`` is written as the references' later spelling
    ``ToDtype(torch.float, scale=True)``: the same conversion (``ConvertImageDtype`` is ``ToDtype`` with
    ``scale=True`` in :mod:`reference.transforms.legacy`)."""
    t = the(legacy.ToDtype, steps("tutorial-legacy", train))
    assert t.dtype == torch.float32 and t.scale is True
    spelled = legacy.ConvertImageDtype(torch.float)
    assert (spelled.dtype, spelled.scale) == (t.dtype, t.scale)


@quotes(LEGACY_000)
def test_legacy_preset_does_not_flip_at_evaluation():
    assert [type(t) for t in steps("tutorial-legacy", False)] == [legacy.PILToTensor, legacy.ToDtype]


# eval (001's get_transform(train=False), for training too)

@pytest.mark.parametrize("train", [True, False])
@quotes(Q("001", "dataset_test = PennFudanDataset('data/PennFudanPed', get_transform(train=False))"),
        Q("001", "transforms.append(T.ToDtype(torch.float, scale=True)) transforms.append(T.ToPureTensor())"))
def test_eval_preset_is_float_and_plain_tensors_only(train):
    ts = steps("eval", train)
    assert [type(t) for t in ts] == [v2.ToDtype, v2.ToPureTensor]
    assert ts[0].dtype == torch.float32 and ts[0].scale is True


# mills (seed 002)

TRAIN_SZ = Q("002", "# Set training image size train_sz = 512")
IOU = Q("002", "iou_crop = CustomRandomIoUCrop(min_scale=0.3, max_scale=1.0, min_aspect_ratio=0.5, "
               "max_aspect_ratio=2.0, sampler_options=[0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0], trials=400, "
               "jitter_factor=0.25)")
JITTER = Q("002", "transforms.ColorJitter( brightness = (0.875, 1.125), contrast = (0.5, 1.5), "
                  "saturation = (0.5, 1.5), hue = (-0.05, 0.05), ),")
SANITIZE = Q("002", "transforms.SanitizeBoundingBoxes(),")
NO_REASON = "the code gives no reason"


@dataclass(frozen=True)
class Pin:
    """One parameter of one transform of the mills preset: ``read`` takes the preset's transform list."""

    id: str
    read: Callable[[list], Any]
    value: Any
    quotes: tuple[Q, ...]
    departure: str = ""  # the seed's value and the code's reason, when the code departs


MILLS_TRAIN_PINS = [
    Pin("iou_crop_min_scale", lambda ts: the(v2.RandomIoUCrop, ts).min_scale, 0.5, (IOU,),
        f"seed 002: min_scale=0.3; {NO_REASON}"),
    Pin("iou_crop_max_scale", lambda ts: the(v2.RandomIoUCrop, ts).max_scale, 1.0, (IOU,)),
    Pin("iou_crop_min_aspect_ratio", lambda ts: the(v2.RandomIoUCrop, ts).min_aspect_ratio, 0.5, (IOU,)),
    Pin("iou_crop_max_aspect_ratio", lambda ts: the(v2.RandomIoUCrop, ts).max_aspect_ratio, 2.0, (IOU,)),
    Pin("iou_crop_sampler_options", lambda ts: list(the(v2.RandomIoUCrop, ts).options),
        [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0], (IOU,)),
    Pin("iou_crop_trials", lambda ts: the(v2.RandomIoUCrop, ts).trials, 20, (IOU,),
        f"seed 002: trials=400; {NO_REASON}"),
    Pin("iou_crop_has_no_jitter_factor", lambda ts: hasattr(the(v2.RandomIoUCrop, ts), "jitter_factor"), False,
        (IOU,), "seed 002's CustomRandomIoUCrop (cjm_torchvision_tfms) takes jitter_factor=0.25; torchvision's "
        "v2.RandomIoUCrop has none, so crops never cut into boxes by a jitter (the preset's docstring still says "
        f"'IoU crop with jitter'); {NO_REASON}"),
    Pin("resize_max_longest_side", lambda ts: resize_max_of(ts).max_size, 160,
        (TRAIN_SZ, Q("002", "resize_max = ResizeMax(max_sz=train_sz)")), f"seed 002: train_sz = 512; {NO_REASON}"),
    Pin("pad_square_shift", lambda ts: the(PadSquare, ts).shift, True,
        (Q("002", "pad_square = PadSquare(shift=True, fill=0)"),)),
    Pin("pad_square_fill", lambda ts: the(PadSquare, ts).fill, 0,
        (Q("002", "pad_square = PadSquare(shift=True, fill=0)"),
         Q("002", "We must use a scalar value for the `fill` parameter when applying the `PadSquare` transform to "
                  "images with segmentation masks."))),
    Pin("square_resize_size", lambda ts: list(square_resize_of(ts).size), [160, 160],
        (TRAIN_SZ, Q("002", "transforms.Resize([train_sz] * 2, antialias=True)")),
        f"seed 002: [512, 512]; {NO_REASON}"),
    Pin("square_resize_antialias", lambda ts: square_resize_of(ts).antialias, True,
        (Q("002", "transforms.Resize([train_sz] * 2, antialias=True)"),)),
    Pin("flip_p", lambda ts: the(v2.RandomHorizontalFlip, ts).p, 0.5,
        (Q("002", "transforms.RandomHorizontalFlip(p=0.5),"),)),
    Pin("color_jitter_brightness", lambda ts: tuple(the(v2.ColorJitter, ts).brightness), (0.8, 1.2), (JITTER,),
        f"seed 002: (0.875, 1.125); {NO_REASON}"),
    Pin("color_jitter_contrast", lambda ts: tuple(the(v2.ColorJitter, ts).contrast), (0.8, 1.2), (JITTER,),
        f"seed 002: (0.5, 1.5); {NO_REASON}"),
    Pin("color_jitter_saturation", lambda ts: tuple(the(v2.ColorJitter, ts).saturation), (0.8, 1.2), (JITTER,),
        f"seed 002: (0.5, 1.5); {NO_REASON}"),
    Pin("color_jitter_hue", lambda ts: tuple(the(v2.ColorJitter, ts).hue), (-0.05, 0.05), (JITTER,)),
    Pin("grayscale_p", lambda ts: the(v2.RandomGrayscale, ts).p, 0.1,
        (Q("002", "transforms.RandomGrayscale(),"),
         Q("002", "Randomly convert image or videos to grayscale with a probability of p (default 0.1)."))),
    Pin("equalize_p", lambda ts: the(v2.RandomEqualize, ts).p, 0.1, (Q("002", "transforms.RandomEqualize(),"),),
        f"seed 002: RandomEqualize() with torchvision's default p=0.5; {NO_REASON}"),
    Pin("posterize_bits", lambda ts: the(v2.RandomPosterize, ts).bits, 4,
        (Q("002", "transforms.RandomPosterize(bits=3, p=0.5),"),), f"seed 002: bits=3; {NO_REASON}"),
    Pin("posterize_p", lambda ts: the(v2.RandomPosterize, ts).p, 0.1,
        (Q("002", "transforms.RandomPosterize(bits=3, p=0.5),"),), f"seed 002: p=0.5; {NO_REASON}"),
    Pin("sanitize_min_size", lambda ts: [t.min_size for t in ts if type(t).__name__ in
                                         ("SanitizeBoundingBoxes", "_SanitizeInstances")], [1.0, 1.0], (SANITIZE,),
        "seed 002 sanitises once, at the end; the code also right after the crop, citing the seed's own rule "
        "(seed 002: 'Always use the SanitizeBoundingBoxes transform to clean up annotations after using data "
        "augmentations that alter bounding boxes')"),
    Pin("to_dtype_float32_scaled", lambda ts: (the(v2.ToDtype, ts).dtype, the(v2.ToDtype, ts).scale),
        (torch.float32, True), (Q("002", "transforms.ToDtype(torch.float32, scale=True),"),)),
]
for _pin in MILLS_TRAIN_PINS:
    QUOTED.extend((f"test_mills_training_preset_parameter[{_pin.id}]", q) for q in _pin.quotes)


@pytest.mark.parametrize("pin", MILLS_TRAIN_PINS, ids=[p.id for p in MILLS_TRAIN_PINS])
def test_mills_training_preset_parameter(pin: Pin):
    """Each parameter of the mills training pipeline; ``pin.quotes`` hold the seed text, ``pin.departure`` the
    seed's value and the code's reason where the code departs."""
    assert pin.read(steps("mills", True)) == pin.value, (pin.id, [str(q) for q in pin.quotes], pin.departure)


def test_mills_equalize_departure_is_against_torchvisions_default_p():
    """The equalize departure's premise: the seed's bare ``RandomEqualize()`` means torchvision's default p."""
    assert inspect.signature(v2.RandomEqualize).parameters["p"].default == 0.5


@quotes(Q("002", "data_aug_tfms = transforms.Compose( transforms=[ iou_crop, transforms.ColorJitter("),
        Q("002", "transforms.RandomPosterize(bits=3, p=0.5), transforms.RandomHorizontalFlip(p=0.5), ], )"),
        Q("002", "resize_pad_tfm = transforms.Compose([ resize_max, pad_square, transforms.Resize([train_sz] * 2, "
                 "antialias=True) ])"),
        Q("002", "final_tfms = transforms.Compose([ transforms.ToImage(), transforms.ToDtype(torch.float32, "
                 "scale=True), transforms.SanitizeBoundingBoxes(), ])"),
        Q("002", "train_tfms = transforms.Compose([ data_aug_tfms, resize_pad_tfm, final_tfms ])"))
def test_mills_training_preset_order():
    """The code's order, pinned. DEPARTURE: seed 002 runs crop, colour jitter, grayscale, equalize, posterize,
    flip, then ResizeMax, PadSquare, Resize, then ToImage, ToDtype, SanitizeBoundingBoxes. The code resizes and
    pads right after the crop and applies flip and photometric noise to the small square image ({no}); it
    sanitises after the crop too (the seed's own rule, see the sanitize pin), recomputes ``area`` after the
    geometric steps (``RecomputeArea``: "Box area after geometric transforms, which leave ``area`` as it was"),
    and ends with ``ToPureTensor`` where the seed starts its final step with ``ToImage`` (the seed feeds PIL
    images)."""
    names = [type(t).__name__ for t in steps("mills", True)]
    resize_max_name = type(resize_max_of(steps("mills", True))).__name__
    sanitize = "SanitizeBoundingBoxes" if "SanitizeBoundingBoxes" in names else "_SanitizeInstances"
    assert names == ["RandomIoUCrop", sanitize, resize_max_name, "PadSquare", "Resize", "RandomHorizontalFlip",
                     "ColorJitter", "RandomGrayscale", "RandomEqualize", "RandomPosterize", sanitize,
                     RecomputeArea.__name__, "ToDtype", "ToPureTensor"]


test_mills_training_preset_order.__doc__ = test_mills_training_preset_order.__doc__.replace("{no}", NO_REASON)

VALID = Q("002", "valid_tfms = transforms.Compose([resize_pad_tfm, final_tfms])")


@quotes(VALID, Q("002", "resize_pad_tfm = transforms.Compose([ resize_max, pad_square, "
                        "transforms.Resize([train_sz] * 2, antialias=True) ])"))
def test_mills_evaluation_preset_resizes_pads_and_converts_only():
    """DEPARTURE: the seed validates through ``final_tfms`` too (with ``SanitizeBoundingBoxes``); the code's
    evaluation pipeline has no sanitising step. {no}."""
    assert [type(t) for t in steps("mills", False)] == [type(resize_max_of(steps("mills", False))), PadSquare,
                                                        v2.Resize, v2.ToDtype, v2.ToPureTensor]


test_mills_evaluation_preset_resizes_pads_and_converts_only.__doc__ = (
    test_mills_evaluation_preset_resizes_pads_and_converts_only.__doc__.replace("{no}", NO_REASON.capitalize()))


@quotes(TRAIN_SZ, Q("002", "resize_max = ResizeMax(max_sz=train_sz)"),
        Q("002", "transforms.Resize([train_sz] * 2, antialias=True)"))
def test_mills_evaluation_preset_size_is_160():
    """DEPARTURE: seed 002's train_sz = 512 (for validation too); the code's ``mills(train, size=160)``.
    The code gives no reason (its bundled data is 160x128)."""
    ts = steps("mills", False)
    assert resize_max_of(ts).max_size == 160
    assert list(square_resize_of(ts).size) == [160, 160] and square_resize_of(ts).antialias is True


@quotes(Q("002", "pad_square = PadSquare(shift=True, fill=0)"), VALID)
def test_mills_evaluation_pads_centred_not_shifted():
    """DEPARTURE: the seed validates with the same ``pad_square`` (``shift=True``: a random offset); the code
    centres the image at evaluation (``PadSquare()``), so evaluation is deterministic. The code gives no reason
    beyond ``PadSquare``'s docstring ("``shift=True`` places the image at a random offset instead of the
    centre")."""
    pad = the(PadSquare, steps("mills", False))
    assert pad.shift is False and pad.fill == 0


@quotes(Q("002", "transforms.ToDtype(torch.float32, scale=True),"))
def test_mills_evaluation_preset_converts_to_float_scaled():
    t = the(v2.ToDtype, steps("mills", False))
    assert t.dtype == torch.float32 and t.scale is True


# ------------------------------------------------------------------------- the quotes occur in the seeds

def test_every_registered_test_exists():
    """Each quote's owner is a test of this module (a renamed test keeps its quotes)."""
    names = {n for n in globals() if n.startswith("test_")}
    assert {owner.split("[")[0] for owner, _ in QUOTED} <= names


@pytest.mark.parametrize("owner,quote", QUOTED, ids=[f"{o}:{q.source}:{q.text[:40]}" for o, q in QUOTED])
def test_quoted_seed_text_occurs_in_the_seed(owner: str, quote: Q):
    path = SOURCES[quote.source]
    if not path.is_file():
        pytest.skip(f"{path} not found: shared/ is not beside the repository (CI copies it to ../shared); only "
                    "this quote-presence check is skipped, the value checks ran")
    assert normalise(quote.text) in source_text(quote.source), f"{owner}: {quote} not found in {path.name}"


def test_engine_is_the_module_the_training_loop_calls():
    """The warmup pinned above is the one the loop uses: ``training`` trains through ``reference.engine.loops``."""
    assert training.train_one_epoch is engine.train_one_epoch
