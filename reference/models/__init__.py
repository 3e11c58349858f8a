"""Model surgery from the tutorials, a small Mask R-CNN for CPU runs, and offline-first weights.

Every builder takes ``num_classes`` (background included) and ``weights``:

- ``None``: random initialisation (no download of any kind, backbone included);
- ``"DEFAULT"``: torchvision's COCO weights (for ``fasterrcnn_mobilenet_v2``, which has none, the ImageNet
  backbone), taken from the torch hub cache only. When the file is not there the builder fails at once, naming
  the file and the folder to put it in: nothing is downloaded silently. ``small_maskrcnn`` has no COCO weights
  and refuses ``"DEFAULT"``; its pretrained weights are ``"standin"`` (:mod:`reference.models.pretrain`);
- a path: a local state dict (or a checkpoint holding one under ``"model"``), read with
  ``torch.load(weights_only=True)`` and loaded *before* the heads are swapped, so it plays the role of the
  pretrained weights (``fasterrcnn_mobilenet_v2``: the whole detector's, loaded as built for ``num_classes``).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torchvision.models import detection as tvd
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.keypoint_rcnn import KeypointRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.rpn import AnchorGenerator
from torchvision.ops import FrozenBatchNorm2d, MultiScaleRoIAlign

from ..errors import UserError

Weights = str | Path | None


class WeightsUnavailableError(UserError, FileNotFoundError):
    """Pretrained weights were asked for but are not on this machine."""


class ModelConfigError(UserError, ValueError):
    """An unknown builder name, or weights that do not fit the model."""


def _hub_file(weights_enum) -> Path:
    url = weights_enum.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def _resolve_default(weights_enum):
    """The torchvision weights enum when its file is in the hub cache; else fail at once, saying where."""
    path = _hub_file(weights_enum)
    if not path.is_file():
        raise WeightsUnavailableError(
            f"pretrained weights {path.name} are not in the torch hub cache; this machine cannot download "
            f"them. Fetch {weights_enum.url} elsewhere and place it at {path} (folder {path.parent}), or "
            "pass weights=None to start from random weights.")
    return weights_enum


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a local file, without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailableError(f"weights file {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - weights_only refuses anything that is not plain data
        raise ModelConfigError(f"{path}: not a weights file or checkpoint ({type(exc).__name__}: {exc})") from exc
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelConfigError(f"{path}: holds no state dict of tensors")
    return obj


# torchvision trains the last 3 of a pretrained resnet50's 5 stages (trainable_backbone_layers=3).
PRETRAINED_TRAINABLE_LAYERS = ("layer4", "layer3", "layer2")


def _as_pretrained(model: nn.Module, frozen_bn: bool) -> None:
    """Give a randomly built zoo model the structure torchvision gives a pretrained one.

    With COCO weights torchvision freezes ``conv1`` and ``layer1`` of the backbone and (v1 models) uses
    ``FrozenBatchNorm2d``; a model about to receive a local weights file must look the same, or a real
    checkpoint (which has no ``num_batches_tracked``) would not load and fine-tuning would differ.
    """
    body = model.backbone.body
    if frozen_bn:
        freeze_batchnorm(body)
    for name, p in body.named_parameters():
        if not name.startswith(PRETRAINED_TRAINABLE_LAYERS):
            p.requires_grad_(False)


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` in ``module`` by a ``FrozenBatchNorm2d`` holding its statistics and affine
    parameters (what torchvision builds a pretrained backbone with); returns ``module``."""
    for name, bn in list(module.named_modules()):
        if isinstance(bn, nn.BatchNorm2d):
            parent = module.get_submodule(name.rpartition(".")[0]) if "." in name else module
            frozen = FrozenBatchNorm2d(bn.num_features, eps=bn.eps)
            with torch.no_grad():
                for k in ("weight", "bias", "running_mean", "running_var"):
                    getattr(frozen, k).copy_(getattr(bn, k))
            setattr(parent, name.rpartition(".")[2], frozen)
    return module


def has_frozen_batchnorm(state: dict[str, torch.Tensor], model: nn.Module) -> bool:
    """Whether ``state`` was saved from ``model``'s architecture with frozen BatchNorm (as a model fine-tuned
    from pretrained weights is): ``model`` has BatchNorm layers but ``state`` has none of their counters."""
    has_bn = any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    return has_bn and not any(k.endswith("num_batches_tracked") for k in state)


def _zoo(builder: Callable, weights_enum, weights: Weights, frozen_bn: bool = True, **kwargs) -> nn.Module:
    """A torchvision zoo model with COCO heads, its weights resolved offline-first."""
    if weights == "DEFAULT":
        return builder(weights=_resolve_default(weights_enum), **kwargs)
    model = builder(weights=None, weights_backbone=None, **kwargs)
    if weights is not None:
        _as_pretrained(model, frozen_bn)
        state = load_state_dict_file(weights)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelConfigError(f"{weights}: does not fit {builder.__name__}: {str(exc)[:300]}") from exc
    return model


def maskrcnn_resnet50_fpn(num_classes: int, weights: Weights = None, **kwargs) -> nn.Module:
    """The tutorial's ``get_model_instance_segmentation``: swap the box and the mask predictor."""
    model = _zoo(tvd.maskrcnn_resnet50_fpn, tvd.MaskRCNN_ResNet50_FPN_Weights.DEFAULT, weights, **kwargs)
    in_features = model.roi_heads.box_predictor.cls_score.in_features
    model.roi_heads.box_predictor = FastRCNNPredictor(in_features, num_classes)
    in_mask = model.roi_heads.mask_predictor.conv5_mask.in_channels
    model.roi_heads.mask_predictor = MaskRCNNPredictor(in_mask, 256, num_classes)
    return model


def maskrcnn_resnet50_fpn_v2(num_classes: int, weights: Weights = None, **kwargs) -> nn.Module:
    """Seed 002's surgery: ``dim_reduced`` taken from the old predictor's ``conv5_mask.out_channels``."""
    model = _zoo(tvd.maskrcnn_resnet50_fpn_v2, tvd.MaskRCNN_ResNet50_FPN_V2_Weights.DEFAULT, weights,
                 frozen_bn=False, **kwargs)
    in_features = model.roi_heads.box_predictor.cls_score.in_features
    model.roi_heads.box_predictor = FastRCNNPredictor(in_features, num_classes)
    old = model.roi_heads.mask_predictor.conv5_mask
    model.roi_heads.mask_predictor = MaskRCNNPredictor(old.in_channels, old.out_channels, num_classes)
    return model


def fasterrcnn_resnet50_fpn(num_classes: int, weights: Weights = None, **kwargs) -> nn.Module:
    """The tutorial's first option: a COCO Faster R-CNN with a new box predictor."""
    model = _zoo(tvd.fasterrcnn_resnet50_fpn, tvd.FasterRCNN_ResNet50_FPN_Weights.DEFAULT, weights, **kwargs)
    in_features = model.roi_heads.box_predictor.cls_score.in_features
    model.roi_heads.box_predictor = FastRCNNPredictor(in_features, num_classes)
    return model


def keypointrcnn_resnet50_fpn(num_classes: int = 2, weights: Weights = None, num_keypoints: int = 17,
                              **kwargs) -> nn.Module:
    """Keypoint R-CNN with new box and keypoint predictors (``num_keypoints`` per instance)."""
    model = _zoo(tvd.keypointrcnn_resnet50_fpn, tvd.KeypointRCNN_ResNet50_FPN_Weights.DEFAULT, weights, **kwargs)
    in_features = model.roi_heads.box_predictor.cls_score.in_features
    model.roi_heads.box_predictor = FastRCNNPredictor(in_features, num_classes)
    in_kp = model.roi_heads.keypoint_predictor.kps_score_lowres.in_channels
    model.roi_heads.keypoint_predictor = KeypointRCNNPredictor(in_kp, num_keypoints)
    return model


def fasterrcnn_mobilenet_v2(num_classes: int, weights: Weights = None, **kwargs) -> nn.Module:
    """The tutorial's second option: MobileNetV2 features, one feature map, 5 sizes x 3 ratios of anchors.

    ``weights="DEFAULT"`` means the ImageNet MobileNetV2 backbone (the detector has no COCO weights).
    """
    from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

    if weights == "DEFAULT":
        features = mobilenet_v2(weights=_resolve_default(MobileNet_V2_Weights.DEFAULT)).features
    else:
        features = mobilenet_v2(weights=None).features
    features.out_channels = 1280
    anchors = AnchorGenerator(sizes=((32, 64, 128, 256, 512),), aspect_ratios=((0.5, 1.0, 2.0),))
    pooler = MultiScaleRoIAlign(featmap_names=["0"], output_size=7, sampling_ratio=2)
    model = tvd.FasterRCNN(features, num_classes=num_classes, rpn_anchor_generator=anchors,
                           box_roi_pool=pooler, **kwargs)
    if weights not in (None, "DEFAULT"):
        model.load_state_dict(load_state_dict_file(weights))
    return model


class _SmallBackbone(nn.Module):
    """A stem (stride 2) and three conv stages (strides 4, 8, 16) with BatchNorm; trains from scratch on small
    images."""

    def __init__(self, widths: tuple[int, int, int] = (32, 64, 96)):
        super().__init__()

        def block(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

        self.stem = nn.Sequential(nn.Conv2d(3, 24, 3, 2, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU(inplace=True))
        self.layer1 = block(24, widths[0], 2)
        self.layer2 = block(widths[0], widths[1], 2)
        self.layer3 = block(widths[1], widths[2], 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # only used through IntermediateLayerGetter
        return self.layer3(self.layer2(self.layer1(self.stem(x))))


@dataclass(frozen=True)
class SmallConfig:
    """Sizes of the small Mask R-CNN, chosen for 100-200 px images and 2 CPU cores."""

    image_size: int = 128  # shorter side the transform resizes to (our fixtures are 160x128: no resize)
    max_size: int = 160
    fpn_channels: int = 64
    rpn_batch: int = 128
    roi_batch: int = 64
    proposals_train: int = 256
    proposals_test: int = 128


# The small model's pretrained stand-in for COCO weights (reference.models.pretrain makes it), by name
STANDIN = "standin"
STANDIN_FILE = "pretrained/small_maskrcnn_shapes.pt"
# the stages a pretrained small model keeps fixed, as torchvision keeps conv1 and layer1 of a COCO resnet50
SMALL_FROZEN_STAGES = ("stem", "layer1")


def standin_path() -> Path:
    """The bundled stand-in's file, after checking its SHA-256 against ``fixtures/manifest.json``."""
    import hashlib
    import json

    from ..paths import fixtures_dir

    path = fixtures_dir() / STANDIN_FILE
    if not path.is_file():
        raise WeightsUnavailableError(f"the pretrained stand-in {path} is missing; make it with "
                                      f"python -m reference.models.pretrain --out {path}")
    want = json.loads((fixtures_dir() / "manifest.json").read_text())["pretrained"]["sha256"]
    got = hashlib.sha256(path.read_bytes()).hexdigest()
    if got != want:
        raise ModelConfigError(f"{path}: SHA-256 {got[:12]}... is not the manifest's {want[:12]}...: the file changed")
    return path


def _small(num_classes: int, config: SmallConfig, **kwargs) -> tvd.MaskRCNN:
    body = _SmallBackbone()
    backbone = BackboneWithFPN(body, return_layers={"layer1": "0", "layer2": "1", "layer3": "2"},
                               in_channels_list=[32, 64, 96], out_channels=config.fpn_channels)
    c = config.fpn_channels
    # BackboneWithFPN adds a max-pooled fourth level ("pool"), so four levels of anchors
    anchors = AnchorGenerator(sizes=((16, 24), (32, 48), (64, 96), (128, 160)), aspect_ratios=((1.0, 2.0, 3.0),) * 4)
    model = tvd.MaskRCNN(
        backbone, num_classes=None,
        min_size=config.image_size, max_size=config.max_size,
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=config.proposals_train * 2, rpn_post_nms_top_n_train=config.proposals_train,
        rpn_pre_nms_top_n_test=config.proposals_test * 2, rpn_post_nms_top_n_test=config.proposals_test,
        rpn_batch_size_per_image=config.rpn_batch, box_batch_size_per_image=config.roi_batch,
        box_roi_pool=MultiScaleRoIAlign(["0", "1", "2"], 7, 2),
        box_head=TwoMLPHead(c * 7 * 7, 256), box_predictor=FastRCNNPredictor(256, num_classes),
        mask_roi_pool=MultiScaleRoIAlign(["0", "1", "2"], 14, 2),
        mask_head=MaskRCNNHeads(c, (c, c, c, c), 1), mask_predictor=MaskRCNNPredictor(c, c, num_classes),
        **kwargs)
    return model


def small_maskrcnn(num_classes: int, weights: Weights = None, config: SmallConfig = SmallConfig(),
                   **kwargs) -> nn.Module:
    """A Mask R-CNN small enough to train on a 2-core CPU in minutes (tests and the main job).

    ``weights``: None (random), ``"standin"`` (the bundled stand-in pretrained on generated shapes, see
    :mod:`reference.models.pretrain`) or a path to a state dict or checkpoint of this architecture.
    Pretrained weights are treated as torchvision treats COCO weights: the model is built with the weights'
    own class count and loaded, its BatchNorm frozen (``FrozenBatchNorm2d``) and its first two stages
    (``stem``, ``layer1``) not trained; then the tutorial's surgery replaces the box and the mask predictor by
    new ones for ``num_classes``.
    """
    if weights == "DEFAULT":
        raise WeightsUnavailableError("small_maskrcnn has no COCO weights; use weights=None, "
                                      f"{STANDIN!r} (the bundled pretrained stand-in) or a path")
    if weights is None:
        return _small(num_classes, config, **kwargs)
    state = load_state_dict_file(standin_path() if weights == STANDIN else weights)
    source = state.get("roi_heads.box_predictor.cls_score.weight")
    if source is None:
        raise ModelConfigError(f"{weights}: not small_maskrcnn weights (no roi_heads.box_predictor)")
    model = _small(int(source.shape[0]), config, **kwargs)
    # frozen before loading: FrozenBatchNorm2d takes pretrained BatchNorm weights (it drops their counters) and
    # a fine-tuned run's last.pt alike
    freeze_batchnorm(model.backbone.body)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelConfigError(f"{weights}: does not fit small_maskrcnn: {str(exc)[:300]}") from exc
    for name, p in model.backbone.body.named_parameters():
        if name.startswith(SMALL_FROZEN_STAGES):
            p.requires_grad_(False)
    c = config.fpn_channels
    model.roi_heads.box_predictor = FastRCNNPredictor(256, num_classes)
    model.roi_heads.mask_predictor = MaskRCNNPredictor(c, c, num_classes)
    return model


BUILDERS: dict[str, Callable[..., nn.Module]] = OrderedDict(
    small_maskrcnn=small_maskrcnn,
    maskrcnn_resnet50_fpn=maskrcnn_resnet50_fpn,
    maskrcnn_resnet50_fpn_v2=maskrcnn_resnet50_fpn_v2,
    fasterrcnn_resnet50_fpn=fasterrcnn_resnet50_fpn,
    fasterrcnn_mobilenet_v2=fasterrcnn_mobilenet_v2,
    keypointrcnn_resnet50_fpn=keypointrcnn_resnet50_fpn,
)


def build_model(name: str, num_classes: int, weights: Weights = None, **kwargs) -> nn.Module:
    """The model ``name`` from :data:`BUILDERS`; unknown names fail with the list of known ones."""
    if name not in BUILDERS:
        raise ModelConfigError(f"unknown model {name!r}; choose from {', '.join(BUILDERS)}")
    return BUILDERS[name](num_classes=num_classes, weights=weights, **kwargs)


def predicts_masks(model: nn.Module) -> bool:
    """Whether ``model`` has a working mask branch (torchvision's ``RoIHeads.has_mask()``): it then trains on
    targets' ``masks`` and predicts masks."""
    roi_heads = getattr(model, "roi_heads", None)
    return roi_heads is not None and roi_heads.has_mask()


def predicts_keypoints(model: nn.Module) -> bool:
    """Whether ``model`` has a keypoint branch (``RoIHeads.has_keypoint()``): it trains on ``keypoints``."""
    roi_heads = getattr(model, "roi_heads", None)
    return roi_heads is not None and roi_heads.has_keypoint()


def make_box_only(model: nn.Module) -> nn.Module:
    """Remove a Mask R-CNN's mask branch in place, so that it trains and predicts boxes only; returns ``model``.

    torchvision's ``RoIHeads.has_mask()`` is False once ``mask_roi_pool``, ``mask_head`` and ``mask_predictor``
    are None: training then needs no ``masks`` in the targets, outputs have none, and the state dict has no
    ``roi_heads.mask_*`` entries. Works on a model with pretrained weights loaded (the box part is kept).
    """
    roi_heads = model.roi_heads
    roi_heads.mask_roi_pool = roi_heads.mask_head = roi_heads.mask_predictor = None
    return model


def is_box_only_state(state: dict[str, torch.Tensor], model: nn.Module) -> bool:
    """Whether ``state`` was saved from ``model``'s architecture made box-only (:func:`make_box_only`):
    ``model`` has a mask branch but ``state`` has none of its weights."""
    return predicts_masks(model) and not any(k.startswith("roi_heads.mask_") for k in state)


def iou_types(model: nn.Module) -> list[str]:
    """COCO IoU types a model is evaluated on, as the references decide them (subclasses included); a Mask
    R-CNN made box-only (:func:`make_box_only`) is evaluated on boxes only."""
    types = ["bbox"]
    if isinstance(model, tvd.MaskRCNN) and predicts_masks(model):
        types.append("segm")
    if isinstance(model, tvd.KeypointRCNN) and predicts_keypoints(model):
        types.append("keypoints")
    return types
