"""The Penn-Fudan pedestrian layout: ``PNGImages/*.png`` plus ``PedMasks/*_mask.png`` instance-id maps.

``flavour="v2"`` returns what the current tutorial (torchvision >= 0.16) returns: a ``tv_tensors.Image``,
``BoundingBoxes`` with ``canvas_size``, ``Mask``, an int ``image_id``. ``flavour="legacy"`` returns what the
older tutorial returns: a PIL RGB image and ``image_id`` as a one-element int64 tensor. Both use the
tutorials' conventions: sorted file lists, instances from the sorted unique ids of the mask (0 is
background), boxes from ``masks_to_boxes`` (x2, y2 = the last pixel's index), box area, ``iscrowd`` zero.

Files as users' tools leave them: an image with an EXIF orientation is turned upright when its mask has the
upright size, and read as stored when the mask has the stored size (the mask is the annotation and says which
frame it was drawn in). A mask value none of whose pixels lies inside a region of its own (every pixel of it
touches another value) is the edge of an anti-aliased, resized or compressed mask, not an instance: it is left
out and reported (ANNOTATION_DROPPED, in :meth:`PennFudanDataset.sample_findings`).
"""

from __future__ import annotations

import hashlib
import logging
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any, Callable, Literal

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from ..contract import Violation
from .common import (DatasetError, HeaderSamples, SampleNotes, instance_ids, issue,
                     read_label_map)
from .images import ImageHeaderInfo, read_header, read_rgb, stored_frame_note

from .records import DrawnMasks, SampleRecord, to_target
from .listing import skipped_finding, split_system_files

log = logging.getLogger(__name__)

URL = "https://www.cis.upenn.edu/~jshi/ped_html/PennFudanPed.zip"
ARCHIVE_NAME = "PennFudanPed.zip"
# What the official archive holds; checked after extraction since no checksum is published with it.
EXPECTED_IMAGES = 170


class PennFudanDataset(HeaderSamples, Dataset):
    """Penn-Fudan layout reader; see the module docstring for the two flavours.

    ``exclusive_boxes=True`` gives x2, y2 = last index + 1 (no instance can get a zero-size box). With the
    default tutorial convention an instance one pixel wide or tall would get a degenerate box; that side is
    widened by one pixel instead, and ``widened`` maps each sample index whose load widened a box to those
    instances (one entry per index, however often it is loaded). ``classes``
    names the labels: 0 background, 1 person.
    """

    def __init__(self, root: str | Path, transforms: Callable | None = None,
                 flavour: Literal["v2", "legacy"] = "v2", exclusive_boxes: bool = False):
        if flavour not in ("v2", "legacy"):
            raise ValueError(f"flavour must be 'v2' or 'legacy', not {flavour!r}")
        self.root = Path(root)
        self.transforms = transforms
        self.flavour = flavour
        self.exclusive_boxes = exclusive_boxes
        self.widened: dict[int, tuple[int, ...]] = {}
        self.classes = ["background", "person"]
        skipped: list[Path] = []
        self.images, self.masks = _pair_files(self.root, skipped)
        found = skipped_finding(self.root, skipped)
        # what reading the folder found (FILE_SKIPPED: the system files left out); the validator reports it
        self.load_violations: list = [found] if found is not None else []
        self._notes = SampleNotes()

    def sample_findings(self, idx: int) -> list[Violation]:
        """What reading sample ``idx`` left out or read in another frame (the validator reports these); from the
        load in this process, or from reading the sample's files again."""
        def reload() -> None:
            record = self.load_record(idx)
            mask_size = (record.height, record.width)
            self._apply_orientation(idx, mask_size)

        return self._notes.get_or_reload(idx, reload, (DatasetError, IndexError))

    def _apply_orientation(self, idx: int, mask_size: tuple[int, int], info: ImageHeaderInfo | None = None) -> bool:
        """Whether to turn image ``idx`` upright: its mask's size says which frame it was drawn in. ``info``: the
        image's header when already read."""
        info = info if info is not None else read_header(self.images[idx])
        if mask_size == info.upright:
            return True
        if mask_size == info.stored:
            note = stored_frame_note(info, False, str(self.images[idx]))
            if note:
                self._notes.add(idx, issue("EXIF_STORED_FRAME", idx, "image", note))
            return False
        turned = (f" upright (stored {info.stored}, EXIF orientation {info.orientation})"
                  if info.orientation != 1 else "")
        raise DatasetError(f"{self.masks[idx]}: mask size (H, W) = {mask_size} differs from its image "
                           f"{self.images[idx].name} {info.upright}{turned}")

    def __len__(self) -> int:
        return len(self.images)

    def get_height_and_width(self, idx: int) -> tuple[int, int]:
        """Size from the image and mask headers, without decoding pixels (used for aspect-ratio grouping)."""
        info = read_header(self.images[idx])
        mask = read_header(self.masks[idx]).stored
        return info.upright if mask == info.upright else info.stored

    def load_record(self, idx: int) -> SampleRecord:
        """The annotations of sample ``idx`` in the frame of its mask, decoding only the mask file: one instance
        per id (those that are only edges of other regions left out and noted), boxes from the masks, box
        area."""
        ids = read_label_map(self.masks[idx])
        obj_ids = instance_ids(ids)
        self._notes.start(idx)
        edges = edge_only_ids(ids, obj_ids)
        if len(edges):
            values = edges.tolist()
            self._notes.add(idx, issue(
                "ANNOTATION_DROPPED", idx, "masks",
                f"{self.masks[idx]}: {len(values)} of its {len(obj_ids)} values ({_listed(values)}) occur only on "
                "the edges of other regions, never inside a region of their own: the mask is anti-aliased, resized "
                "or compressed, and these values are not instances; they are left out",
                hint="save instance masks as PNG with nearest-neighbour resizing (no smoothing, no JPEG)"))
            obj_ids = obj_ids[~torch.isin(obj_ids, edges)]
        masks = (ids[None] == obj_ids[:, None, None]).to(torch.uint8)
        return SampleRecord(name=str(self.masks[idx]), image_id=idx, height=int(ids.shape[0]),
                            width=int(ids.shape[1]), labels=[1] * len(obj_ids), area="box",
                            masks=DrawnMasks(masks), exclusive_boxes=self.exclusive_boxes)

    def _target(self, idx: int, record: SampleRecord) -> dict[str, Any]:
        """The record as the target in the dataset's flavour (``widened`` noted)."""
        target, widened = to_target(record)
        if widened:
            self.widened[idx] = tuple(widened)
        if self.flavour == "legacy":
            target["boxes"] = target["boxes"].as_subclass(torch.Tensor)
            target["masks"] = target["masks"].as_subclass(torch.Tensor)
            target["image_id"] = torch.tensor([idx])
        return target

    def header_target(self, idx: int) -> tuple[tuple[int, int], dict[str, Any]]:
        """For :meth:`header_sample`: the mask's size, which the image's header must match, and the target (the
        mask file is decoded: it is the annotation)."""
        if not 0 <= idx < len(self):
            raise IndexError(f"index {idx} out of range for {len(self)} samples")
        record = self.load_record(idx)
        mask_size = (record.height, record.width)
        self._apply_orientation(idx, mask_size)
        return mask_size, self._target(idx, record)

    def __getitem__(self, idx: int):
        if not 0 <= idx < len(self):
            raise IndexError(f"index {idx} out of range for {len(self)} samples")
        record = self.load_record(idx)
        mask_size = (record.height, record.width)
        pixels = read_rgb(self.images[idx],
                          apply_orientation=lambda info: self._apply_orientation(idx, mask_size, info))
        if tuple(pixels.shape[-2:]) != mask_size:  # a header that lies about the size
            raise DatasetError(f"{self.masks[idx]}: mask size (H, W) = {mask_size} differs from its image "
                               f"{self.images[idx].name} {tuple(pixels.shape[-2:])}")
        img: Any = F.to_pil_image(pixels) if self.flavour == "legacy" else tv_tensors.Image(pixels)
        target = self._target(idx, record)
        if self.transforms is not None:
            img, target = self.transforms(img, target)
        return img, target


def _listed(values: list[int], shown: int = 8) -> str:
    return ", ".join(map(str, values[:shown])) + (f", ... ({len(values)} in all)" if len(values) > shown else "")


def edge_only_ids(ids: torch.Tensor, obj_ids: torch.Tensor) -> torch.Tensor:
    """The ids of ``obj_ids`` that are blends of their neighbours, not instances: no pixel of theirs lies inside
    a region of their own (all four neighbours the same value), and they border both a lower and a higher value.
    Anti-aliasing, bilinear resizing and JPEG compression leave such values along the edge between two regions;
    an instance one pixel thin has no inside either, but borders only lower values or only higher ones."""
    if len(obj_ids) == 0 or min(ids.shape) < 3:
        return obj_ids[:0]
    core = ids[1:-1, 1:-1]
    around = torch.stack([ids[:-2, 1:-1], ids[2:, 1:-1], ids[1:-1, :-2], ids[1:-1, 2:]])
    inside = (around == core).all(dim=0)
    with_inside = set(instance_ids(core[inside]).tolist()) if inside.any() else set()
    lowest, highest = around.min(dim=0).values, around.max(dim=0).values
    blends = []
    for v in obj_ids.tolist():
        if v in with_inside:
            continue
        at = core == v
        if (lowest[at] < v).any() and (highest[at] > v).any():
            blends.append(v)
    return torch.tensor(blends, dtype=obj_ids.dtype)


MASK_SUFFIX = "_mask.png"


def _mask_stem(p: Path) -> str:
    """The image stem a mask file belongs to: ``NAME`` for ``NAME_mask.png`` in any case (``NAME_mask.PNG``)."""
    return p.name[:-len(MASK_SUFFIX)] if p.name.lower().endswith(MASK_SUFFIX) else p.name


def _pair_files(root: Path, skipped: list[Path] | None = None) -> tuple[list[Path], list[Path]]:
    """The image and mask files paired by name (any case of ``.png``); the files macOS and Windows leave in the
    folders (.DS_Store, ._NAME.png, Thumbs.db, desktop.ini) are left out and appended to ``skipped``."""
    img_dir, mask_dir = root / "PNGImages", root / "PedMasks"
    for d in (img_dir, mask_dir):
        if not d.is_dir():
            raise DatasetError(f"{root}: not a PennFudan folder ({d.name}/ is missing)")
    images, junk_images = split_system_files(sorted(p for p in img_dir.iterdir() if p.is_file()))
    masks, junk_masks = split_system_files(sorted(p for p in mask_dir.iterdir() if p.is_file()))
    if skipped is not None:
        skipped += junk_images + junk_masks
    by_stem = {_mask_stem(p): p for p in masks}
    missing = [p.name for p in images if p.stem not in by_stem]
    orphans = sorted(set(by_stem) - {p.stem for p in images})
    if missing or orphans:
        raise DatasetError(
            f"{root}: {len(images)} images and {len(masks)} masks do not pair up"
            + (f"; no mask for {missing[:5]}" if missing else "")
            + (f"; no image for masks {orphans[:5]}" if orphans else "")
            + " (each PNGImages/NAME.png needs PedMasks/NAME_mask.png)")
    return images, [by_stem[p.stem] for p in images]


def _safe_extract(archive: Path, dest: Path) -> None:
    dest = dest.resolve()
    with zipfile.ZipFile(archive) as zf:
        for member in zf.infolist():
            target = (dest / member.filename).resolve()
            if not target.is_relative_to(dest):
                raise DatasetError(f"{archive}: entry {member.filename!r} would extract outside {dest}; refused")
        zf.extractall(dest)


def download(root: str | Path, *, sha256: str | None = None, timeout: float = 10.0) -> Path:
    """Fetch (unless ``root/PennFudanPed.zip`` is already there), verify and extract the real archive.

    Returns the extracted ``PennFudanPed`` folder. Without network access it fails at once with the place to
    put the archive by hand. ``sha256``, when given, must match the archive; the extracted folder is always
    checked for the 170 image/mask pairs of the official release.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    archive = root / ARCHIVE_NAME
    if not archive.exists():
        partial = archive.with_suffix(".part")
        try:
            with urllib.request.urlopen(URL, timeout=timeout) as r, open(partial, "wb") as f:
                while chunk := r.read(1 << 20):
                    f.write(chunk)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            partial.unlink(missing_ok=True)
            raise DatasetError(f"cannot download {URL} ({exc}); offline machines: download it elsewhere and "
                               f"place it at {archive}") from exc
        partial.replace(archive)
    if sha256 is not None:
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        if digest != sha256:
            raise DatasetError(f"{archive}: sha256 {digest} differs from the expected {sha256}")
    _safe_extract(archive, root)
    folder = root / "PennFudanPed"
    images, _ = _pair_files(folder)
    if len(images) != EXPECTED_IMAGES:
        raise DatasetError(f"{folder}: {len(images)} image/mask pairs, the official release has "
                           f"{EXPECTED_IMAGES}")
    return folder
