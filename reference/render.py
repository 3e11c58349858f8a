"""Pictures: a sample with its boxes, masks and violated rule codes; predictions beside ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image, ImageDraw
from torchvision.transforms.v2 import functional as F
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

from .checkpoint import atomic_write_bytes


def to_uint8_image(image: Any) -> torch.Tensor:
    """Any image the contract accepts (PIL, uint8 or float tensor) as a uint8 [3, H, W] tensor for drawing."""
    if isinstance(image, Image.Image):
        return F.pil_to_tensor(image.convert("RGB"))
    t = image.as_subclass(torch.Tensor).detach().cpu()
    if t.ndim == 2:
        t = t[None]
    if t.shape[0] == 1:
        t = t.expand(3, -1, -1)
    t = t[:3]
    if t.is_floating_point():
        scale = 255.0 if float(t.max()) <= 1.0 else 1.0
        t = (t.nan_to_num(0) * scale).clamp(0, 255).round()
    return t.to(torch.uint8)


def draw_instances(image: torch.Tensor, boxes: torch.Tensor | None, masks: torch.Tensor | None = None,
                   labels: Sequence[str] | None = None, colors: str | Sequence[str] = "lime",
                   scale: int = 1) -> torch.Tensor:
    """Masks at 45% opacity, then boxes with optional label text, on a uint8 [3, H, W] image.

    ``scale`` enlarges the picture first (nearest neighbour), so that small images get legible text.
    """
    out = image.repeat_interleave(scale, -1).repeat_interleave(scale, -2) if scale > 1 else image
    if masks is not None and len(masks):
        m = masks.as_subclass(torch.Tensor).bool().cpu()
        if m.ndim == 4:
            m = m[:, 0]
        if scale > 1:
            m = m.repeat_interleave(scale, -1).repeat_interleave(scale, -2)
        if tuple(m.shape[-2:]) == tuple(out.shape[-2:]):
            out = draw_segmentation_masks(out, m, alpha=0.45, colors=colors if not isinstance(colors, str)
                                          else [colors] * len(m))
    if boxes is not None and len(boxes):
        b = boxes.as_subclass(torch.Tensor).detach().cpu().float() * scale
        finite = torch.isfinite(b).all(dim=1)
        b = b[finite]
        b[:, 2:] = torch.maximum(b[:, 2:], b[:, :2])  # draw_bounding_boxes rejects x2 < x1
        lab = [labels[i] for i in torch.nonzero(finite).flatten().tolist()] if labels is not None else None
        out = draw_bounding_boxes(out, b, labels=lab, colors=colors, width=2 if scale > 1 else 1)
    return out


def with_caption(image: torch.Tensor, lines: Sequence[str], scale: int = 1) -> Image.Image:
    """The image (enlarged ``scale`` times) under a white band holding ``lines`` of text."""
    pil = F.to_pil_image(image)
    if scale != 1:
        pil = pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST)
    band = 12 * len(lines) + 4
    canvas = Image.new("RGB", (max(pil.width, 8 * max((len(s) for s in lines), default=0)), pil.height + band),
                       "white")
    canvas.paste(pil, (0, band))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((2, 2 + 12 * i), line, fill="black")
    return canvas


def save_png(image: Image.Image, path: Path) -> None:
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def render_violations(image: Any, target: Any, codes: Sequence[str], path: Path) -> None:
    """One offending sample: its boxes and masks drawn, the violated codes written above it."""
    img = to_uint8_image(image)
    boxes = target.get("boxes") if isinstance(target, dict) else None
    masks = target.get("masks") if isinstance(target, dict) else None
    ok_boxes = isinstance(boxes, torch.Tensor) and boxes.ndim == 2 and boxes.shape[-1] == 4
    ok_masks = isinstance(masks, torch.Tensor) and masks.ndim == 3
    drawn = draw_instances(img, boxes if ok_boxes else None, masks if ok_masks else None, colors="red", scale=2)
    save_png(with_caption(drawn, sorted(set(codes))), path)


def side_by_side(image: torch.Tensor, target: dict, output: dict, score_threshold: float = 0.5,
                 mask_threshold: float = 0.5, class_names: Sequence[str] | None = None) -> Image.Image:
    """Ground truth (left) and predictions above ``score_threshold`` (right), each with a caption."""
    img = to_uint8_image(image)

    def name(label: int) -> str:
        return class_names[label] if class_names and label < len(class_names) else str(label)

    gt = draw_instances(img, target["boxes"], target.get("masks"),
                        [name(int(label)) for label in target["labels"]], colors="lime", scale=3)
    keep = output["scores"] >= score_threshold
    masks = output.get("masks")
    pred = draw_instances(img, output["boxes"][keep],
                          (masks[keep, 0] > mask_threshold) if masks is not None else None,
                          [f"{name(int(label))} {float(s):.2f}" for label, s in
                           zip(output["labels"][keep], output["scores"][keep])], colors="orange", scale=3)
    left = with_caption(gt, [f"ground truth: {len(target['boxes'])}"])
    right = with_caption(pred, [f"predicted (score >= {score_threshold}): {int(keep.sum())}"])
    canvas = Image.new("RGB", (left.width + right.width + 6, max(left.height, right.height)), "white")
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width + 6, 0))
    return canvas
