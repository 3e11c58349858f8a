"""Pictures (#15): a colour per instance, label text sized to the picture, validator pictures that say which
instance broke which rule, clean samples drawn with --render-all, and whole-number epoch ticks on the history
plot. Pictures are decoded and their pixels read; nothing here trains a model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.utils import draw_bounding_boxes

from reference.reporting import render
from reference.cli import main
from reference.contract import validate_dataset
from reference.reporting.run_report import history_figure

from spec_tests.conftest import FIXTURES

GREY = 128


def _grey(height: int, width: int) -> torch.Tensor:
    return torch.full((3, height, width), GREY, dtype=torch.uint8)


def _overlapping_sample() -> tuple[torch.Tensor, dict]:
    """A 48 x 64 image with two overlapping instances (0 and 1) and a third whose box is flipped (x2 < x1)
    and whose label is the background."""
    masks = torch.zeros(3, 48, 64, dtype=torch.uint8)
    masks[0, 8:32, 8:32] = 1
    masks[1, 16:44, 20:50] = 1
    masks[2, 4:14, 48:60] = 1
    target = {"boxes": torch.tensor([[8.0, 8, 32, 32], [20, 16, 50, 44], [60, 4, 48, 14]]),
              "labels": torch.tensor([1, 1, 0]), "masks": masks, "image_id": 0,
              "area": torch.tensor([576.0, 840, 120]), "iscrowd": torch.zeros(3, dtype=torch.int64)}
    return _grey(48, 64).float() / 255, target


def _image_part(picture: Image.Image, height: int, width: int) -> np.ndarray:
    """The drawn image inside a captioned picture: bottom-left, ``upscale_for`` times the sample's size."""
    scale = render.upscale_for(height, width)
    pixels = np.asarray(picture.convert("RGB"))
    return pixels[pixels.shape[0] - height * scale:, :width * scale]


def _text_rows(pixels: np.ndarray, box: tuple[int, int, int, int], inset: int) -> int:
    """Height in pixels of the white text drawn inside ``box`` (rows holding a near-white pixel), ``inset``
    pixels in from the box's edges so that its outline is left out."""
    x1, y1, x2, y2 = box
    inside = pixels[y1 + inset:y2 - inset, x1 + inset:x2 - inset]
    rows = np.nonzero((inside.min(axis=2) > 200).any(axis=1))[0]
    return int(rows.max() - rows.min() + 1) if len(rows) else 0


def _tagged(height: int, width: int, text: str = "Person 0.97") -> int:
    """Text height of one tag drawn by draw_instances on a grey picture of this size (blue box: white text)."""
    box = (4, 4, width - 4, height - 4)
    drawn = render.draw_instances(_grey(height, width), torch.tensor([box], dtype=torch.float32),
                                  labels=[text], colors=[(0, 0, 255)])
    return _text_rows(drawn.permute(1, 2, 0).numpy(), box, inset=render.text_size_for(height, width) // 4)


def test_overlapping_instances_get_different_colours_in_the_saved_picture(tmp_path):
    image, target = _overlapping_sample()
    render.render_violations(image, target, [], tmp_path / "s.png")
    with Image.open(tmp_path / "s.png") as picture:
        pixels = _image_part(picture, 48, 64).astype(int)
    scale = render.upscale_for(48, 64)
    only_first = pixels[12 * scale, 12 * scale]  # inside mask 0, outside mask 1 and clear of the tags
    only_second = pixels[40 * scale, 40 * scale]  # inside mask 1 only
    overlap = pixels[26 * scale, 26 * scale]
    background = np.array([GREY] * 3)
    assert np.abs(only_first - background).sum() > 60 and np.abs(only_second - background).sum() > 60
    assert np.abs(only_first - only_second).sum() > 60, (only_first, only_second)
    assert np.abs(overlap - only_first).sum() > 30 and np.abs(overlap - only_second).sum() > 30


def test_each_instance_is_drawn_in_its_palette_colour():
    image, target = _overlapping_sample()
    drawn = render.draw_instances(render.to_uint8_image(image), None, target["masks"][:2]).permute(1, 2, 0)
    for i, (y, x) in enumerate([(12, 12), (40, 40)]):
        expected = 0.55 * GREY + 0.45 * np.array(render.PALETTE[i])
        assert np.abs(drawn[y, x].numpy() - expected).max() <= 1, (i, drawn[y, x], expected)


def test_label_text_is_at_least_half_again_as_tall_as_torchvisions_default():
    box = (4, 4, 476, 380)  # a demo picture: a 160 x 128 sample enlarged 3 times
    old = draw_bounding_boxes(_grey(384, 480), torch.tensor([box], dtype=torch.float32), labels=["Person 0.97"],
                              colors="white")
    old_height = _text_rows(old.permute(1, 2, 0).numpy(), box, inset=2)
    new_height = _tagged(384, 480)
    assert old_height > 0 and new_height >= 1.5 * old_height, (old_height, new_height)


def test_label_text_grows_with_the_picture():
    small, large = _tagged(320, 320), _tagged(640, 640)
    assert small > 0 and large >= small * 1.5, (small, large)


def test_label_text_is_drawn_at_size_without_a_truetype_file(monkeypatch):
    with_font = _tagged(480, 480)
    monkeypatch.setattr(render, "font_file", lambda: None)
    without = _tagged(480, 480)
    assert without >= 0.7 * with_font and without > 10, (with_font, without)


def test_a_tag_at_the_right_edge_stays_whole_inside_the_picture():
    width = 200
    box = torch.tensor([[190.0, 20, 199, 60]])
    drawn = render.draw_instances(_grey(100, width), box, labels=["pedestrian 0.99"], colors=[(0, 0, 255)])
    pixels = drawn.permute(1, 2, 0).numpy()
    white_columns = np.nonzero((pixels[20:60].min(axis=2) > 200).any(axis=0))[0]
    font = render.load_font(render.text_size_for(100, width))
    assert white_columns.max() < width - 1
    assert white_columns.max() - white_columns.min() + 1 >= 0.85 * font.getlength("pedestrian 0.99")


def test_a_tag_wider_than_the_picture_is_cut_short_inside_it():
    box = torch.tensor([[10.0, 10, 40, 40]])
    tag = "#2 BOX_DEGENERATE LABEL_BACKGROUND MASK_BOX_MISMATCH"
    drawn = render.draw_instances(_grey(120, 160), box, labels=[tag], colors=[(0, 0, 255)])
    pixels = drawn.permute(1, 2, 0).numpy().astype(int)
    blue = (pixels[..., 2] > 200) & (pixels[..., :2].max(axis=2) < 60)
    assert blue[:, 100:150].any()  # the tag runs on past the box
    assert not blue[:, -1].any() and not blue[:, 0].any()


@pytest.fixture
def drawn(monkeypatch) -> dict[str, list]:
    """What render_violations hands on: the box tags drawn and the caption lines."""
    seen: dict[str, list] = {"tags": [], "caption": []}
    draw_instances, with_caption = render.draw_instances, render.with_caption

    def record_tags(image, boxes, masks=None, labels=None, *args, **kwargs):
        seen["tags"].append(list(labels or []))
        return draw_instances(image, boxes, masks, labels, *args, **kwargs)

    def record_caption(image, lines, *args, **kwargs):
        seen["caption"].append(list(lines))
        return with_caption(image, lines, *args, **kwargs)

    monkeypatch.setattr(render, "draw_instances", record_tags)
    monkeypatch.setattr(render, "with_caption", record_caption)
    return seen


def _violations(image: torch.Tensor, target: dict) -> list:
    return validate_dataset([(image, target)], num_classes=2).violations


def test_violation_picture_tags_each_instance_with_its_number_and_the_codes_it_broke(tmp_path, drawn):
    image, target = _overlapping_sample()
    render.render_violations(image, target, _violations(image, target), tmp_path / "s.png", index=0)
    [tags] = drawn["tags"]
    assert tags[0] == "#0" and tags[1] == "#1"
    assert tags[2].startswith("#2 ") and "BOX_DEGENERATE" in tags[2].split() and "LABEL_BACKGROUND" in tags[2]


def test_violation_caption_says_which_instance_broke_which_rule(tmp_path, drawn):
    image, target = _overlapping_sample()
    render.render_violations(image, target, _violations(image, target), tmp_path / "s.png", index=7)
    [lines] = drawn["caption"]
    assert lines[0].startswith("sample 7: 3 instances, ")
    assert any(line.startswith("instance 2 (boxes[2]): BOX_DEGENERATE [error]") for line in lines), lines
    assert any(line.startswith("instance 2 (labels[2]): LABEL_BACKGROUND [error]") for line in lines), lines
    assert not any(line.startswith(("instance 0", "instance 1")) for line in lines), lines


def test_violation_picture_draws_the_broken_instances_tag_in_its_colour(tmp_path):
    image, target = _overlapping_sample()
    render.render_violations(image, target, _violations(image, target), tmp_path / "s.png")
    with Image.open(tmp_path / "s.png") as picture:
        pixels = _image_part(picture, 48, 64).astype(int)
    scale = render.upscale_for(48, 64)
    band = pixels[3 * scale:16 * scale]  # the rows of instance 2's box (y 4 to 14), where its tag sits
    tag_colour = np.abs(band - np.array(render.PALETTE[2])).sum(axis=2) <= 3
    assert tag_colour.sum() > 100


def test_validate_render_all_draws_clean_samples(tmp_path, drawn, capsys):
    out = tmp_path / "png"
    assert main(["--quiet", "validate", str(FIXTURES / "pennfudan" / "val"), "--num-classes", "2",
                 "--max-samples", "2", "--render", str(out), "--render-all"]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["sample_00000.png", "sample_00001.png"]
    assert [lines[0] for lines in drawn["caption"]] == [
        f"sample {i}: {len(tags)} instances, no findings" for i, tags in enumerate(drawn["tags"])]
    assert all(tags == [f"#{k}" for k in range(len(tags))] and tags for tags in drawn["tags"])


def test_validate_render_names_the_instance_in_each_finding(tmp_path, drawn):
    dataset = f"{Path(__file__).parents[1] / 'tutorial_datasets.py'}:TutorialPennFudanV2"
    assert main(["--quiet", "validate", dataset, "--arg", f"root={FIXTURES / 'pennfudan' / 'val'}",
                 "--arg", "alter='label0'", "--max-samples", "1", "--render", str(tmp_path / "png")]) == 1
    [lines] = drawn["caption"]
    assert any(line.startswith("instance 0 (labels[0]): LABEL_BACKGROUND [error]") for line in lines), lines
    [tags] = drawn["tags"]
    assert tags[0] == "#0 LABEL_BACKGROUND"


def _history(epochs: int) -> dict:
    return {"epochs": [{"epoch": e, "train_loss": 1.0 / (e + 1), "val_loss": 0.9 / (e + 1),
                        "bbox_ap": 0.1 * e, "segm_ap": None} for e in range(epochs)]}


@pytest.mark.parametrize("epochs", [2, 3, 7])
def test_history_plot_has_whole_epoch_ticks_only(epochs):
    import matplotlib.pyplot as plt

    fig = history_figure(_history(epochs))
    try:
        fig.canvas.draw()
        ax = fig.axes[0]
        lo, hi = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        labels = [label.get_text().replace("\N{MINUS SIGN}", "-") for label in ax.get_xticklabels()
                  if lo <= label.get_position()[0] <= hi]
    finally:
        plt.close(fig)
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), ticks
    assert labels and all(text.lstrip("-").isdigit() for text in labels), labels
