"""The run report: ``report.json``, ``report.md`` and a plot of training loss and validation mAP per epoch."""

from __future__ import annotations

import io
import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torchvision

from ..atomic_io import atomic_write_bytes, atomic_write_json, atomic_write_text
from ..engine.coco_eval import STAT_NAMES
from ..training.fit import FitResult


def versions() -> dict[str, str]:
    """Versions that change results: python, torch, torchvision, pycocotools, numpy, pillow; and the machine
    (architecture and torch's thread count)."""
    import numpy
    import PIL
    from importlib.metadata import PackageNotFoundError, version

    try:
        pycoco = version("pycocotools")
    except PackageNotFoundError:
        pycoco = "missing"
    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "pycocotools": pycoco, "numpy": numpy.__version__, "pillow": PIL.__version__,
            "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads"}


def build_report(result: FitResult, meta: dict[str, Any]) -> dict[str, Any]:
    final = result.final.named() if result.final else {}
    return {
        **meta,
        "versions": versions(),
        "coco": final,
        "epochs": [asdict(h) for h in result.history],
        "timings": {"train_seconds": round(result.train_seconds, 2), "iterations": result.iterations,
                    "iteration_seconds": round(result.iteration_seconds, 2),
                    "seconds_per_iteration": round(result.iteration_seconds / max(result.iterations, 1), 4)},
    }


def render_markdown(report: dict[str, Any]) -> str:
    lines = [f"# Run report: {report.get('title', 'training run')}", ""]
    for k in ("model", "recipe", "data", "epochs_run", "seed", "device"):
        if k in report:
            lines.append(f"- {k}: `{report[k]}`")
    lines += ["", "## COCO metrics (validation split)", "",
              "| IoU type | " + " | ".join(STAT_NAMES) + " |", "|---" * (len(STAT_NAMES) + 1) + "|"]
    for t, stats in report["coco"].items():
        lines.append(f"| {t} | " + " | ".join(f"{stats[n]:.3f}" for n in STAT_NAMES) + " |")
    lines += ["", "## Per epoch", "", "| epoch | train loss | val loss | bbox AP | segm AP | seconds |",
              "|---|---|---|---|---|---|"]

    def f(x):
        return "" if x is None else f"{x:.4f}"

    for e in report["epochs"]:
        lines.append(f"| {e['epoch']} | {f(e['train_loss'])} | {f(e['val_loss'])} | {f(e['bbox_ap'])} | "
                     f"{f(e['segm_ap'])} | {e['seconds']:.1f} |")
    t = report["timings"]
    lines += ["", "## Timings", "",
              f"- the run: {t['train_seconds']} s (training, validation, evaluation, checkpoints)",
              f"- training: {t['iterations']} iterations, {t['seconds_per_iteration']} s/iteration (validation "
              "and evaluation excluded)"]
    if "gate" in report:
        lines += ["", "## Accuracy gate", ""] + [f"- {g}" for g in report["gate"]]
    lines += ["", "## Versions", ""] + [f"- {k}: {v}" for k, v in report["versions"].items()]
    return "\n".join(lines) + "\n"


def history_figure(report: dict[str, Any]) -> Any:
    """A matplotlib figure of training loss and validation mAP per epoch (Agg backend; the caller closes it).
    Epochs are whole numbers, so the epoch axis has integer ticks only."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = report["epochs"]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot([e["epoch"] for e in epochs], [e["train_loss"] for e in epochs], "-o", ms=3, label="train loss")
    if any(e["val_loss"] is not None for e in epochs):
        ax.plot([e["epoch"] for e in epochs if e["val_loss"] is not None],
                [e["val_loss"] for e in epochs if e["val_loss"] is not None], "-", label="val loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2 = ax.twinx()
    for key, style in (("bbox_ap", "s--"), ("segm_ap", "^--")):
        pts = [(e["epoch"], e[key]) for e in epochs if e[key] is not None]
        if pts:
            ax2.plot(*zip(*pts), style, color="tab:green" if key == "bbox_ap" else "tab:red",
                     label=key.replace("_ap", " AP"))
    ax2.set_ylabel("AP@[.50:.95]")
    ax2.set_ylim(0, 1)
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    # below the axes, so that it never hides a curve
    ax.legend(handles, [h.get_label() for h in handles], loc="upper center", bbox_to_anchor=(0.5, -0.16),
              ncol=max(len(handles), 1), frameon=False)
    ax.set_title("training loss and validation mAP")
    fig.tight_layout()
    return fig


def plot_history(report: dict[str, Any], path: Path) -> None:
    """Training loss and validation mAP per epoch (:func:`history_figure`), as a PNG."""
    fig = history_figure(report)  # selects the Agg backend before pyplot is imported here
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def write_report(report: dict[str, Any], out: Path) -> dict[str, Path]:
    paths = {"json": out / "report.json", "md": out / "report.md", "plot": out / "history.png"}
    atomic_write_json(paths["json"], report)
    atomic_write_text(paths["md"], render_markdown(report))
    plot_history(report, paths["plot"])
    return paths
