"""``tvref evaluate``: COCO evaluation of a checkpoint on a dataset folder."""

from __future__ import annotations

import logging
from pathlib import Path

from ..atomic_io import atomic_write_json
from ..engine.coco_eval import CocoResult
from ..engine.loops import evaluate as evaluate_model
from ..errors import JobError
from ..models import make_box_only, predicts_masks
from ..training.fit import get_recipe, make_loader
from .checkpoints import checkpoint_classes, load_model, resolve_device, short
from .datasets import dataset_classes, dataset_root, num_classes, open_for_recipe, target_keys, validation_folder
from .outputs import check_output_file

log = logging.getLogger(__name__)


def run_evaluate(checkpoint: Path, data: Path, fmt: str | None, device: str, backend: str) -> CocoResult:
    """The checkpoint's model evaluated on ``data`` (its ``val/`` or ``valid/`` subfolder when present) with the
    checkpoint's recipe's evaluation transforms; a model with masks is evaluated on boxes only for data without."""
    dev = resolve_device(device)
    model, state = load_model(checkpoint, dev)
    try:
        recipe = get_recipe(state.get("recipe", "ci"))
    except (ValueError, TypeError) as exc:
        raise JobError(f"{checkpoint}: recipe {short(state.get('recipe'))} is not one of this project's") from exc
    ds = open_for_recipe(validation_folder(data, beside_train=False) or data, fmt, recipe, False)
    classes = num_classes(ds)
    if classes != int(state["num_classes"]):
        raise JobError(f"{data}: {classes} classes, but the model in {checkpoint} has {state['num_classes']}")
    trained, now = checkpoint_classes(state, checkpoint), dataset_classes(ds, classes)
    if trained is not None and now is not None and trained != now:
        log.warning("%s: classes %s, but the model in %s was trained on %s: labels are compared by number",
                    data, now, checkpoint, trained)
    if predicts_masks(model) and "masks" not in target_keys(ds):
        make_box_only(model)
        log.info("%s: the annotations have no masks: evaluating the boxes of the model in %s only (bbox)",
                 dataset_root(ds), checkpoint)
    return evaluate_model(model, make_loader(ds, 4, train=False, seed=0, epoch=0), dev, backend=backend)


def evaluate(checkpoint: Path, data: Path, fmt: str | None = None, device: str = "cpu",
             backend: str = "pycocotools", json_out: Path | None = None) -> CocoResult:
    """:func:`run_evaluate`, with ``json_out`` checked before and the stats written to it after."""
    if json_out is not None:
        check_output_file(json_out, "--json")
    result = run_evaluate(checkpoint, data, fmt, device, backend)
    if json_out is not None:
        atomic_write_json(json_out, {"stats": result.named()})
    return result
