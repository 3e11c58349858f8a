"""Model surgery, offline weights, golden outputs, and parity across devices and configurations."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torchvision.models import detection as tvd

from reference.testing import golden
from reference.app.snapshot import compare_detections, detections_record
from reference.models import (BUILDERS, PRETRAINED_TRAINABLE_LAYERS, ModelConfigError, WeightsUnavailableError,
                              build_model, iou_types)

from spec_tests.conftest import accelerators

ZOO = ["maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2", "fasterrcnn_resnet50_fpn", "keypointrcnn_resnet50_fpn"]
SMALL = dict(golden.SMALL_INPUT)
MASK_RCNN_LOSSES = ["loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"]
HEAD_PREFIXES = ("roi_heads.box_predictor", "roi_heads.mask_predictor", "roi_heads.keypoint_predictor")


def _forward_params(names):
    """Parameters for tests that run a forward pass: the resnet50 zoo's go to the extended tier (random weights,
    seconds each on a CPU core); the small model and the tutorial's mobilenet stay in the default tier, where
    the trained golden record and the committed snapshot guard numeric drift."""
    return [pytest.param(n, marks=pytest.mark.extended) if n in ZOO else n for n in names]


def _kwargs(name):
    return {} if name == "small_maskrcnn" else dict(SMALL)


@pytest.fixture(scope="module")
def golden_model():
    """``golden.golden_model(name)``, built once per name and handed out as a deep copy (tests run it in train
    mode, which moves BatchNorm statistics): building a resnet50 zoo model costs about a second."""
    built = {}

    def get(name):
        if name not in built:
            built[name] = golden.golden_model(name)
        return copy.deepcopy(built[name])
    return get


@pytest.fixture(scope="module")
def architecture_record(golden_model):
    """``golden.compute`` per builder, run once: the golden test compares it, the loss-key test reads its
    train-mode loss dict (the same forward pass on the same inputs)."""
    records = {}

    def get(name):
        if name not in records:
            records[name] = golden.compute(golden_model(name), name)
        return records[name]
    return get


@pytest.mark.parametrize("name", list(BUILDERS))
def test_heads_have_the_requested_sizes(name):
    with torch.device("meta"):  # structure only: no weights to initialise (a resnet50 costs a second on a CPU)
        model = build_model(name, 5, **_kwargs(name))
    box = model.roi_heads.box_predictor
    assert box.cls_score.out_features == 5 and box.bbox_pred.out_features == 4 * 5
    if isinstance(model, tvd.MaskRCNN):
        assert model.roi_heads.mask_predictor.mask_fcn_logits.out_channels == 5
    if isinstance(model, tvd.KeypointRCNN):
        assert model.roi_heads.keypoint_predictor.kps_score_lowres.out_channels == 17


def test_keypoint_head_takes_the_requested_keypoint_count():
    with torch.device("meta"):
        model = build_model("keypointrcnn_resnet50_fpn", 2, num_keypoints=7, **SMALL)
    assert model.roi_heads.keypoint_predictor.kps_score_lowres.out_channels == 7


def test_seed_002_surgery_takes_dim_reduced_from_the_old_predictor():
    with torch.device("meta"):
        model = build_model("maskrcnn_resnet50_fpn_v2", 4, **SMALL)
    assert model.roi_heads.mask_predictor.conv5_mask.out_channels == 256


def test_mobilenet_backbone_has_the_tutorials_anchor_and_pooler_configuration():
    with torch.device("meta"):
        model = build_model("fasterrcnn_mobilenet_v2", 3, **SMALL)
    assert model.rpn.anchor_generator.num_anchors_per_location() == [15]
    pool = model.roi_heads.box_roi_pool
    assert pool.featmap_names == ["0"] and pool.output_size == (7, 7) and pool.sampling_ratio == 2


@pytest.mark.parametrize("name", _forward_params(["small_maskrcnn", "maskrcnn_resnet50_fpn"]))
def test_training_forward_returns_exactly_the_tutorials_loss_keys(name, architecture_record):
    # the record's losses are the train-mode forward's dict on the golden inputs and targets, in its order
    assert list(architecture_record(name)["losses"]) == MASK_RCNN_LOSSES


@pytest.mark.parametrize("name", _forward_params(["small_maskrcnn", "maskrcnn_resnet50_fpn",
                                                  "keypointrcnn_resnet50_fpn"]))
def test_eval_outputs_have_documented_dtypes_shapes_and_no_background_label(name, golden_model):
    model = golden_model(name).eval()
    images, _ = golden.golden_inputs()
    with torch.inference_mode():
        outputs = model(images)
    for img, out in zip(images, outputs):
        n = len(out["scores"])
        assert out["boxes"].dtype == torch.float32 and tuple(out["boxes"].shape) == (n, 4)
        assert out["labels"].dtype == torch.int64 and out["scores"].dtype == torch.float32
        assert not (out["labels"] == 0).any()
        if "masks" in out:
            assert tuple(out["masks"].shape) == (n, 1, *img.shape[-2:])
        if "keypoints" in out:
            assert tuple(out["keypoints"].shape) == (n, 17, 3)


@pytest.mark.parametrize("name", _forward_params(["small_maskrcnn", "maskrcnn_resnet50_fpn"]))
def test_images_without_objects_give_zero_regression_and_mask_losses(name, golden_model):
    model = golden_model(name).train()
    images, _ = golden.golden_inputs()
    empty = [{"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64),
              "masks": torch.zeros((0, *img.shape[-2:]), dtype=torch.uint8)} for img in images]
    losses = model(images, empty)
    for key in ("loss_box_reg", "loss_rpn_box_reg", "loss_mask"):
        assert float(losses[key].detach()) == 0.0, key
    assert float(losses["loss_classifier"].detach()) > 0


def _coco_stand_in(name: str, path) -> dict:
    """A randomly initialised ``name`` with COCO's class count, saved to ``path``: stands in for the COCO
    checkpoint (offline). Returns the state saved."""
    torch.manual_seed(1)
    if name.startswith("keypoint"):
        source = tvd.keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=2, **SMALL)
    else:
        source = BUILDERS[name](num_classes=91, weights=None, **SMALL)
    state = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, path)
    return state


@pytest.fixture(scope="module")
def coco_maskrcnn(tmp_path_factory):
    """The tutorial model's COCO stand-in, built once (a resnet50 costs about a second) for the tests that load it."""
    path = tmp_path_factory.mktemp("coco") / "maskrcnn_resnet50_fpn.pth"
    return _coco_stand_in("maskrcnn_resnet50_fpn", path), path


# the tutorial's model in the default tier, the rest of the zoo in the extended one (two resnet50s each)
@pytest.mark.parametrize("name", [n if n == "maskrcnn_resnet50_fpn" else pytest.param(n, marks=pytest.mark.extended)
                                  for n in ZOO])
def test_surgery_keeps_every_pretrained_parameter_outside_the_heads(name, tmp_path, request):
    if name == "maskrcnn_resnet50_fpn":
        state, path = request.getfixturevalue("coco_maskrcnn")
    else:
        path = tmp_path / "coco.pth"
        state = _coco_stand_in(name, path)
    torch.manual_seed(2)
    model = build_model(name, 3, weights=str(path), **SMALL)
    after = model.state_dict()
    kept = [k for k in state if not k.startswith(HEAD_PREFIXES)]
    assert kept and all(torch.equal(after[k], state[k]) for k in kept)
    # new heads are freshly initialised; biases start at constants and may coincide, so compare the weights
    swapped = [k for k in after if k.startswith(HEAD_PREFIXES) and k.endswith("weight")]
    assert swapped and all(k not in state or after[k].shape != state[k].shape or not torch.equal(after[k], state[k])
                           for k in swapped)


def test_local_weights_train_the_documented_backbone_layers(coco_maskrcnn):
    model = build_model("maskrcnn_resnet50_fpn", 2, weights=str(coco_maskrcnn[1]), **SMALL)
    trainable = {n.split(".")[0] for n, p in model.backbone.body.named_parameters() if p.requires_grad}
    assert trainable == set(PRETRAINED_TRAINABLE_LAYERS)  # torchvision's default: trainable_backbone_layers=3
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.backbone.body.modules())
    with torch.device("meta"):  # which parameters train is structure: no weights needed
        random_init = build_model("maskrcnn_resnet50_fpn", 2, **SMALL)
    assert all(p.requires_grad for p in random_init.backbone.body.parameters())  # 5 layers without weights


def test_default_weights_with_an_empty_cache_fail_at_once_naming_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    fetched = []  # "at once": refused before any download is attempted (counted, not timed)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: fetched.append(a))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: fetched.append(a))
    with pytest.raises(WeightsUnavailableError) as info:
        build_model("maskrcnn_resnet50_fpn", 2, weights="DEFAULT")
    assert fetched == []
    msg = str(info.value)
    assert "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth" in msg and str(tmp_path / "hub" / "checkpoints") in msg


def test_default_weights_come_from_the_hub_cache_when_present(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    source = tvd.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    (tmp_path / "checkpoints").mkdir()
    url = tvd.FasterRCNN_ResNet50_FPN_Weights.DEFAULT.url
    torch.save(source.state_dict(), tmp_path / "checkpoints" / url.rsplit("/", 1)[-1])
    model = build_model("fasterrcnn_resnet50_fpn", 2, weights="DEFAULT")
    assert torch.equal(model.backbone.fpn.inner_blocks[0][0].weight, source.backbone.fpn.inner_blocks[0][0].weight)


def test_a_file_that_is_not_a_state_dict_is_refused(tmp_path):
    (tmp_path / "x.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelConfigError, match="x.pth"):
        build_model("small_maskrcnn", 2, weights=str(tmp_path / "x.pth"))


def test_unknown_model_names_list_the_known_ones():
    with pytest.raises(ModelConfigError, match="small_maskrcnn"):
        build_model("yolo", 2)


def test_iou_types_follow_the_model_class():
    with torch.device("meta"):  # the class decides: no weights needed
        assert iou_types(build_model("small_maskrcnn", 2)) == ["bbox", "segm"]
        assert iou_types(build_model("fasterrcnn_mobilenet_v2", 2, **SMALL)) == ["bbox"]


# --- golden outputs: the trained model ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained_golden():
    return json.loads(golden.path_for(golden.TRAINED_NAME).read_text())


def _trained(**kw):
    return golden.compute_trained(golden.trained_model(), **kw)


@pytest.fixture(scope="module")
def trained_actual():
    """``_trained()`` (float32, contiguous, the process's thread count), computed once for the tests that
    compare with it; a test that changes it works on a copy."""
    return {"threads": torch.get_num_threads(), "record": _trained()}


def test_trained_golden_outputs_match(trained_golden, trained_actual):
    diffs = golden.compare_trained(trained_golden, trained_actual["record"])
    assert not diffs, (f"the trained model differs from its golden record (made with torch "
                       f"{trained_golden['torch']}, torchvision {trained_golden['torchvision']}):\n" + "\n".join(diffs))


def test_trained_golden_record_can_see_drift(trained_golden):
    """Scores spread over the range and masks have structure, so that small numeric changes show."""
    scores = [s for im in trained_golden["images"] for s in im["scores"]]
    assert len(scores) >= 20 and min(scores) < 0.2 and max(scores) > 0.95
    assert all(len(im["masks"]) == len(im["scores"]) for im in trained_golden["images"])
    assert len({tuple(im["masks"][0]["size"]) for im in trained_golden["images"]}) == 3  # three input sizes


def test_trained_golden_names_a_moved_score():
    model = golden.trained_model()
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.bias[1] += 0.05
    diffs = golden.compare_trained(json.loads(golden.path_for(golden.TRAINED_NAME).read_text()),
                                   golden.compute_trained(model))
    assert any("score expected" in d for d in diffs)
    assert any("loss loss_classifier" in d for d in diffs)


def test_trained_golden_names_a_changed_mask():
    model = golden.trained_model()
    with torch.no_grad():
        model.roi_heads.mask_predictor.mask_fcn_logits.bias += 0.5
    diffs = golden.compare_trained(json.loads(golden.path_for(golden.TRAINED_NAME).read_text()),
                                   golden.compute_trained(model))
    assert any("mask IoU" in d for d in diffs)


def test_trained_golden_names_a_lost_detection(trained_golden, trained_actual):
    stored = json.loads(json.dumps(trained_golden))
    actual = copy.deepcopy(trained_actual["record"])
    image = next(im for im in actual["images"] if im["scores"] and im["scores"][0] > 0.5)
    for key in ("boxes", "scores", "labels", "masks"):
        del image[key][0]
    diffs = golden.compare_trained(stored, actual)
    assert any("lost" in d for d in diffs) and any("stored" in d and "detections" in d for d in diffs)


# --- golden outputs: the builders' architecture -------------------------------------------------------------

@pytest.mark.parametrize("name", _forward_params(BUILDERS))
def test_architecture_golden_outputs_match(name, architecture_record):
    expected = json.loads(golden.path_for(name).read_text())
    actual = architecture_record(name)
    diffs = golden.compare(expected, actual)
    assert not diffs, (f"{name} differs from its golden file (made with torch {expected['torch']}, "
                       f"torchvision {expected['torchvision']}):\n" + "\n".join(diffs))


def test_golden_files_record_the_versions_that_made_them():
    for name in [*BUILDERS, golden.TRAINED_NAME]:
        record = json.loads(golden.path_for(name).read_text())
        assert record["torch"] and record["torchvision"]


# --- parity (the trained model; tolerances as the golden record's unless said) -----------------------------
# The platform's numerics (thread count, float64, memory format) rather than this project's results: the extended
# tier, which CI and tox run after the default one. None of the three is a catcher in the regression catalogue.

@pytest.mark.extended
def test_one_and_two_threads_agree(trained_actual):
    runs = {trained_actual["threads"]: trained_actual["record"]}  # the shared run, when it used 1 or 2 threads
    for threads in (1, 2):
        if threads not in runs:
            torch.set_num_threads(threads)
            runs[threads] = _trained()
    assert golden.compare_trained(runs[2], runs[1]) == []


@pytest.mark.extended
def test_float64_agrees_with_float32(trained_actual):
    f64 = golden.compute_trained(golden.trained_model(), dtype=torch.float64)
    assert golden.compare_trained(trained_actual["record"], f64, golden.PARITY_DTYPE_TOLERANCES,
                                  golden.PARITY_DTYPE_LOSS_RTOL) == []


@pytest.mark.extended
def test_channels_last_agrees_with_contiguous(trained_actual):
    model = golden.trained_model().to(memory_format=torch.channels_last)
    assert golden.compare_trained(trained_actual["record"], golden.compute_trained(model)) == []


@pytest.mark.extended  # scripting takes seconds, and the regression catalogue must deselect it (no catches)
def test_torchscript_agrees_with_eager_on_images_the_model_does_not_resize():
    """Scripted, torchvision's transform computes the resize differently: on the odd-sized golden inputs
    (0.788x, 1.074x) boxes move up to 1.7 px and mask IoU drops to 0.78 (measured, torchvision 0.29.1). On
    images at the model's own size the two agree within the golden tolerances."""
    model = golden.trained_model()
    scripted = torch.jit.script(model)
    images = golden.trained_inputs()[0][:len(golden.VAL_IMAGES)]
    with torch.inference_mode():
        eager = model(images)
        _, script_out = scripted(images)
    for a, b in zip(eager, script_out):
        diff = compare_detections(detections_record(a), detections_record(b), golden.TRAINED_TOLERANCES, None)
        assert diff.ok, diff.failures()


@pytest.mark.gpu
@pytest.mark.parametrize("device", accelerators() or ["cuda"])
def test_accelerator_matches_the_cpu(device, trained_actual):
    on_device = golden.compute_trained(golden.trained_model(), device=device)
    assert golden.compare_trained(trained_actual["record"], on_device, golden.PARITY_DEVICE_TOLERANCES) == []
