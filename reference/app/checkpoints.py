"""The device a command runs on, and the model a checkpoint of this project holds."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from ..errors import JobError, first_line
from ..models import (BUILDERS, build_model, freeze_batchnorm, has_frozen_batchnorm, is_box_only_state,
                      make_box_only)
from ..training.checkpoint import CheckpointError, load_checkpoint

log = logging.getLogger(__name__)

MAX_CLASSES = 100_000  # a head this wide is a corrupted checkpoint, not a model


def resolve_device(name: str) -> torch.device:
    """The device ``--device name`` asks for; a JobError when it is unknown or not on this machine."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise JobError("--device cuda: CUDA is not available on this machine")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise JobError("--device mps: MPS is not available on this machine")
    if name not in ("cpu", "cuda", "mps") and not name.startswith("cuda:"):
        raise JobError(f"--device {name!r}: choose cpu, cuda or mps")
    return torch.device(name)


def short(value: Any) -> str:
    """``repr(value)``, cut to 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."


def load_model(checkpoint: Path, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The model a checkpoint was trained as, with its weights, in eval mode on ``device``, and the checkpoint's
    state; refuses files that are not checkpoints."""
    try:
        state = load_checkpoint(checkpoint)
    except CheckpointError as exc:
        raise JobError(str(exc)) from exc
    name, classes = state.get("model_name"), state.get("num_classes")
    if not isinstance(name, str) or name not in BUILDERS:
        raise JobError(f"{checkpoint}: model_name {short(name)} is not one of {', '.join(BUILDERS)}")
    if not isinstance(classes, int) or isinstance(classes, bool) or not 2 <= classes <= MAX_CLASSES:
        raise JobError(f"{checkpoint}: num_classes {short(classes)} is not a whole number from 2 to {MAX_CLASSES}")
    if not isinstance(state.get("model"), dict):
        raise JobError(f"{checkpoint}: holds no model weights ('model' is {type(state.get('model')).__name__})")
    try:
        model = build_model(name, classes)
        if is_box_only_state(state["model"], model):  # trained on targets without masks
            make_box_only(model)
        if has_frozen_batchnorm(state["model"], model):  # fine-tuned from pretrained weights
            freeze_batchnorm(model.backbone.body)
        model.load_state_dict(state["model"])
    except Exception as exc:  # noqa: BLE001 - whatever does not fit, in one line naming the file
        raise JobError(f"{checkpoint}: its weights do not fit {name} with {classes} classes "
                       f"({type(exc).__name__}: {first_line(exc, 200)})") from exc
    return model.to(device).eval(), state


def checkpoint_classes(state: dict[str, Any], where: Path | None = None) -> list[str] | None:
    """The class names a checkpoint recorded (background first), or None: checkpoints from before class names
    were recorded, or a ``classes`` entry that is not one name per class (logged, and labels stay numbers)."""
    names, count = state.get("classes"), state.get("num_classes")
    if names is None:
        return None
    if isinstance(names, list) and all(isinstance(n, str) for n in names) and len(names) == count:
        return names
    log.warning("%s: classes %s is not one name for each of its %s classes; labels are shown as numbers",
                where or "checkpoint", short(names), short(count))
    return None
