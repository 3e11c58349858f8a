"""Listing a dataset folder as users' folders are: file systems and archivers leave files no annotation tool
wrote, and extensions come in either case.

- macOS writes ``.DS_Store`` into every folder it shows, and AppleDouble ``._<name>`` files (resource forks,
  binary, whatever the extension says) beside each file copied to a non-Apple volume or zipped; Windows
  Explorer writes ``Thumbs.db`` and ``desktop.ini``. Such a file is skipped, and the loader says so once
  (FILE_SKIPPED), rather than the whole folder being refused for it.
- ``X.PNG``, ``X_mask.PNG`` and ``scene.JSON`` are what cameras and Windows tools often write; they are read
  like the lower-case names (labelme's and the tutorials' globs match them on the case-insensitive file systems
  of Windows and macOS).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from .common import issue
from ..contract import Violation

SYSTEM_FILES = (".ds_store", "thumbs.db", "desktop.ini")


def is_system_file(name: str) -> bool:
    """Whether a file name is one the operating system wrote (see the module docstring)."""
    return name.lower() in SYSTEM_FILES or name.startswith("._")


def split_system_files(paths: Iterable[Path]) -> tuple[list[Path], list[Path]]:
    """``paths`` without the system files, and those files."""
    kept: list[Path] = []
    skipped: list[Path] = []
    for p in paths:
        (skipped if is_system_file(p.name) else kept).append(p)
    return kept, skipped


def files_with_suffix(folder: Path, suffix: str) -> tuple[list[Path], list[Path]]:
    """The files of ``folder`` (not recursive) ending in ``suffix`` in any case, sorted, and the system files
    among them (AppleDouble ``._x.json``), which are left out."""
    if not folder.is_dir():
        return [], []
    found = sorted(p for p in folder.iterdir() if p.suffix.lower() == suffix and p.is_file())
    return split_system_files(found)


def skipped_finding(root: Path, skipped: Iterable[Path]) -> Violation | None:
    """The one FILE_SKIPPED warning naming every skipped file (relative to ``root``), or None."""
    names = sorted(str(p.relative_to(root)) if p.is_relative_to(root) else str(p) for p in skipped)
    if not names:
        return None
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    return issue("FILE_SKIPPED", None, "files",
                 f"{root}: skipped {len(names)} system file{'s' if len(names) > 1 else ''} that no annotation tool "
                 f"wrote (macOS .DS_Store and ._* AppleDouble files, Windows Thumbs.db and desktop.ini): {shown}",
                 hint="harmless; delete them (e.g. find DIR -name '._*' -delete) to silence this")
