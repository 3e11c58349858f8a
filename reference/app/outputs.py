"""What the commands write, checked before any work starts: a run folder never holds two runs (an earlier one is
refused unless resumed or ``overwrite`` is asked for), output locations must be writable with room for the
checkpoints, and a file output must not be a folder or the input."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import JobError
from ..training.checkpoint import METADATA

if TYPE_CHECKING:
    import torch

    from ..training.fit import Recipe

# what train and demo write into their output folder
RUN_FILES = ("last.pt", "best.pt", METADATA, "report.json", "report.md", "history.png")
RUN_PATTERNS = ("predictions_*.png",)


def earlier_run_files(out: Path) -> list[Path]:
    """The files of an earlier train or demo run in ``out`` (other files there are not ours)."""
    if not out.is_dir():
        return []
    found = [out / name for name in RUN_FILES if (out / name).exists()]
    return found + sorted(p for pattern in RUN_PATTERNS for p in out.glob(pattern))


def check_run_folder(out: Path, resume: Path | None, overwrite: bool) -> list[Path]:
    """Refuse to write a run into a folder that holds another run's files, unless the run is resumed from that
    folder's checkpoint or ``overwrite`` is set. Returns the earlier files ``overwrite`` will replace."""
    if out.exists() and not out.is_dir():
        raise JobError(f"--out {out}: exists and is not a folder")
    earlier = earlier_run_files(out)
    if not earlier:
        return []
    if resume is not None and resume.parent.resolve() == out.resolve():
        return []  # continuing the run that is there
    if overwrite:
        return earlier
    names = ", ".join(p.name for p in earlier[:4]) + (", ..." if len(earlier) > 4 else "")
    raise JobError(f"--out {out}: holds an earlier run ({names}); pass --resume {out / 'last.pt'} to continue it, "
                   "--overwrite to replace it, or choose another folder")


def check_writable_folder(folder: Path, flag: str) -> None:
    """Create ``folder`` if needed and write (then delete) a probe file in it; a one-line JobError if not."""
    if folder.exists() and not folder.is_dir():
        raise JobError(f"{flag} {folder}: exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise JobError(f"{flag} {folder}: cannot write there ({exc.strerror or type(exc).__name__})") from exc


def check_output_file(path: Path, flag: str, *, not_same_as: Path | None = None) -> None:
    """A file output: not a folder, not the input file, in a folder that can be written."""
    if path.is_dir():
        raise JobError(f"{flag} {path}: is a folder; give a file name")
    if not_same_as is not None and (path.resolve() == not_same_as.resolve()
                                    or (path.exists() and not_same_as.exists() and path.samefile(not_same_as))):
        raise JobError(f"{flag} {path}: is the input file; choose another name (the input is never overwritten)")
    check_writable_folder(path.parent if str(path.parent) else Path("."), flag)


def checkpoint_bytes(model: torch.nn.Module, recipe: Recipe) -> int:
    """About what one checkpoint takes on disk: the weights plus the optimizer's per-parameter state."""
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    per_param = 2 if recipe.optimizer == "adamw" else 1  # Adam's two moments; SGD's momentum buffer
    params = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return weights + per_param * params


def check_free_space(folder: Path, need: int, flag: str) -> None:
    """Refuse when the file system holding ``folder`` has less than ``need`` bytes free."""
    free = shutil.disk_usage(folder).free
    if free < need:
        raise JobError(f"{flag} {folder}: {free / 1e6:.1f} MB free, the run needs about {need / 1e6:.1f} MB "
                       "(two checkpoints, a temporary copy while saving, reports)")
