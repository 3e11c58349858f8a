"""reference.data.records: a layout's SampleRecord becomes the tutorial's target in one step, the same for all."""

import pytest
import torch
from torchvision import tv_tensors

from reference.data.records import DrawnMasks, SampleRecord, to_target


def _masks(*boxes: tuple[int, int, int, int], size: tuple[int, int] = (10, 12)) -> torch.Tensor:
    """uint8 masks [N, H, W], each filling the XYXY (exclusive) box given."""
    out = torch.zeros((len(boxes), *size), dtype=torch.uint8)
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        out[k, y1:y2, x1:x2] = 1
    return out


def _record(**kw) -> SampleRecord:
    defaults = dict(name="sample.json", image_id=7, height=10, width=12, labels=[1, 2])
    return SampleRecord(**{**defaults, **kw})


def test_boxes_given_by_the_file_are_kept_and_wrapped_with_the_image_size():
    boxes = torch.tensor([[1.0, 2.0, 5.0, 6.0], [0.5, 0.5, 3.25, 9.0]])
    target, widened = to_target(_record(boxes=boxes))
    assert isinstance(target["boxes"], tv_tensors.BoundingBoxes)
    assert target["boxes"].canvas_size == (10, 12)
    assert torch.equal(target["boxes"].as_subclass(torch.Tensor), boxes)
    assert widened == []


def test_without_boxes_each_masks_box_is_taken_with_the_tutorials_last_index_convention():
    target, _ = to_target(_record(masks=DrawnMasks(_masks((1, 2, 4, 6), (0, 0, 12, 10)))))
    assert target["boxes"].tolist() == [[1.0, 2.0, 3.0, 5.0], [0.0, 0.0, 11.0, 9.0]]


def test_exclusive_boxes_take_last_index_plus_one():
    target, _ = to_target(_record(masks=DrawnMasks(_masks((1, 2, 4, 6), (0, 0, 12, 10))), exclusive_boxes=True))
    assert target["boxes"].tolist() == [[1.0, 2.0, 4.0, 6.0], [0.0, 0.0, 12.0, 10.0]]


def test_a_one_pixel_wide_mask_gets_a_widened_box_named_in_a_warning(caplog):
    target, widened = to_target(_record(masks=DrawnMasks(_masks((3, 2, 4, 8), (0, 0, 5, 5)))))
    assert widened == [0]
    assert target["boxes"][0].tolist() == [3.0, 2.0, 4.0, 7.0]
    assert "sample.json: instance 0 is one pixel wide or tall" in caplog.text


def test_area_box_is_the_boxes_area():
    target, _ = to_target(_record(boxes=torch.tensor([[0.0, 0.0, 2.0, 3.0], [1.0, 1.0, 1.5, 5.0]])))
    assert target["area"].tolist() == [6.0, 2.0]


def test_area_mask_is_the_masks_pixel_count_not_its_boxes_area():
    masks = _masks((0, 0, 4, 4), (5, 5, 7, 6))
    masks[0, 0, 0] = 0  # the box stays 4 x 4; the mask has 15 pixels
    target, _ = to_target(_record(area="mask", masks=DrawnMasks(masks)))
    assert target["area"].tolist() == [15.0, 2.0]
    assert target["area"].dtype == torch.float32


def test_area_given_by_the_file_is_kept_as_float32():
    target, _ = to_target(_record(boxes=torch.zeros((2, 4)), area=[12, 3.5]))
    assert target["area"].tolist() == [12.0, 3.5]
    assert target["area"].dtype == torch.float32


def test_iscrowd_defaults_to_zero_and_keeps_the_files_values():
    plain, _ = to_target(_record(boxes=torch.zeros((2, 4))))
    crowd, _ = to_target(_record(boxes=torch.zeros((2, 4)), iscrowd=[0, 1]))
    assert plain["iscrowd"].tolist() == [0, 0]
    assert crowd["iscrowd"].tolist() == [0, 1]
    assert crowd["iscrowd"].dtype == torch.int64


def test_masks_and_keypoints_appear_only_when_the_record_has_them():
    bare, _ = to_target(_record(boxes=torch.zeros((2, 4))))
    full, _ = to_target(_record(boxes=torch.zeros((2, 4)), masks=DrawnMasks(_masks((0, 0, 1, 1), (1, 1, 2, 2))),
                                keypoints=torch.zeros((2, 17, 3))))
    assert set(bare) == {"boxes", "labels", "image_id", "area", "iscrowd"}
    assert isinstance(full["masks"], tv_tensors.Mask)
    assert full["keypoints"].shape == (2, 17, 3)


def test_an_empty_record_gives_empty_tensors_of_the_right_dtypes():
    target, _ = to_target(_record(labels=[], masks=DrawnMasks(torch.zeros((0, 10, 12), dtype=torch.uint8))))
    assert target["boxes"].shape == (0, 4)
    assert target["labels"].dtype == torch.int64 and target["labels"].shape == (0,)
    assert target["masks"].shape == (0, 10, 12)


def test_drawn_masks_of_another_size_than_the_records_image_are_refused():
    with pytest.raises(ValueError, match=r"masks of size \(10, 12\) for an image of \(10, 13\)"):
        to_target(_record(width=13, masks=DrawnMasks(_masks((0, 0, 1, 1), (1, 1, 2, 2)))))


def test_a_record_with_neither_boxes_nor_masks_is_refused():
    with pytest.raises(ValueError, match="sample.json: a record without boxes needs masks"):
        to_target(_record())
