"""``tvref predict``: a checkpoint's predictions on one image, drawn to a PNG."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..contract import class_name
from ..errors import JobError
from ..reporting.render import save_png, upscale_for, with_caption
from .checkpoints import checkpoint_classes, load_model, resolve_device
from .outputs import check_output_file


@dataclass(frozen=True)
class Prediction:
    """How many detections passed the score threshold, and the PNG they were drawn to."""

    detections: int
    out: Path

    def line(self) -> str:
        return f"{self.detections} detections drawn to {self.out}"


def detection_labels(labels: torch.Tensor, scores: torch.Tensor, names: list[str] | None) -> list[str]:
    """``"<class name> <score>"`` for each detection; the label id stands in where there are no names."""
    return [f"{class_name(int(lab), names)} {float(s):.2f}" for lab, s in zip(labels, scores)]


def predict(checkpoint: Path, image: Path, out: Path, score_threshold: float = 0.5, mask_threshold: float = 0.5,
            device: str = "cpu") -> Prediction:
    """Draw the predictions for one image file, labelled with the checkpoint's class names (class ids for a
    checkpoint without them); ``out`` must not be the input."""
    from torchvision.transforms.v2 import functional as F

    from ..data.images import read_rgb
    from ..reporting import render

    check_output_file(out, "--out", not_same_as=image)
    dev = resolve_device(device)
    model, state = load_model(checkpoint, dev)
    try:
        img = read_rgb(image)
    except ValueError as exc:
        raise JobError(str(exc)) from exc
    x = F.to_dtype(img, torch.float32, scale=True)
    with torch.inference_mode():
        output = {k: v.cpu() for k, v in model([x.to(dev)])[0].items()}
    keep = output["scores"] >= score_threshold
    masks = output.get("masks")
    # Mask R-CNN pastes masks at the input resolution already; resize in case the input was transformed
    if masks is not None and tuple(masks.shape[-2:]) != tuple(img.shape[-2:]):
        masks = F.resize(masks, list(img.shape[-2:]))
    names = checkpoint_classes(state, checkpoint)
    drawn = render.draw_instances(img, output["boxes"][keep], (masks[keep, 0] > mask_threshold)
                                  if masks is not None else None,
                                  detection_labels(output["labels"][keep], output["scores"][keep], names),
                                  scale=upscale_for(*img.shape[-2:]))
    save_png(with_caption(drawn, [f"{int(keep.sum())} detections, score >= {score_threshold}"]), out)
    return Prediction(int(keep.sum()), out)
