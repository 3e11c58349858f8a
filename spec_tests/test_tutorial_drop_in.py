"""Issue 15, part 1: ``reference.engine.loops`` is a drop-in for the tutorial's ``from engine import train_one_epoch,
evaluate``: the tutorial's loop runs unchanged and prints what the references print (times stripped)."""

from __future__ import annotations

import contextlib
import io
import logging
import re

import pytest
import torch

from reference.engine import loops as engine
from reference.models import SmallConfig, small_maskrcnn
from reference.training.fit import collate_fn
from reference.transforms import tutorial

from spec_tests import references_engine
from spec_tests.conftest import FIXTURES
from spec_tests.tutorial_datasets import TutorialPennFudanV2

# seed 001's training loop, verbatim from "# construct an optimizer" on
TUTORIAL_LOOP = '''
# construct an optimizer
params = [p for p in model.parameters() if p.requires_grad]
optimizer = torch.optim.SGD(
    params,
    lr=0.005,
    momentum=0.9,
    weight_decay=0.0005
)

# and a learning rate scheduler
lr_scheduler = torch.optim.lr_scheduler.StepLR(
    optimizer,
    step_size=3,
    gamma=0.1
)

# let's train it just for 2 epochs
num_epochs = 2

for epoch in range(num_epochs):
    # train for one epoch, printing every 10 iterations
    train_one_epoch(model, optimizer, data_loader, device, epoch, print_freq=10)
    # update the learning rate
    lr_scheduler.step()
    # evaluate on the test dataset
    evaluate(model, data_loader_test, device=device)
'''

TIMES = [
    (re.compile(r"\b(eta|time|data|model_time|evaluator_time): \d[\d:.]*( \(\d[\d.]*\))?"), r"\1: T"),
    (re.compile(r"Total time: \S+ \(\S+ s / it\)"), "Total time: T"),
    (re.compile(r"DONE \(t=[\d.]+s\)\."), "DONE"),
]


def strip_times(text: str) -> list[str]:
    lines = []
    for line in text.splitlines():
        for pattern, repl in TIMES:
            line = pattern.sub(repl, line)
        lines.append(line)
    return lines


def run_tutorial_loop(train_one_epoch, evaluate) -> dict:
    """The setup the tutorial's loop expects (a small Mask R-CNN at half resolution and a few PennFudan-layout
    images, to keep the test short), then the loop. Returns the loop's namespace, with what each call
    returned under ``returned``."""
    torch.manual_seed(0)
    root = FIXTURES / "pennfudan" / "val"
    dataset = TutorialPennFudanV2(root, tutorial(True))
    dataset_test = TutorialPennFudanV2(root, tutorial(False))
    indices = torch.randperm(len(dataset)).tolist()
    dataset = torch.utils.data.Subset(dataset, indices[:4])
    dataset_test = torch.utils.data.Subset(dataset_test, indices[-2:])
    data_loader = torch.utils.data.DataLoader(dataset, batch_size=2, shuffle=True, num_workers=0,
                                              collate_fn=collate_fn)
    data_loader_test = torch.utils.data.DataLoader(dataset_test, batch_size=1, shuffle=False, num_workers=0,
                                                   collate_fn=collate_fn)
    returned: list = []

    def recording(fn):
        return lambda *args, **kwargs: returned.append(fn(*args, **kwargs))

    model = small_maskrcnn(2, config=SmallConfig(image_size=64, max_size=80, proposals_train=64,
                                                 proposals_test=32))
    namespace = {"torch": torch, "model": model, "device": torch.device("cpu"),
                 "data_loader": data_loader, "data_loader_test": data_loader_test,
                 "train_one_epoch": recording(train_one_epoch), "evaluate": recording(evaluate),
                 "returned": returned}
    exec(compile(TUTORIAL_LOOP, "tutorial_loop", "exec"), namespace)
    return namespace


def as_ours(reference_lines: list[str]) -> list[str]:
    """The one deliberate difference: pycocotools' indexing lines come after the pass (our ground truth is
    indexed there), not before the first ``Test:`` line."""
    out, held = [], []
    for line in reference_lines:
        if line in ("creating index...", "index created!"):
            held.append(line)
            continue
        out.append(line)
        if line.startswith("Averaged stats"):
            out += held
            held = []
    return out + held


@pytest.fixture(scope="module")
def printed() -> dict:
    """The loop run once with the references' helpers and once with ours, in a plain script's logging setup
    (no handler anywhere: pytest's own capture handlers taken off the root meanwhile)."""
    root = logging.getLogger()
    handlers, root.handlers = root.handlers, []
    out = {}
    try:
        for name, module in (("theirs", references_engine), ("ours", engine)):
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                namespace = run_tutorial_loop(module.train_one_epoch, module.evaluate)
            out[name], out[f"{name}_returned"] = buf.getvalue(), namespace["returned"]
    finally:
        root.handlers = handlers
    return out


def test_the_tutorial_loop_prints_what_the_references_print(printed):
    theirs, ours = strip_times(printed["theirs"]), strip_times(printed["ours"])
    assert sum(line.startswith("Epoch: [1]  [0/2]") for line in theirs) == 1  # the run printed what we compare
    assert sum(line.startswith("IoU metric: segm") for line in theirs) == 2
    assert ours == as_ours(theirs)


def test_the_returned_records_answer_the_references_attribute_paths(printed, capsys):
    epoch_log, result = printed["ours_returned"][-2:]
    reference_logger, reference_evaluators = printed["theirs_returned"][-2:]
    assert epoch_log.meters["loss"].global_avg == reference_logger.meters["loss"].global_avg
    assert epoch_log.meters["loss"].global_avg == epoch_log.averages["loss"]
    assert epoch_log.loss is epoch_log.meters["loss"]
    assert list(epoch_log.meters) == list(reference_logger.meters)
    assert str(epoch_log).startswith("lr: 0.005000  loss: ")
    assert list(result.coco_eval) == result.iou_types == ["bbox", "segm"]
    for t in ("bbox", "segm"):
        assert list(result.coco_eval[t].stats) == list(reference_evaluators[t].stats)
    result.summarize()
    assert capsys.readouterr().out.splitlines()[0] == "IoU metric: bbox"


def test_with_logging_configured_each_line_goes_once_through_the_applications_handler(capsys):
    from spec_tests.engine.test_engine import LossModel, batches, sgd

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    root = logging.getLogger()
    handler, level = Keep(logging.INFO), root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        model = LossModel()
        engine.train_one_epoch(model, sgd(model), batches(3), "cpu", epoch=0, print_freq=10)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    assert capsys.readouterr().out == ""
    messages = [r.getMessage() for r in records if r.name == "reference.engine.loops.lines"]
    assert [m[:16] for m in messages] == ["Epoch: [0]  [0/3", "Epoch: [0]  [2/3", "Epoch: [0] Total"]


def test_a_level_set_on_the_projects_loggers_silences_the_printed_lines(capsys, monkeypatch):
    from spec_tests.engine.test_engine import LossModel, batches, sgd

    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    monkeypatch.setattr(logging.getLogger("reference"), "level", logging.WARNING)
    model = LossModel()
    engine.train_one_epoch(model, sgd(model), batches(2), "cpu", epoch=0)
    assert capsys.readouterr().out == ""
