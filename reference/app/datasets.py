"""The dataset folders the commands open: loader errors as one line naming the file, failing samples named, and
the split of a data folder into training and validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import Dataset, Subset

from ..data import DatasetError, open_dataset
from ..data.loading import loader_failure
from ..errors import LOADER_ERRORS, JobError, UserError, first_line
from ..contract import class_names_of
from ..training.fit import Recipe, transforms_for


class NamedSamples(torch.utils.data.Dataset):
    """A dataset whose failing samples say where they are: ``ROOT: sample I (file): Error: message``.

    A :class:`DatasetError` (which names its file already) passes unchanged. Attributes are the dataset's.
    """

    def __init__(self, dataset: Any, root: Path):
        self.dataset, self.root = dataset, root

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:
        if name in ("dataset", "root"):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, idx: int):
        try:
            return self.dataset[idx]
        except DatasetError:
            raise
        except Exception as exc:  # noqa: BLE001 - user data: one line naming the sample instead of a traceback
            raise JobError(f"{self.root}: sample {idx}{describe_sample(self.dataset, idx)}: {type(exc).__name__}: "
                           f"{first_line(exc, 120)}") from exc


def describe_sample(ds: Any, idx: int) -> str:
    """`` (file)`` for the known layouts' sample ``idx``, else nothing."""
    try:
        entries = getattr(ds, "entries", None)
        if entries is not None and hasattr(entries[idx], "json_path"):
            return f" ({entries[idx].json_path})"
        images = getattr(ds, "images", None)
        if images is not None:
            im = images[idx]
            return f" (image {im.get('id')}, {im.get('file_name')})" if isinstance(im, dict) else f" ({im})"
    except Exception:  # noqa: BLE001 - a description is a nicety; never fail because of it
        pass
    return ""


def open_folder(root: Path, fmt: str | None, transforms: Callable | None = None,
                classes: str | list[str] | None = None, images: str | None = None,
                merge_similar_names: str | None = None, *, error: type[UserError] = JobError):
    """:func:`reference.data.open_dataset`, with what a loader raises on an unreadable file as one ``error``
    naming the file (:func:`reference.data.loading.loader_failure`)."""
    try:
        return open_dataset(root, fmt, transforms, classes, images, merge_similar_names=merge_similar_names or False)
    except LOADER_ERRORS as exc:  # the loaders' raw errors too, named here until the loaders name them
        raise error(loader_failure(root, exc)) from exc


def open_for_recipe(root: Path, fmt: str | None, recipe: Recipe, train: bool,
                    classes: str | list[str] | None = None, merge_similar_names: str | None = None) -> NamedSamples:
    """A dataset folder opened with the recipe's transforms, refused in one line when its loader left out a
    defective annotation (training never drops annotations silently)."""
    ds = open_folder(root, fmt, transforms_for(recipe, train), classes, merge_similar_names=merge_similar_names)
    errors = [v for v in getattr(ds, "load_violations", None) or [] if v.severity == "error"]
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise JobError(f"{root}: {errors[0].message}{more}; fix the data (tvref validate {root} lists them all)")
    return NamedSamples(ds, root)


# The tutorial holds out the last 50 of a random permutation of Penn-Fudan's 170 images; the published figures are
# on those 50. Where a folder has at least three times that many samples (so that training keeps two thirds or
# more), we hold out 50 too, so runs on the real data compare with the published figures; a smaller folder keeps
# a fifth for validation (at least one sample), since 50 would leave too little to train on.
TUTORIAL_HELD_OUT = 50


def held_out_count(n: int) -> int:
    """How many of ``n`` samples a single folder holds out for validation (see ``TUTORIAL_HELD_OUT``)."""
    if n >= 3 * TUTORIAL_HELD_OUT:
        return TUTORIAL_HELD_OUT
    return max(1, n // 5)


# the validation split's folder names: ``val/`` (Penn-Fudan's layout here, CVAT, COCO) and ``valid/`` (Roboflow's
# exports: train/, valid/, test/)
VAL_FOLDERS = ("val", "valid")


def validation_folder(data: Path, *, beside_train: bool = True) -> Path | None:
    """``data``'s validation split folder (beside ``train/`` unless ``beside_train`` is off), or None; both
    names present is refused as ambiguous."""
    found = [data / name for name in VAL_FOLDERS if (data / name).is_dir()]
    if len(found) > 1:
        raise JobError(f"--data {data}: both {found[0].name}/ and {found[1].name}/ inside; keep the validation "
                       "split in one of them")
    return found[0] if found and (not beside_train or (data / "train").is_dir()) else None


def split_datasets(data: Path, fmt: str | None, recipe: Recipe, seed: int,
                   classes: str | None = None, merge_similar_names: str | None = None
                   ) -> tuple[Dataset, Dataset, int]:
    """Train and validation datasets, and the class count (background included).

    A folder with ``train/`` and ``val/`` (or Roboflow's ``valid/``) inside is used as given (a ``test/`` split
    is left alone); a single folder is split by a permutation seeded by ``seed``, its last
    :func:`held_out_count` samples held out for validation. ``classes`` fixes the class names and their ids
    (see :func:`reference.data.parse_classes`); without it the training split's own classes are used.
    ``merge_similar_names`` ("whitespace" or "case") reads near-duplicate class names as one class.
    """
    val_folder = validation_folder(data)
    merge = merge_similar_names
    if val_folder is not None:
        train = open_for_recipe(data / "train", fmt, recipe, True, classes, merge)
        val = open_for_recipe(val_folder, fmt, recipe, False, classes or getattr(train, "class_names", None), merge)
    else:
        train_all = open_for_recipe(data, fmt, recipe, True, classes, merge)
        val_all = open_for_recipe(data, fmt, recipe, False, classes, merge)
        if len(train_all) < 2:
            raise JobError(f"--data {data}: {len(train_all)} sample(s); training needs at least 2 (one is held out "
                           "for validation), or train/ and val/ subfolders")
        order = torch.randperm(len(train_all), generator=torch.Generator().manual_seed(seed)).tolist()
        held = held_out_count(len(order))
        train, val = Subset(train_all, order[:-held]), Subset(val_all, order[-held:])
    base = train.dataset if isinstance(train, Subset) else train
    return train, val, num_classes(base)


def num_classes(ds: Any) -> int:
    """The dataset's class count, background included (Penn-Fudan's 2 for a dataset without ``classes``)."""
    if hasattr(ds, "classes"):
        return len(ds.classes)
    if hasattr(ds, "class_to_idx"):
        return len(ds.class_to_idx)
    return 2  # PennFudan: person + background


def dataset_classes(ds: Any, count: int) -> list[str] | None:
    """The dataset's class names, background first, when it has one per class (what checkpoints record)."""
    names = class_names_of(ds)
    return names if names is not None and len(names) == count else None


def dataset_root(ds: Any) -> Path | None:
    """The folder a dataset opened by :func:`open_for_recipe` (or a ``Subset`` of one) was read from."""
    return getattr(ds.dataset if isinstance(ds, Subset) else ds, "root", None)


def target_keys(ds: Dataset) -> set[str]:
    """The keys of sample 0's target (what the layout's targets carry: ``masks``, ``keypoints``...); empty for
    an empty dataset. Drawn on a forked RNG, so that a look at a training sample changes no later draw."""
    if len(ds) == 0:  # type: ignore[arg-type]
        return set()
    with torch.random.fork_rng(devices=[]):
        return set(ds[0][1])
