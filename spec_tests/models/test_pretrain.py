"""The pretrained stand-in (``weights="standin"``): what it was trained on, how it is loaded, and the tutorial's
surgery on it."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from torchvision.ops import FrozenBatchNorm2d

from reference import models
from reference.models import ModelConfigError, build_model, standin_path
from reference.models import pretrain
from reference.testing.synthetic import SHAPE_CLASSES, make_shapes_scene

from spec_tests.conftest import FIXTURES

MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())["pretrained"]


def test_the_bundled_stand_in_is_the_file_the_manifest_names():
    path = FIXTURES / MANIFEST["file"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == MANIFEST["sha256"]
    assert standin_path() == path


def test_the_manifest_records_the_recipe_the_data_and_the_seed_it_was_made_with():
    assert MANIFEST["recipe"] == pretrain.asdict(pretrain.RECIPE)
    assert MANIFEST["data"] == json.loads(json.dumps(pretrain.asdict(pretrain.DataRecipe())))
    assert MANIFEST["seed"] == 0 and MANIFEST["classes"] == ["background", *SHAPE_CLASSES]


def test_the_pretraining_data_holds_no_person():
    """A different distribution from the demo's pedestrians: six polygon classes, none of them a person."""
    assert "person" not in SHAPE_CLASSES and len(SHAPE_CLASSES) == 6
    scenes = [make_shapes_scene(MANIFEST["data"]["seed"], i) for i in range(20)]
    labels = {lab for s in scenes for lab in s.labels}
    assert labels <= set(range(1, 7)) and len(labels) >= 4
    assert all(len(s.labels) == len(s.masks) and s.masks.any(axis=(1, 2)).all() for s in scenes)


def test_a_changed_stand_in_file_is_refused_naming_it(tmp_path, monkeypatch):
    (tmp_path / "pretrained").mkdir()
    (tmp_path / "manifest.json").write_text((FIXTURES / "manifest.json").read_text())
    data = bytearray((FIXTURES / MANIFEST["file"]).read_bytes())
    data[-100] ^= 0xFF
    (tmp_path / MANIFEST["file"]).write_bytes(bytes(data))
    monkeypatch.setattr("reference.paths.fixtures_dir", lambda: tmp_path)
    with pytest.raises(ModelConfigError, match="small_maskrcnn_shapes.pt.*changed"):
        standin_path()


@pytest.fixture(scope="module")
def surgery():
    torch.manual_seed(0)
    state = models.load_state_dict_file(standin_path())
    return state, build_model("small_maskrcnn", 2, models.STANDIN)


def test_surgery_keeps_every_pretrained_weight_outside_the_predictors(surgery):
    state, model = surgery
    after = model.state_dict()
    kept = [k for k in state if not k.startswith(("roi_heads.box_predictor", "roi_heads.mask_predictor"))
            and not k.endswith("num_batches_tracked")]
    assert len(kept) > 50
    assert all(torch.equal(after[k], state[k].float()) for k in kept)


def test_surgery_gives_predictors_for_the_new_classes_background_included(surgery):
    state, model = surgery
    assert state["roi_heads.box_predictor.cls_score.weight"].shape[0] == 7  # background + six shapes
    assert model.roi_heads.box_predictor.cls_score.out_features == 2
    assert model.roi_heads.box_predictor.bbox_pred.out_features == 8
    assert model.roi_heads.mask_predictor.mask_fcn_logits.out_channels == 2


def test_a_pretrained_small_model_freezes_batchnorm_and_its_first_two_stages(surgery):
    """As torchvision treats a COCO backbone: FrozenBatchNorm2d, conv1/layer1 (here stem/layer1) not trained."""
    _, model = surgery
    body = model.backbone.body
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in body.modules())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in body.modules())
    trainable = {n.split(".")[0] for n, p in body.named_parameters() if p.requires_grad}
    assert trainable == {"layer2", "layer3"}
    assert all(p.requires_grad for p in model.roi_heads.parameters())


def test_a_fine_tuned_checkpoint_loads_as_pretrained_weights_again(surgery, tmp_path):
    """A run's last.pt (frozen BatchNorm, no num_batches_tracked) can start the next fine-tuning."""
    _, model = surgery
    torch.save({"model": model.state_dict()}, tmp_path / "last.pt")
    again = build_model("small_maskrcnn", 3, str(tmp_path / "last.pt"))
    kept = [k for k in model.state_dict() if not k.startswith(("roi_heads.box_predictor", "roi_heads.mask_predictor"))]
    assert all(torch.equal(again.state_dict()[k], model.state_dict()[k]) for k in kept)
    assert again.roi_heads.box_predictor.cls_score.out_features == 3


def test_default_weights_for_the_small_model_point_to_the_stand_in():
    with pytest.raises(models.WeightsUnavailableError, match="standin"):
        build_model("small_maskrcnn", 2, "DEFAULT")


@pytest.mark.extended
def test_pretraining_twice_with_the_same_seed_writes_the_same_bytes(tmp_path):
    """Reproducible: the same command gives the same file (here a short run: 8 scenes, one epoch)."""
    data, recipe = pretrain.DataRecipe(count=8), pretrain.replace(pretrain.RECIPE, epochs=1)
    first = pretrain.pretrain(tmp_path / "a.pt", data, recipe, seed=0, threads=1)
    second = pretrain.pretrain(tmp_path / "b.pt", data, recipe, seed=0, threads=1)
    assert first["sha256"] == second["sha256"]
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    other = pretrain.pretrain(tmp_path / "c.pt", data, recipe, seed=1, threads=1)
    assert other["sha256"] != first["sha256"]
