"""Transforms keep the contract: presets map valid samples to valid samples, flips agree and invert."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torchvision import tv_tensors
from torchvision.ops import masks_to_boxes
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from reference import transforms as T
from reference.contract import Severity, validate_sample
from reference.testing.strategies import valid_samples


def _errors(image, target, **kw):
    return [v for v in validate_sample(image, target, **kw) if v.severity is Severity.ERROR]


def _plain(t):
    return t.as_subclass(torch.Tensor) if isinstance(t, torch.Tensor) else t


@given(valid_samples(flavour="v2", masks=True), st.integers(0, 2**31 - 1))
def test_tutorial_preset_keeps_valid_samples_valid_and_model_ready(s, seed):
    torch.manual_seed(seed)
    image, target = T.get_preset("tutorial", train=True)(s.image, s.target)
    assert _errors(image, target, num_classes=s.num_classes, model_ready=True) == []


@given(valid_samples(flavour="legacy", keypoints=False), st.integers(0, 2**31 - 1))
def test_legacy_tutorial_preset_keeps_valid_samples_valid_and_model_ready(s, seed):
    torch.manual_seed(seed)
    image, target = T.get_preset("tutorial-legacy", train=True)(s.image, s.target)
    assert _errors(image, target, num_classes=s.num_classes, num_keypoints=s.num_keypoints, model_ready=True) == []


@settings(max_examples=100)
@given(valid_samples(flavour="v2", masks=True, keypoints=False, min_instances=1, min_side=4, min_size=24,
                     max_size=64), st.integers(0, 2**31 - 1))
def test_mills_preset_keeps_valid_samples_valid_after_sanitising(s, seed):
    torch.manual_seed(seed)
    image, target = T.get_preset("mills", train=True)(s.image, s.target)
    assert _errors(image, target, num_classes=s.num_classes, model_ready=True) == []
    assert tuple(image.shape[-2:]) == (160, 160)


@given(valid_samples(flavour="v2", masks=True))
def test_eval_preset_is_deterministic_and_model_ready(s):
    a = T.get_preset("eval", train=False)(s.image, s.target)
    b = T.get_preset("eval", train=False)(s.image, s.target)
    assert torch.equal(a[0], b[0])
    assert _errors(*a, num_classes=s.num_classes, model_ready=True) == []


@pytest.mark.parametrize("transform", [T.resize_max(37), T.ResizeMax(37), T.PadSquare(), T.PadSquare(shift=True)],
                         ids=["resize_max", "resize_max_fallback", "pad_square", "pad_square_shifted"])
def test_geometric_steps_keep_boxes_within_one_pixel_of_their_masks(transform):
    @given(valid_samples(flavour="v2", masks=True, keypoints=False, min_instances=1, min_side=3, min_size=8))
    def check(s):
        _, target = transform(s.image, s.target)
        masks, boxes = _plain(target["masks"]), _plain(target["boxes"])
        keep = masks.flatten(1).bool().any(1)
        mask_boxes = masks_to_boxes(masks[keep].bool())
        mask_boxes[:, 2:] += 1
        assert (mask_boxes - boxes[keep]).abs().max() <= 1.0 + 1e-4 if keep.any() else True
        for key in ("labels", "area", "iscrowd", "masks"):
            assert len(target[key]) == len(boxes)

    check()


def test_resize_max_is_torchvisions_resize_without_a_size_where_it_has_one():
    assert T.RESIZE_TAKES_NO_SIZE == (tuple(int(x) for x in torchvision.__version__.split(".")[:2]) >= (0, 20))
    if T.RESIZE_TAKES_NO_SIZE:
        step = T.resize_max(37)
        assert type(step) is v2.Resize and step.size is None and step.max_size == 37


@pytest.mark.skipif(not T.RESIZE_TAKES_NO_SIZE, reason="torchvision < 0.20 has no v2.Resize(size=None)")
@given(valid_samples(flavour="v2", masks=True, keypoints=False, min_size=4, max_size=60))
def test_the_resize_max_fallback_gives_torchvisions_outputs_exactly(s):
    ours = T.ResizeMax(37)(s.image, s.target)
    theirs = v2.Resize(size=None, max_size=37, antialias=True)(s.image, s.target)
    assert ours[0].shape == theirs[0].shape and torch.equal(ours[0], theirs[0])
    for key in ("boxes", "masks"):
        assert torch.equal(ours[1][key], theirs[1][key])


def test_the_eval_preset_is_the_same_for_training_and_evaluation_takes_no_argument():
    with pytest.raises(TypeError):
        T.evaluation(True)
    assert repr(T.get_preset("eval", train=True)) == repr(T.get_preset("eval", train=False)) == repr(T.evaluation())


@given(valid_samples(flavour="v2", masks=True, keypoints=False))
def test_legacy_and_v2_flips_agree_exactly(s):
    legacy = T.RandomHorizontalFlip(p=1.0)
    image = _plain(s.image)
    target = {k: _plain(v) for k, v in s.target.items()}
    li, lt = legacy(image, target)
    vi, vt = v2.RandomHorizontalFlip(p=1.0)(s.image, s.target)
    assert torch.equal(li, _plain(vi))
    assert torch.equal(lt["boxes"], _plain(vt["boxes"]))
    assert torch.equal(lt["masks"], _plain(vt["masks"]))


@given(valid_samples(flavour="legacy", masks=True, keypoints=True))
def test_legacy_flip_twice_is_the_identity(s):
    flip = T.RandomHorizontalFlip(p=1.0, keypoint_flip_index=list(range(s.num_keypoints)))
    image, target = flip(*flip(s.image, s.target))
    assert np.array_equal(np.asarray(image), np.asarray(s.image))
    assert torch.equal(target["boxes"], s.target["boxes"]) and torch.equal(target["masks"], s.target["masks"])
    visible = s.target["keypoints"][..., 2] > 0
    assert torch.allclose(target["keypoints"][visible], s.target["keypoints"][visible])


@given(valid_samples(flavour="legacy", masks=True, keypoints=True, min_instances=1))
def test_legacy_flip_mirrors_visible_keypoints_with_the_image(s):
    """Flipping twice is the identity whether or not the keypoints move; once, they must mirror."""
    flip = T.RandomHorizontalFlip(p=1.0, keypoint_flip_index=list(range(s.num_keypoints)))
    _, target = flip(s.image, s.target)
    width = F.get_dimensions(s.image)[2]
    visible = s.target["keypoints"][..., 2] > 0
    mirrored = s.target["keypoints"].clone()
    mirrored[..., 0] = width - mirrored[..., 0]
    assert torch.equal(target["keypoints"][visible], mirrored[visible])


def test_coco_person_keypoints_swap_left_and_right_and_zero_invisible_points():
    kps = torch.zeros((1, 17, 3))
    kps[0, 1] = torch.tensor([10.0, 5.0, 2.0])  # left eye
    kps[0, 2] = torch.tensor([30.0, 5.0, 0.0])  # right eye, not visible
    out = T.flip_keypoints(kps, width=100, flip_index=T.COCO_PERSON_FLIP_INDEX)
    assert out[0, 2].tolist() == [90.0, 5.0, 2.0]  # the left eye became the right eye
    assert out[0, 1].tolist() == [0.0, 0.0, 0.0]


def test_a_flip_index_for_another_skeleton_is_refused():
    with pytest.raises(ValueError, match="K=5 points but the flip index lists 17"):
        T.flip_keypoints(torch.zeros((1, 5, 3)), 10, T.COCO_PERSON_FLIP_INDEX)


@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
def test_legacy_flip_takes_one_random_draw_per_call_whatever_p(p):
    image, target = torch.zeros((3, 4, 6)), {"boxes": torch.tensor([[0.0, 0.0, 2.0, 2.0]])}
    torch.manual_seed(0)
    T.RandomHorizontalFlip(p)(image, target)
    after_flip = torch.rand(1)
    torch.manual_seed(0)
    torch.rand(1)
    assert torch.equal(after_flip, torch.rand(1))


@given(valid_samples(flavour="v2", masks=True, keypoints=False, min_instances=1, min_side=4, min_size=24),
       st.integers(0, 2**31 - 1))
def test_seeded_mills_pipeline_reproduces_itself(s, seed):
    pipeline = T.get_preset("mills", train=True)
    torch.manual_seed(seed)
    a = pipeline(s.image, s.target)
    torch.manual_seed(seed)
    b = pipeline(s.image, s.target)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1]["boxes"], b[1]["boxes"])


def test_sanitising_keeps_area_and_iscrowd_in_step_where_the_default_does_not():
    image = tv_tensors.Image(torch.zeros((3, 20, 20)))
    target = {"boxes": tv_tensors.BoundingBoxes([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 5.0, 9.0]], format="XYXY",
                                                canvas_size=(20, 20)),
              "labels": torch.tensor([1, 1]), "area": torch.tensor([100.0, 0.0]), "iscrowd": torch.tensor([0, 0]),
              "image_id": 0}
    _, default = v2.SanitizeBoundingBoxes()(image, dict(target))
    assert len(default["boxes"]) == 1 and len(default["area"]) == 2  # field note 18: out of step
    _, ours = T._sanitize()(image, dict(target))
    assert len(ours["boxes"]) == len(ours["area"]) == len(ours["iscrowd"]) == len(ours["labels"]) == 1
    assert _errors(image, ours) == []


def test_plain_tensor_boxes_are_not_moved_by_a_v2_flip_and_the_validator_notices():
    # field note 19: a plain tensor passes through v2 untouched, so boxes no longer match the masks
    masks = torch.zeros((1, 10, 20), dtype=torch.uint8)
    masks[0, 2:8, 1:6] = 1
    target = {"boxes": torch.tensor([[1.0, 2.0, 6.0, 8.0]]), "labels": torch.tensor([1]),
              "masks": tv_tensors.Mask(masks), "area": torch.tensor([30.0]), "iscrowd": torch.tensor([0]),
              "image_id": 0}
    image, out = v2.RandomHorizontalFlip(p=1.0)(tv_tensors.Image(torch.zeros((3, 10, 20))), target)
    assert torch.equal(out["boxes"], target["boxes"])
    assert "MASK_BOX_MISMATCH" in {v.code for v in validate_sample(image, out)}


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match="tutorial-legacy"):
        T.get_preset("fancy", train=True)


def test_legacy_pil_to_tensor_and_to_dtype_scale_to_unit_range():
    img = Image.new("RGB", (4, 3), (255, 0, 128))
    t, _ = T.Compose([T.PILToTensor(), T.ConvertImageDtype(torch.float)])(img, None)
    assert t.shape == (3, 3, 4) and t.dtype == torch.float32 and float(t.max()) == 1.0


# --- the references' legacy geometric transforms -----------------------------------------------------------

LEGACY = {
    "iou_crop": lambda keep: T.RandomIoUCrop(keep_in_step=keep),
    "zoom_out": lambda keep: T.RandomZoomOut(p=1.0, side_range=(1.0, 2.0), keep_in_step=keep),
    "scale_jitter": lambda keep: T.ScaleJitter((48, 48), scale_range=(0.5, 2.0), keep_in_step=keep),
    "shortest_size": lambda keep: T.RandomShortestSize([20, 30, 40], 64, keep_in_step=keep),
    "fixed_size_crop": lambda keep: T.FixedSizeCrop((20, 24), keep_in_step=keep),
}


@pytest.mark.parametrize("name", list(LEGACY))
def test_legacy_transform_keeps_valid_samples_valid(name):
    @given(valid_samples(flavour="legacy", masks=True, min_instances=1, min_size=16, max_size=48),
           st.integers(0, 2**31 - 1))
    def check(s, seed):
        torch.manual_seed(seed)
        image, target = LEGACY[name](True)(s.image, s.target)
        assert _errors(image, target, num_classes=s.num_classes, num_keypoints=s.num_keypoints) == []

    check()


def _crowded_sample():
    """Three instances, one in each corner region, so that crops drop some of them."""
    boxes = torch.tensor([[1.0, 1.0, 9.0, 9.0], [30.0, 30.0, 39.0, 39.0], [2.0, 28.0, 10.0, 38.0]])
    masks = torch.zeros((3, 40, 40), dtype=torch.uint8)
    for k, (x1, y1, x2, y2) in enumerate(boxes.long().tolist()):
        masks[k, y1:y2, x1:x2] = 1
    target = {"boxes": boxes, "labels": torch.tensor([1, 1, 1]), "masks": masks, "image_id": torch.tensor([0]),
              "area": (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), "iscrowd": torch.zeros(3).long()}
    return torch.rand((3, 40, 40)), target


@pytest.mark.parametrize("name", ["scale_jitter", "shortest_size"])
def test_rescaling_keeps_area_and_keypoints_in_step_with_the_image(name):
    image, target = _crowded_sample()
    target["keypoints"] = torch.tensor([[[4.0, 6.0, 2.0]], [[32.0, 35.0, 2.0]], [[5.0, 30.0, 1.0]]])
    for seed in range(20):  # a draw that changes the size
        torch.manual_seed(seed)
        out_image, out = LEGACY[name](True)(image, target)
        sy, sx = out_image.shape[-2] / image.shape[-2], out_image.shape[-1] / image.shape[-1]
        if (sy, sx) != (1.0, 1.0):
            break
    assert (sy, sx) != (1.0, 1.0), "no seed rescaled the image"
    torch.testing.assert_close(out["area"], target["area"] * sx * sy)
    torch.testing.assert_close(out["keypoints"][..., :2], target["keypoints"][..., :2] * torch.tensor([sx, sy]))


@pytest.mark.parametrize("name,code", [("iou_crop", "MASKS_SHAPE"), ("zoom_out", "MASKS_SHAPE"),
                                       ("fixed_size_crop", "COUNT_MISMATCH")])
def test_reference_mode_shows_the_references_defect_that_ours_fixes(name, code):
    image, target = _crowded_sample()
    broken = fixed = None
    for seed in range(50):  # a seed where the crop drops an instance (or the zoom-out moves the canvas)
        torch.manual_seed(seed)
        ref = LEGACY[name](False)(image, target)
        if code in {v.code for v in validate_sample(*ref)}:
            torch.manual_seed(seed)
            broken, fixed = ref, LEGACY[name](True)(image, target)
            break
    assert broken is not None, f"no seed made the reference-mode {name} break {code}"
    assert _errors(*fixed) == []
    assert torch.equal(broken[1]["boxes"], fixed[1]["boxes"])  # same draws, same boxes: only the fix differs


def _draws_after(fn) -> torch.Tensor:
    torch.manual_seed(0)
    fn()
    return torch.rand(1)


@pytest.mark.parametrize("name,expected", [
    ("zoom_out", lambda: (torch.rand(1), torch.rand(1), torch.rand(2))),
    ("scale_jitter", lambda: torch.rand(1)),
    ("shortest_size", lambda: torch.randint(3, (1,))),
    ("fixed_size_crop", lambda: torch.rand(1)),
])
def test_legacy_transforms_take_the_references_random_draws(name, expected):
    image, target = _crowded_sample()
    assert torch.equal(_draws_after(lambda: LEGACY[name](True)(image, target)), _draws_after(expected))


def test_iou_crop_leave_as_is_option_takes_one_draw():
    image, target = _crowded_sample()
    crop = T.RandomIoUCrop(sampler_options=[1.0])
    assert torch.equal(_draws_after(lambda: crop(image, target)), _draws_after(lambda: torch.randint(0, 1, (1,))))


def test_fixed_size_crop_draws_nothing_when_it_only_pads():
    image, target = _crowded_sample()
    assert torch.equal(_draws_after(lambda: T.FixedSizeCrop((50, 60))(image, target)), _draws_after(lambda: None))


def test_photometric_distort_draws_seven_numbers_when_nothing_applies():
    image, _ = _crowded_sample()
    distort = T.RandomPhotometricDistort(p=0.0)
    assert torch.equal(_draws_after(lambda: distort(image, None)), _draws_after(lambda: torch.rand(7)))
    assert torch.equal(distort(image, None)[0], image)


def test_photometric_distort_is_reproducible_and_leaves_the_target_alone():
    image, target = _crowded_sample()
    distort = T.RandomPhotometricDistort(p=1.0)
    torch.manual_seed(4)
    a, ta = distort(image, target)
    torch.manual_seed(4)
    b, _ = distort(image, target)
    assert torch.equal(a, b) and not torch.equal(a, image) and ta is target


OLD_TORCHVISION = tuple(int(x) for x in torchvision.__version__.split(".")[:2]) < (0, 17)


@pytest.mark.skipif(OLD_TORCHVISION, reason="the library sanitiser it is compared with filters one field only here")
@given(valid_samples(flavour="v2", masks=True, keypoints=False, min_instances=1), st.data())
def test_old_torchvision_sanitiser_matches_the_library_one(s, data):
    # torchvision < 0.17 cannot filter several fields with SanitizeBoundingBoxes; the fallback must agree with it
    boxes = s.target["boxes"].as_subclass(torch.Tensor).clone()
    flat = data.draw(st.lists(st.booleans(), min_size=len(boxes), max_size=len(boxes)))
    boxes[torch.tensor(flat), 2] = boxes[torch.tensor(flat), 0]  # zero-width boxes, to be dropped
    target = {**s.target, "boxes": tv_tensors.wrap(boxes, like=s.target["boxes"])}
    _, ours = T._SanitizeInstances(min_size=1.0)(s.image, dict(target))
    _, lib = v2.SanitizeBoundingBoxes(min_size=1.0, labels_getter=T._labels_getter)(s.image, dict(target))
    assert len(ours["boxes"]) == len(boxes) - sum(flat)
    for key in ("boxes", "labels", "area", "iscrowd", "masks"):
        assert torch.equal(_plain(ours[key]), _plain(lib[key])), key
    assert type(ours["boxes"]) is tv_tensors.BoundingBoxes and type(ours["masks"]) is tv_tensors.Mask


def test_mills_preset_terminates_when_no_crop_can_keep_the_only_box():
    # a 1-pixel box in the bottom-right corner: no crop keeps its centre, so only "leave as is" ends the loop
    masks = torch.zeros((1, 16, 16), dtype=torch.uint8)
    masks[0, 15, 15] = 1
    target = {"boxes": tv_tensors.BoundingBoxes([[15.0, 15.0, 16.0, 16.0]], format="XYXY", canvas_size=(16, 16)),
              "labels": torch.tensor([1]), "masks": tv_tensors.Mask(masks), "area": torch.tensor([1.0]),
              "iscrowd": torch.tensor([0]), "image_id": 0}
    torch.manual_seed(0)
    image, out = T.get_preset("mills", train=True)(tv_tensors.Image(torch.zeros((3, 16, 16))), target)
    assert tuple(image.shape[-2:]) == (160, 160)


# --- copy-paste -------------------------------------------------------------------------------------------

def _batch(samples):
    images = [_plain(s.image) for s in samples]
    targets = [{k: _plain(v) for k, v in s.target.items()} for s in samples]
    return images, targets


@given(st.lists(valid_samples(flavour="v2", masks=True, keypoints=False, min_size=8, max_size=24), min_size=2,
                max_size=3), st.integers(0, 2**31 - 1))
def test_copy_paste_keeps_a_batch_of_valid_samples_valid(samples, seed):
    images, targets = _batch(samples)
    torch.manual_seed(seed)
    out_images, out_targets = T.SimpleCopyPaste()(images, targets)
    classes = max(s.num_classes for s in samples)
    for image, target, source in zip(out_images, out_targets, images):
        assert image.shape == source.shape
        assert _errors(image, target, num_classes=classes) == []


def _two_images():
    images, targets = [], []
    for offset in (0, 20):
        masks = torch.zeros((2, 40, 40), dtype=torch.uint8)
        masks[0, 2 + offset // 2:12 + offset // 2, 2:12] = 1
        masks[1, 25:35, 5 + offset:15 + offset] = 1
        boxes = torch.tensor([[2.0, 2 + offset // 2, 12.0, 12 + offset // 2], [5.0 + offset, 25, 15.0 + offset, 35]])
        kps = torch.zeros((2, 3, 3))
        kps[..., 0], kps[..., 1], kps[..., 2] = boxes[:, None, 0] + 1, boxes[:, None, 1] + 1, 2.0
        images.append(torch.full((3, 40, 40), offset / 40))
        targets.append({"boxes": boxes, "labels": torch.tensor([1, 2]), "masks": masks, "image_id": offset,
                        "area": torch.tensor([100.0, 100.0]), "iscrowd": torch.tensor([0, 1]), "keypoints": kps})
    return images, targets


def test_copy_paste_takes_one_randint_draw_per_image():
    images, targets = _two_images()
    after = _draws_after(lambda: T.SimpleCopyPaste()(images, targets))
    assert torch.equal(after, _draws_after(lambda: (torch.randint(0, 2, (2,)), torch.randint(0, 2, (2,)))))


def test_copy_paste_adds_the_picked_instances_and_their_pixels():
    images, targets = _two_images()
    torch.manual_seed(0)
    pick = torch.unique(torch.randint(0, 2, (2,)))
    torch.manual_seed(0)
    out_images, out_targets = T.SimpleCopyPaste(blending=False)(images, targets)
    first = out_targets[0]
    assert len(first["labels"]) == 2 + len(pick)  # nothing of image 0 is fully covered by image 1's objects
    assert torch.equal(first["labels"][2:], targets[1]["labels"][pick])
    pasted = targets[1]["masks"][pick].sum(0) > 0
    assert torch.equal(out_images[0][:, pasted], images[1][:, pasted])
    assert torch.equal(first["area"], first["masks"].sum((-1, -2)).float())


def test_copy_paste_reference_mode_leaves_keypoints_behind_and_ours_does_not():
    images, targets = _two_images()
    torch.manual_seed(1)
    _, ref = T.SimpleCopyPaste(keep_in_step=False)(images, targets)
    torch.manual_seed(1)
    _, ours = T.SimpleCopyPaste()(images, targets)
    assert "COUNT_MISMATCH" in {v.code for v in validate_sample(images[0], ref[0])}
    assert _errors(images[0], ours[0]) == [] and len(ours[0]["keypoints"]) == len(ours[0]["boxes"])
    assert torch.equal(ref[0]["boxes"], ours[0]["boxes"])


def test_copy_paste_names_a_missing_field():
    images, targets = _two_images()
    del targets[1]["masks"]
    with pytest.raises(ValueError, match=r"target 1 lacks \['masks'\]"):
        T.SimpleCopyPaste()(images, targets)


@given(valid_samples(flavour="legacy", keypoints=False), st.integers(0, 2**31 - 1))
def test_photometric_distort_keeps_valid_samples_valid(s, seed):
    torch.manual_seed(seed)
    image, target = T.Compose([T.PILToTensor(), T.ToDtype(torch.float, scale=True),
                               T.RandomPhotometricDistort(p=0.5)])(s.image, s.target)
    assert _errors(image, target, num_classes=s.num_classes, model_ready=True) == []
