"""Pictures: a sample with its boxes, masks and violated rule codes; predictions beside ground truth.

Every instance gets its own colour from a fixed palette (so overlapping instances stay apart and the same
picture comes out every time), and text is sized to the picture it is drawn on.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw, ImageFont
from torchvision.transforms.v2 import functional as F
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

from ..atomic_io import atomic_write_bytes

log = logging.getLogger(__name__)

RGB = tuple[int, int, int]

# Saturated colours far apart in hue and lightness, in an order where neighbours differ most (instances with
# adjacent indices are often the ones that overlap). Beyond its length the palette repeats.
PALETTE: tuple[RGB, ...] = (
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25), (145, 30, 180), (70, 240, 240),
    (245, 130, 48), (240, 50, 230), (128, 128, 0), (0, 0, 128), (170, 255, 195), (128, 0, 0),
    (210, 245, 60), (0, 128, 128), (250, 190, 212), (170, 110, 40),
)

# DejaVu Sans: bundled with matplotlib (a dependency), and the usual sans font on Linux desktops and servers
_FONT_FILE = "DejaVuSans.ttf"


def instance_colors(count: int) -> list[RGB]:
    """One colour per instance, ``PALETTE`` in order (repeating after its length)."""
    return [PALETTE[i % len(PALETTE)] for i in range(count)]


def text_color_on(background: RGB) -> RGB:
    """Black on light backgrounds, white on dark ones (ITU-R BT.601 luma)."""
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b >= 140 else (255, 255, 255)


def font_file() -> str | None:
    """A TrueType file for picture text: matplotlib's bundled DejaVu Sans, else the system's; None when neither
    exists (text is then drawn with Pillow's default font)."""
    spec = importlib.util.find_spec("matplotlib")  # locates the package without importing it
    if spec is not None and spec.origin:
        bundled = Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf" / _FONT_FILE
        if bundled.is_file():
            return str(bundled)
    try:
        return str(ImageFont.truetype(_FONT_FILE, 10).path)  # Pillow searches the system's font folders
    except OSError:
        return None


def load_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The label font at ``size`` pixels: DejaVu Sans, else Pillow's default font (scalable from Pillow 10.1;
    a fixed small bitmap before that)."""
    path = font_file()
    if path is not None:
        return ImageFont.truetype(path, size)
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        log.warning("no TrueType font found and Pillow < 10.1: picture text stays at Pillow's small default size")
        return ImageFont.load_default()


def text_size_for(height: int, width: int) -> int:
    """Font size in pixels for text on a picture of this size: 5% of its short side, 14 to 40 pixels (on the
    demo's 480 x 384 pictures, capitals 1.6 times as tall as with torchvision's default label font)."""
    return max(14, min(40, round(0.05 * min(height, width))))


def upscale_for(height: int, width: int, target: int = 480) -> int:
    """How many times to enlarge a picture (nearest neighbour) so that its long side reaches about ``target``."""
    return max(1, target // max(height, width, 1))


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


def draw_tags(image: torch.Tensor, boxes: torch.Tensor, tags: Sequence[str | None], colors: Sequence[RGB],
              size: int, margin: int) -> torch.Tensor:
    """Each tag as text on a filled rectangle of its box's colour at the box's top-left corner (inside the box,
    as draw_bounding_boxes(fill_labels=True) places them), moved left or up where it would leave the picture,
    so that tags of boxes at the right or bottom edge stay whole; a tag wider than the picture is cut short
    with an ellipsis."""
    pil = F.to_pil_image(image)
    draw = ImageDraw.Draw(pil)
    font = load_font(size)
    for box, tag, color in zip(boxes.to(torch.int64).tolist(), tags, colors):
        if not tag:
            continue
        left, top, right, bottom = draw.textbbox((0, 0), tag, font=font)
        while len(tag) > 1 and right - left > pil.width - 5:
            tag = tag[:-2].rstrip() + "\N{HORIZONTAL ELLIPSIS}"
            left, top, right, bottom = draw.textbbox((0, 0), tag, font=font)
        # the filled rectangle spans x - 1 to x + width + 1: kept one pixel clear of every edge
        x = max(2, min(box[0] + margin, pil.width - (right - left) - 3))
        y = max(2, min(box[1] + margin, pil.height - (bottom - top) - 3))
        draw.rectangle((x - 1, y - 1, x + right - left + 1, y + bottom - top + 1), fill=color)
        draw.text((x - left, y - top), tag, fill=text_color_on(color), font=font)
    return F.pil_to_tensor(pil)


def draw_instances(image: torch.Tensor, boxes: torch.Tensor | None, masks: torch.Tensor | None = None,
                   labels: Sequence[str] | None = None, colors: Sequence[RGB] | None = None,
                   scale: int = 1) -> torch.Tensor:
    """Masks at 45% opacity (draw_segmentation_masks, one mask at a time), then boxes (draw_bounding_boxes) and
    their label text on a tag of the box's colour (:func:`draw_tags`), on a uint8 [3, H, W] image. Instance
    ``i`` (its box, mask and tag) gets ``colors[i]``, by default ``PALETTE[i]``.

    ``scale`` enlarges the picture first (nearest neighbour), so that small images get legible text; text is
    sized to the enlarged picture (:func:`text_size_for`).
    """
    out = image.repeat_interleave(scale, -1).repeat_interleave(scale, -2) if scale > 1 else image
    height, width = out.shape[-2:]
    count = max(len(boxes) if boxes is not None else 0, len(masks) if masks is not None else 0)
    palette = list(colors or [])[:count] + instance_colors(count)[len(colors or []):]
    if masks is not None and len(masks):
        m = masks.as_subclass(torch.Tensor).bool().cpu()
        if m.ndim == 4:
            m = m[:, 0]
        if scale > 1:
            m = m.repeat_interleave(scale, -1).repeat_interleave(scale, -2)
        if tuple(m.shape[-2:]) == (height, width):
            # one call per mask: overlaps blend both colours on every torchvision (0.16 paints the last mask's
            # colour over the overlap, newer releases blacken it)
            for one, color in zip(m, palette):
                out = draw_segmentation_masks(out, one[None], alpha=0.45, colors=[color])
    if boxes is None or not len(boxes):
        return out
    b = boxes.as_subclass(torch.Tensor).detach().cpu().float() * scale
    finite = torch.isfinite(b).all(dim=1)
    kept = torch.nonzero(finite).flatten().tolist()
    if not kept:
        return out
    b = b[finite]
    b[:, 2:] = torch.maximum(b[:, 2:], b[:, :2])  # draw_bounding_boxes rejects x2 < x1
    box_colors = [palette[i] for i in kept]
    line = max(2, round(min(height, width) / 160))
    out = draw_bounding_boxes(out, b, colors=box_colors, width=line)
    if labels is not None:
        out = draw_tags(out, b, [labels[i] for i in kept], box_colors, text_size_for(height, width), line + 1)
    return out


def with_caption(image: torch.Tensor, lines: Sequence[str], scale: int = 1) -> Image.Image:
    """The image (enlarged ``scale`` times) under a white band holding ``lines`` of text, sized to the image
    and wrapped to its width (never narrower than 360 pixels)."""
    pil = F.to_pil_image(image)
    if scale != 1:
        pil = pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST)
    size = text_size_for(pil.height, pil.width)
    font = load_font(size)
    width = max(pil.width, 360)
    per_line = max(20, int((width - 8) / max(font.getlength("0"), 1)))
    wrapped = [part for line in lines for part in (textwrap.wrap(line, per_line, subsequent_indent="  ") or [""])]
    step = size + size // 3
    band = step * len(wrapped) + 6 if wrapped else 0
    canvas = Image.new("RGB", (width, pil.height + band), "white")
    canvas.paste(pil, (0, band))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(wrapped):
        draw.text((4, 3 + step * i), line, fill="black", font=font)
    return canvas


def save_png(image: Image.Image, path: Path) -> None:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def _instance_count(target: Any) -> int:
    """How many instances the target's boxes (else masks, else labels) hold; 0 when none has a usable length."""
    for key in ("boxes", "masks", "labels"):
        value = target.get(key) if isinstance(target, dict) else None
        if isinstance(value, torch.Tensor) and value.ndim >= 1:
            return int(value.shape[0])
    return 0


def violation_lines(violations: Sequence[Any], instances: int, index: int | None = None) -> list[str]:
    """The caption of a validator picture: a summary line, then one line per finding, those about an instance
    first and by instance number ("instance 2 (boxes[2]): BOX_DEGENERATE [error] ..."). Findings are
    :class:`~reference.contract.Violation` records, or bare code strings (listed as they come)."""
    head = f"sample {index}: " if index is not None else ""
    found = list(dict.fromkeys(violations))  # drop exact repeats, keep order
    lines = [f"{head}{instances} instance{'s' * (instances != 1)}, "
             + (f"{len(found)} finding{'s' * (len(found) != 1)}" if found else "no findings")]

    def order(v: Any) -> tuple[int, int]:
        instance = getattr(v, "instance", None)
        return (0, instance) if instance is not None else (1, 0)

    for v in sorted(found, key=order):
        if isinstance(v, str):
            lines.append(v)
            continue
        severity = getattr(v.severity, "value", v.severity)
        if v.instance is not None:
            where = f"instance {v.instance} ({v.field}[{v.instance}])" if v.field else f"instance {v.instance}"
        else:
            where = f"sample ({v.field})" if v.field else "sample"
        lines.append(f"{where}: {v.code} [{severity}] {v.message}")
    return lines


def instance_tags(violations: Sequence[Any], count: int) -> list[str]:
    """Box tags for a validator picture: ``#i``, followed by the codes instance ``i`` broke."""
    codes: dict[int, list[str]] = {}
    for v in violations:
        instance = getattr(v, "instance", None)
        if instance is not None and v.code not in codes.setdefault(instance, []):
            codes[instance].append(v.code)
    return [" ".join([f"#{i}", *codes.get(i, [])]) for i in range(count)]


def render_violations(image: Any, target: Any, violations: Sequence[Any], path: Path,
                      index: int | None = None) -> None:
    """One sample as the validator saw it: each instance in its own colour, tagged ``#i`` and the codes it
    broke, under a caption listing every finding by instance (see :func:`violation_lines`). ``violations`` may
    be empty: a clean sample is drawn with "no findings"."""
    img = to_uint8_image(image)
    boxes = target.get("boxes") if isinstance(target, dict) else None
    masks = target.get("masks") if isinstance(target, dict) else None
    ok_boxes = isinstance(boxes, torch.Tensor) and boxes.ndim == 2 and boxes.shape[-1] == 4
    ok_masks = isinstance(masks, torch.Tensor) and masks.ndim == 3
    count = _instance_count(target)
    scale = upscale_for(*img.shape[-2:])
    drawn = draw_instances(img, boxes if ok_boxes else None, masks if ok_masks else None,
                           instance_tags(violations, max(count, len(boxes) if ok_boxes else 0)), scale=scale)
    save_png(with_caption(drawn, violation_lines(violations, count, index)), path)


def side_by_side(image: torch.Tensor, target: dict, output: dict, score_threshold: float = 0.5,
                 mask_threshold: float = 0.5, class_names: Sequence[str] | None = None) -> Image.Image:
    """Ground truth (left) and predictions above ``score_threshold`` (right), each instance in its own colour
    and tagged with its class name (and score), each half with a caption."""
    img = to_uint8_image(image)
    scale = upscale_for(*img.shape[-2:])

    def name(label: int) -> str:
        return class_names[label] if class_names and 0 <= label < len(class_names) else str(label)

    gt = draw_instances(img, target["boxes"], target.get("masks"),
                        [name(int(label)) for label in target["labels"]], scale=scale)
    keep = output["scores"] >= score_threshold
    masks = output.get("masks")
    pred = draw_instances(img, output["boxes"][keep],
                          (masks[keep, 0] > mask_threshold) if masks is not None else None,
                          [f"{name(int(label))} {float(s):.2f}" for label, s in
                           zip(output["labels"][keep], output["scores"][keep])], scale=scale)
    left = with_caption(gt, [f"ground truth: {len(target['boxes'])}"])
    right = with_caption(pred, [f"predicted (score >= {score_threshold}): {int(keep.sum())}"])
    canvas = Image.new("RGB", (left.width + right.width + 6, max(left.height, right.height)), "white")
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width + 6, 0))
    return canvas
