"""Golden forward outputs: what each builder computes for fixed seeds and inputs, and a tolerant comparison.

In the spirit of torchvision's own model tests: inputs are generated on the CPU with a fixed seed (so every
device sees the same inputs), outputs are compacted (the top detections, mask mean and standard deviation,
the loss dict) and compared with ``rtol = atol = 0.01``. NMS ordering is unstable, so detections are
matched by IoU before their scores and boxes are compared.

    python -m reference.golden --out fixtures/golden     # regenerate every file
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

import torch
import torchvision
from torch import nn
from torchvision.ops import box_iou

from .checkpoint import atomic_write_json
from .models import BUILDERS, build_model
from .paths import fixtures_dir

RTOL = ATOL = 0.01  # torchvision's model tests use the same
TOP_K = 20  # detections kept per image
MIN_MATCHED = 0.9  # share of stored detections that must find a partner (NMS may swap borderline ones)
MATCH_IOU = 0.9
# Zoo models run on small inputs so that the whole golden set computes in seconds on a CPU.
SMALL_INPUT = {"min_size": 96, "max_size": 128}
NUM_CLASSES = 3


def golden_inputs(with_keypoints: bool = False) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Two images with bright blobs and matching targets, from a fixed CPU generator."""
    g = torch.Generator().manual_seed(1234)
    images, targets = [], []
    for h, w in ((96, 128), (112, 96)):
        img = torch.rand((3, h, w), generator=g) * 0.3
        boxes = torch.tensor([[10.0, 12.0, 50.0, 80.0], [60.0, 20.0, 90.0, 70.0]])
        masks = torch.zeros((2, h, w), dtype=torch.uint8)
        for k, (x1, y1, x2, y2) in enumerate(boxes.long().tolist()):
            img[:, y1:y2, x1:x2] += torch.rand((3, 1, 1), generator=g) * 0.7
            masks[k, y1:y2, x1:x2] = 1
        t = {"boxes": boxes, "labels": torch.tensor([1, 2]), "masks": masks}
        if with_keypoints:
            kp = torch.rand((2, 17, 3), generator=g)
            kp[..., 0] = boxes[:, None, 0] + kp[..., 0] * (boxes[:, None, 2] - boxes[:, None, 0])
            kp[..., 1] = boxes[:, None, 1] + kp[..., 1] * (boxes[:, None, 3] - boxes[:, None, 1])
            kp[..., 2] = 2.0
            t["keypoints"] = kp
            t["labels"] = torch.tensor([1, 1])
        images.append(img.clamp(0, 1))
        targets.append(t)
    return images, targets


def golden_model(name: str) -> nn.Module:
    torch.manual_seed(0)
    kwargs = {} if name == "small_maskrcnn" else dict(SMALL_INPUT)
    classes = 2 if name.startswith("keypoint") else NUM_CLASSES
    return build_model(name, classes, None, **kwargs)


def _compact(output: dict[str, torch.Tensor]) -> dict[str, Any]:
    order = torch.argsort(output["scores"], descending=True)[:TOP_K]
    out: dict[str, Any] = {
        "count": int(output["scores"].numel()),
        "boxes": output["boxes"][order].tolist(),
        "scores": output["scores"][order].tolist(),
        "labels": output["labels"][order].tolist(),
    }
    if "masks" in output:
        m = output["masks"].float()
        out["mask_mean"] = float(m.mean()) if m.numel() else 0.0
        out["mask_std"] = float(m.std()) if m.numel() > 1 else 0.0
    if "keypoints" in output:
        out["keypoints_mean"] = float(output["keypoints"][order][..., :2].mean()) if len(order) else 0.0
    return out


def compute(model: nn.Module, name: str, device: torch.device | str = "cpu",
            dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Eval-mode compacted outputs and the train-mode loss dict, for the golden inputs."""
    device = torch.device(device)
    images, targets = golden_inputs(with_keypoints=name.startswith("keypoint"))
    model = model.to(device=device, dtype=dtype)
    imgs = [i.to(device=device, dtype=dtype) for i in images]
    tgts = [{k: (v.to(device=device, dtype=dtype) if v.is_floating_point() else v.to(device)) for k, v in t.items()}
            for t in targets]
    model.eval()
    with torch.inference_mode():
        outputs = [{k: v.to("cpu", torch.float64) for k, v in o.items()} for o in model(imgs)]
    model.train()
    torch.manual_seed(0)  # the samplers of the RPN and RoI heads draw from the global RNG
    losses = {k: float(v.detach()) for k, v in model(imgs, tgts).items()}
    model.eval()
    return {"model": name, "outputs": [_compact(o) for o in outputs], "losses": losses}


def _close(a: float, b: float, rtol: float = RTOL, atol: float = ATOL) -> bool:
    return abs(a - b) <= atol + rtol * abs(b)


def compare(actual: dict[str, Any], expected: dict[str, Any], rtol: float = RTOL, atol: float = ATOL) -> list[str]:
    """Readable differences between two golden records; empty when they agree within tolerance."""
    diffs: list[str] = []
    for k, v in expected["losses"].items():
        got = actual["losses"].get(k)
        if got is None or not _close(got, v, rtol, atol):
            diffs.append(f"loss {k}: expected {v:.5f}, got {got}")
    for i, (a, e) in enumerate(zip(actual["outputs"], expected["outputs"])):
        for key in ("mask_mean", "mask_std", "keypoints_mean"):
            if key in e and not _close(a.get(key, float("nan")), e[key], rtol, atol):
                diffs.append(f"image {i} {key}: expected {e[key]:.5f}, got {a.get(key)}")
        if not e["scores"]:
            if a["scores"]:
                diffs.append(f"image {i}: expected no detections, got {len(a['scores'])}")
            continue
        if not a["scores"]:
            diffs.append(f"image {i}: expected {len(e['scores'])} detections, got none")
            continue
        ious = box_iou(torch.tensor(e["boxes"], dtype=torch.float64), torch.tensor(a["boxes"], dtype=torch.float64))
        used: set[int] = set()
        matched = 0
        for j in range(len(e["scores"])):
            cands = [c for c in torch.argsort(ious[j], descending=True).tolist()
                     if c not in used and ious[j, c] >= MATCH_IOU and a["labels"][c] == e["labels"][j]]
            if not cands:
                continue
            c = cands[0]
            used.add(c)
            matched += 1
            if not _close(a["scores"][c], e["scores"][j], rtol, atol):
                diffs.append(f"image {i} detection {j}: score expected {e['scores'][j]:.4f}, got {a['scores'][c]:.4f}")
            if not all(_close(x, y, rtol, 1.0) for x, y in zip(a["boxes"][c], e["boxes"][j])):
                diffs.append(f"image {i} detection {j}: box expected {[round(x, 2) for x in e['boxes'][j]]}, "
                             f"got {[round(x, 2) for x in a['boxes'][c]]}")
        if matched < MIN_MATCHED * len(e["scores"]):
            diffs.append(f"image {i}: only {matched} of {len(e['scores'])} stored detections matched (IoU >= "
                         f"{MATCH_IOU}, same label)")
    return diffs


def golden_dir() -> Path:
    return fixtures_dir() / "golden"


def path_for(name: str, folder: Path | None = None) -> Path:
    return (folder or golden_dir()) / f"{name}.json"


def save(record: dict[str, Any], path: Path) -> None:
    atomic_write_json(path, {**record, "torch": torch.__version__, "torchvision": torchvision.__version__})


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reference.golden", description="Regenerate golden outputs.")
    p.add_argument("--out", default=str(golden_dir()))
    p.add_argument("--models", nargs="+", default=list(BUILDERS), choices=list(BUILDERS))
    a = p.parse_args(argv)
    for name in a.models:
        record = compute(golden_model(name), name)
        save(record, path_for(name, Path(a.out)))
        print(f"{name}: {sum(o['count'] for o in record['outputs'])} detections, losses "
              f"{ {k: round(v, 4) for k, v in record['losses'].items()} }")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
