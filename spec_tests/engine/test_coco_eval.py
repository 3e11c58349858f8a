"""The evaluator: exact AP for ground truth fed back, hand-computed cases, and the references' defects fixed."""

from __future__ import annotations

import logging

import pytest
import torch
from torch.utils.data import DataLoader, Subset

from reference.engine import loops as engine
from reference.testing import golden
from reference.engine.coco_eval import GroundTruth, detections_to_coco, ground_truth_from_dataset, score
from reference.data import PennFudanDataset
from reference.models import build_model
from reference.training.fit import collate_fn
from reference.transforms import evaluation

from spec_tests.conftest import FIXTURES


def _target(boxes, labels, masks=None, iscrowd=None, area=None):
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    t = {"boxes": boxes, "labels": torch.tensor(labels, dtype=torch.int64),
         "iscrowd": torch.tensor(iscrowd or [0] * len(labels), dtype=torch.int64),
         "area": torch.tensor(area) if area else (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])}
    if masks is not None:
        t["masks"] = masks
    return t


def _output(boxes, labels, scores, masks=None):
    o = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
         "labels": torch.tensor(labels, dtype=torch.int64), "scores": torch.tensor(scores)}
    if masks is not None:
        o["masks"] = masks
    return o


def _feed_back(dataset):
    gt, dets = GroundTruth(), {"bbox": [], "segm": []}
    for i in range(len(dataset)):
        image, t = dataset[i]
        gt.add(t["image_id"], image.shape[-2], image.shape[-1], t)
        out = {"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"])),
               "masks": t["masks"][:, None].float()}
        for iou in dets:
            dets[iou] += detections_to_coco(t["image_id"], out, iou)
    return gt, dets


def test_ground_truth_fed_back_as_predictions_gives_ap_exactly_one():
    ds = PennFudanDataset(FIXTURES / "pennfudan" / "val", evaluation())
    gt, dets = _feed_back(ds)
    result = score(gt, dets)
    assert result.stats["bbox"][0] == 1.0 and result.stats["segm"][0] == 1.0


def test_annotation_ids_start_at_one_and_categories_are_the_sorted_labels_seen():
    gt = GroundTruth()
    gt.add(5, 10, 10, _target([[0, 0, 4, 4], [1, 1, 5, 5]], [3, 1]))
    gt.add(9, 10, 10, _target([[0, 0, 2, 2]], [2]))
    assert [a["id"] for a in gt.annotations] == [1, 2, 3]
    assert gt.dataset()["categories"] == [{"id": 1}, {"id": 2}, {"id": 3}]
    assert gt.annotations[0]["bbox"] == [0.0, 0.0, 4.0, 4.0]


# pycocotools computes precision as tp / (tp + fp + eps): with a single true positive a perfect AP reads
# 1 - 2.2e-16. That is pycocotools' number; these hand-computed cases compare with 1e-12 slack.
EPS = 1e-12


def _score_boxes(targets, outputs):
    gt, dets = GroundTruth(), {"bbox": []}
    for image_id, (t, o) in enumerate(zip(targets, outputs)):
        gt.add(image_id, 100, 100, t)
        dets["bbox"] += detections_to_coco(image_id, o, "bbox")
    return score(gt, dets).stats["bbox"]


def test_a_false_positive_ranked_first_halves_ap():
    # one object; a wrong box scores 0.9, the right one 0.8: precision 1/2 at every recall level
    stats = _score_boxes([_target([[10, 10, 50, 50]], [1])],
                         [_output([[60, 60, 90, 90], [10, 10, 50, 50]], [1, 1], [0.9, 0.8])])
    assert stats[0] == pytest.approx(0.5)


def test_a_duplicate_detection_after_the_match_costs_nothing():
    stats = _score_boxes([_target([[10, 10, 50, 50]], [1])],
                         [_output([[10, 10, 50, 50], [10, 10, 50, 50]], [1, 1], [0.9, 0.8])])
    assert stats[0] == pytest.approx(1.0, abs=EPS)


def test_a_detection_inside_a_crowd_region_is_ignored():
    """COCO matches a detection to a crowd region by the share of the detection inside it: a small box inside
    the region scores first but costs nothing (as an ordinary object, IoU 0.08, it would be a false positive)."""
    target = _target([[10, 10, 50, 50], [60, 60, 95, 95]], [1, 1], iscrowd=[0, 1])
    stats = _score_boxes([target], [_output([[62, 62, 72, 72], [10, 10, 50, 50]], [1, 1], [0.9, 0.8])])
    assert stats[0] == pytest.approx(1.0, abs=EPS)


def test_a_crowd_region_without_a_detection_is_not_a_missed_object():
    target = _target([[10, 10, 50, 50], [60, 60, 95, 95]], [1, 1], iscrowd=[0, 1])
    stats = _score_boxes([target], [_output([[10, 10, 50, 50]], [1], [0.8])])
    assert stats[0] == pytest.approx(1.0, abs=EPS)


def test_a_detection_on_an_empty_image_is_a_false_positive():
    stats = _score_boxes([_target([[10, 10, 50, 50]], [1]), _target([], [])],
                         [_output([[10, 10, 50, 50]], [1], [0.8]), _output([[5, 5, 30, 30]], [1], [0.95])])
    assert stats[0] == pytest.approx(0.5)


def test_no_detections_give_ap_zero_with_a_warning(caplog):
    gt = GroundTruth()
    gt.add(1, 100, 100, _target([[10, 10, 50, 50]], [1]))
    with caplog.at_level(logging.WARNING):
        result = score(gt, {"bbox": []})
    assert result.stats["bbox"][0] == 0.0
    assert "no detections" in caplog.text


def _loader(ds, batch_size=4):
    return DataLoader(ds, batch_size=batch_size, collate_fn=collate_fn)


def test_evaluate_on_a_model_that_predicts_nothing_does_not_crash():
    ds = Subset(PennFudanDataset(FIXTURES / "pennfudan" / "val", evaluation()), range(4))
    model = build_model("small_maskrcnn", 2, box_score_thresh=1.01)
    result = engine.evaluate(model, _loader(ds), "cpu")
    assert result.stats["bbox"][0] == 0.0


class _Oracle:
    """Replaces engine.predict_batches: outputs equal to the targets (AP must then be exactly 1)."""

    def __call__(self, model, loader, device, **kwargs):
        for images, targets in loader:
            outs = [{"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"])),
                     "masks": t["masks"][:, None].float()} for t in targets]
            yield images, targets, outs, 0.0


def test_a_subset_is_evaluated_as_the_subset(monkeypatch):
    seen = {}
    real_score = engine.score

    def spy(gt, dets, backend):
        seen["images"] = [im["id"] for im in gt.images]
        return real_score(gt, dets, backend)

    monkeypatch.setattr(engine, "predict_batches", _Oracle())
    monkeypatch.setattr(engine, "score", spy)
    ds = PennFudanDataset(FIXTURES / "pennfudan" / "val", evaluation())
    result = engine.evaluate(build_model("small_maskrcnn", 2), _loader(Subset(ds, [3, 7, 11])), "cpu")
    assert seen["images"] == [3, 7, 11]
    assert result.stats["segm"][0] == 1.0


def test_evaluate_gives_the_same_stats_as_the_references_ground_truth(monkeypatch):
    """Ground truth from the evaluation pass equals the one rebuilt by iterating the dataset (the trained golden
    model, so that the stats are far from 0 and every area range has detections to score)."""
    ds = PennFudanDataset(FIXTURES / "pennfudan" / "val", evaluation())
    seen = []  # the evaluation pass's own outputs, scored again below (a second inference pass costs 1.5 s)
    real_predict_batches = engine.predict_batches

    def recording(*args, **kwargs):
        for images, targets, outputs, seconds in real_predict_batches(*args, **kwargs):
            seen.extend(zip(targets, outputs))
            yield images, targets, outputs, seconds

    monkeypatch.setattr(engine, "predict_batches", recording)
    ours = engine.evaluate(golden.trained_model(), _loader(ds), "cpu")
    assert ours.stats["bbox"][0] > 0.3 and ours.stats["segm"][0] > 0.3
    assert len(seen) == len(ds)
    theirs_gt = ground_truth_from_dataset(ds)
    dets = {"bbox": [], "segm": []}
    for t, out in seen:
        for iou in dets:
            dets[iou] += detections_to_coco(t["image_id"], out, iou)
    assert score(theirs_gt, dets).stats == ours.stats


def test_thread_count_is_restored_even_on_error(monkeypatch):
    torch.set_num_threads(2)

    def boom(*args, **kwargs):
        raise RuntimeError("inference failed")
        yield  # pragma: no cover

    monkeypatch.setattr(engine, "predict_batches", boom)
    with pytest.raises(RuntimeError, match="inference failed"):
        engine.evaluate(build_model("small_maskrcnn", 2), [], "cpu", num_threads=1)
    assert torch.get_num_threads() == 2


def test_boxes_become_xywh_in_their_own_dtype_as_the_references_compute_them():
    boxes = torch.tensor([[0.1, 0.7, 100.3, 50.9]])
    expected_w, expected_h = float(boxes[0, 2] - boxes[0, 0]), float(boxes[0, 3] - boxes[0, 1])  # float32 maths
    assert expected_w != float(boxes[0, 2].double() - boxes[0, 0].double())  # the case tells the two apart
    (det,) = detections_to_coco(1, _output(boxes.tolist(), [1], [0.9]), "bbox")
    gt = GroundTruth()
    gt.add(1, 60, 120, _target(boxes.tolist(), [1]))
    assert det["bbox"][2:] == gt.annotations[0]["bbox"][2:] == [expected_w, expected_h]


def _untrained_outputs(threads: int, torch_threads: int, count: int = 8):
    torch.manual_seed(0)
    model = build_model("small_maskrcnn", 2)
    ds = Subset(PennFudanDataset(FIXTURES / "pennfudan" / "val", evaluation()), range(count))
    torch.set_num_threads(torch_threads)
    return [(t["image_id"], out) for t, out, _ in engine.predict(model, _loader(ds, batch_size=2), "cpu",
                                                                threads=threads)]


def test_side_by_side_inference_gives_one_threads_outputs_in_loader_order():
    """Two batches at once on one torch thread each equal the plain loop on one torch thread, bit for bit."""
    previous = torch.get_num_threads()
    try:
        plain = _untrained_outputs(threads=1, torch_threads=1)
        side_by_side = _untrained_outputs(threads=2, torch_threads=2)
    finally:
        torch.set_num_threads(previous)
    assert [i for i, _ in side_by_side] == [i for i, _ in plain] == list(range(8))
    assert sum(len(out["scores"]) for _, out in plain) > 0
    for (_, a), (_, b) in zip(plain, side_by_side):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_side_by_side_inference_restores_the_thread_count_when_stopped_early():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        ds = Subset(PennFudanDataset(FIXTURES / "pennfudan" / "val", evaluation()), range(4))
        outputs = engine.predict(build_model("small_maskrcnn", 2), _loader(ds, batch_size=2), "cpu", threads=2)
        next(outputs)
        assert torch.get_num_threads() == 1
        outputs.close()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)


def _imperfect_detections(dataset):
    """Ground truth with per-image shifts, rolled masks and one false positive each: AP well inside (0, 1)."""
    gt, dets = GroundTruth(), {"bbox": [], "segm": []}
    for i in range(len(dataset)):
        image, t = dataset[i]
        gt.add(t["image_id"], image.shape[-2], image.shape[-1], t)
        shift = i % 4
        masks = torch.cat([t["masks"].roll(shift, dims=-1), t["masks"][:1].roll(40, dims=-1)])
        out = {"boxes": torch.cat([t["boxes"] + shift, t["boxes"][:1] + 40]),
               "labels": torch.ones(len(masks), dtype=torch.int64),
               "scores": torch.linspace(0.9, 0.4, len(masks)), "masks": masks[:, None].float()}
        for iou in dets:
            dets[iou] += detections_to_coco(t["image_id"], out, iou)
    return gt, dets


def test_faster_coco_eval_backend_gives_identical_stats():
    pytest.importorskip("faster_coco_eval", reason="optional extra faster-coco-eval is not installed")
    gt, dets = _imperfect_detections(PennFudanDataset(FIXTURES / "pennfudan" / "val", evaluation()))
    a, b = score(gt, dets, "pycocotools"), score(gt, dets, "faster_coco_eval")
    assert 0.2 < a.stats["bbox"][0] < 0.95 and 0.2 < a.stats["segm"][0] < 0.95
    for iou in a.stats:
        assert b.stats[iou] == pytest.approx(a.stats[iou], abs=1e-6), iou
