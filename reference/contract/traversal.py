"""The dataset traversal: :func:`validate_dataset` loads every sample (in order, in this process or in
DataLoader workers, or only the image headers where that gives the same answer), checks it with
:func:`~reference.contract.checks.check_sample` and adds the rules only the whole dataset can break."""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .checks import check_sample, image_id_of, image_size
from .orientation import EXPLAINED, check_orientation
from .dataset_rules import Stats, class_names_of, dataset_checks, image_fingerprint
from .report import Collector, Report, Violation
from .rules import RULES

log = logging.getLogger(__name__)


def check_picklable(dataset: Any) -> list[Violation]:
    """NOT_PICKLABLE when the dataset cannot be sent to DataLoader workers (spawn start method)."""
    try:
        pickle.dumps(dataset)
    except Exception as exc:  # noqa: BLE001 - any pickling failure is the finding
        return [Violation.of("NOT_PICKLABLE", None, "dataset",
                             None, f"pickling the dataset failed: {type(exc).__name__}: {exc}",
                             "define the class and its transforms at module level, not in __main__ or a lambda")]
    return []


def check_size_hint(dataset: Any, i: int, image: Any) -> list[Violation]:
    getter = getattr(dataset, "get_height_and_width", None)
    size = image_size(image)
    if getter is None or size is None:
        return []
    try:
        claimed = tuple(int(x) for x in getter(i))
    except Exception as exc:  # noqa: BLE001
        return [Violation.of("SIZE_MISMATCH", i, "get_height_and_width", None,
                             f"get_height_and_width({i}) raised {type(exc).__name__}: {exc}")]
    if claimed != size:
        return [Violation.of("SIZE_MISMATCH", i, "get_height_and_width", None,
                             f"get_height_and_width({i}) says (H, W) = {claimed} but the image is {size}",
                             "aspect-ratio grouping uses this method; it must return (height, width)")]
    return []


def headers_only_refusal(dataset: Any, *, model_ready: bool = False, fingerprint: bool = False) -> str | None:
    """Why the header-only fast path cannot stand in for decoding this dataset's images, None when it can.

    It applies to a loader with ``header_sample(i)`` (the sample of ``dataset[i]`` with an :class:`ImageHeader`
    for the image) and no transforms (they need pixels); not with ``model_ready`` (the image's dtype and range
    are the question) nor with ``fingerprint`` (duplicate images are found by their pixels).
    """
    if not callable(getattr(dataset, "header_sample", None)):
        return f"a {type(dataset).__name__} has no header_sample"
    if getattr(dataset, "transforms", None) is not None:
        return "transforms need the pixels"
    if model_ready:
        return "--model-ready checks the pixels' dtype and range"
    if fingerprint:
        return "finding duplicate images across splits needs the pixels"
    return None


def sample_failure(i: int, exc: BaseException) -> Violation:
    """The finding for ``dataset[i]`` raising: GETITEM_FAILED, or the rule a loader names on the exception
    (``exc.code``, a code of the rule table, with ``field`` and ``hint``: a loader's SampleError)."""
    code = getattr(exc, "code", None)
    if isinstance(code, str) and code in RULES:
        return Violation.of(code, i, getattr(exc, "field", None), None, str(exc), getattr(exc, "hint", None))
    return Violation.of("GETITEM_FAILED", i, None, None, f"dataset[{i}] raised {type(exc).__name__}: {exc}")


def sample_findings(dataset: Any, i: int) -> list[Violation]:
    """What the loader noted while reading sample ``i`` (``dataset.sample_findings(i)``, where it has one):
    the per-sample counterpart of ``load_violations``."""
    getter = getattr(dataset, "sample_findings", None)
    return list(getter(i)) if callable(getter) else []


class _Loaded:
    """``dataset[i]`` as a worker returns it: the sample or the finding it raised, the fingerprint when asked
    and the loader's notes on the sample. With ``headers`` the sample is ``dataset.header_sample(i)``, whose
    image is an :class:`ImageHeader`.

    A module-level class, so that DataLoader workers can pickle it; one failing sample does not stop the rest.
    """

    def __init__(self, dataset: Any, fingerprint: bool, headers: bool = False):
        self.dataset, self.fingerprint, self.headers = dataset, fingerprint, headers

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[Any, Violation | None, tuple[str, int | None] | None, list[Violation]]:
        try:
            sample = self.dataset.header_sample(i) if self.headers else self.dataset[i]
        except Exception as exc:  # noqa: BLE001 - reported as GETITEM_FAILED or the loader's rule
            return None, sample_failure(i, exc), None, []
        fp = None
        if self.fingerprint and isinstance(sample, (tuple, list)) and len(sample) == 2:
            try:
                fp = image_fingerprint(sample[0])
            except ImportError:  # a missing dependency is not a finding about the image
                raise
            except Exception:  # noqa: BLE001 - an image the contract rejects has no fingerprint
                fp = None
        return sample, None, fp, sample_findings(self.dataset, i)


def _as_is(item: Any) -> Any:
    return item


def _load_all(dataset: Any, count: int, workers: int, fingerprint: bool, headers: bool = False):
    """Yields ``(i, (sample, error, fingerprint, findings))`` for i in 0..count-1, in order; with ``workers`` > 0 the
    samples load in DataLoader worker processes."""
    loaded = _Loaded(dataset, fingerprint, headers)
    if workers <= 0:
        for i in range(count):
            yield i, loaded[i]
        return
    from torch.utils.data import DataLoader

    loader = DataLoader(loaded, batch_size=None, sampler=list(range(count)), num_workers=workers,
                        collate_fn=_as_is)
    yield from enumerate(loader)


def _ticker(progress: Any) -> Callable[[], None]:
    """Advances ``progress`` by one: a bar's ``update(1)`` (tqdm), else the next item of an iterable."""
    if progress is None:
        return lambda: None
    if callable(getattr(progress, "update", None)):
        return lambda: progress.update(1)
    items = iter(progress)
    return lambda: next(items, None)


@dataclass
class _ImageIds:
    """The image_id rules across samples: unique ids (IMAGE_ID_DUPLICATE), one flavour (IMAGE_ID_MIXED)."""

    seen: dict[int, int] = field(default_factory=dict)
    flavours: dict[str, int] = field(default_factory=dict)

    def add(self, i: int, target: Any) -> list[Violation]:
        iid = image_id_of(target)
        if iid is None:
            return []
        self.flavours.setdefault(type(target["image_id"]).__name__, i)
        if iid in self.seen:
            return [Violation.of("IMAGE_ID_DUPLICATE", i, "image_id", None,
                                 f"image_id {iid} already used by sample {self.seen[iid]}",
                                 "evaluation keys predictions by image_id; derive it from the index")]
        self.seen[iid] = i
        return []

    def mixed(self) -> list[Violation]:
        if len(self.flavours) < 2:
            return []
        first = ", ".join(f"{k} (first at sample {v})" for k, v in self.flavours.items())
        return [Violation.of("IMAGE_ID_MIXED", None, "image_id", None,
                             f"image_id mixes types across the dataset: {first}",
                             "pick one flavour; evaluation code compares ids as given")]


def _use_headers(dataset: Any, headers_only: bool, model_ready: bool, fingerprint: bool) -> bool:
    if not headers_only:
        return False
    refusal = headers_only_refusal(dataset, model_ready=model_ready, fingerprint=fingerprint)
    if refusal is not None:
        log.info("reading whole images, not only their headers: %s", refusal)
    return refusal is None


def validate_dataset(dataset: Any, *, num_classes: int | None = None, num_keypoints: int | None = None,
                     max_samples: int | None = None, model_ready: bool = False,
                     check_pickle: bool = True, progress: Any = None, workers: int = 0,
                     fingerprint: bool = False, dataset_rules: bool = True, headers_only: bool = False) -> Report:
    """Validate every sample (or the first ``max_samples``) plus the dataset-wide rules.

    Dataset-wide rules: at least one sample (DATASET_EMPTY), unique ``image_id`` (IMAGE_ID_DUPLICATE),
    ``get_height_and_width`` agreeing with the image (SIZE_MISMATCH), picklability (NOT_PICKLABLE), one
    ``image_id`` flavour (IMAGE_ID_MIXED) and, unless ``dataset_rules`` is False, :func:`dataset_checks`. What
    the dataset's loader recorded while reading its files (``load_violations``) is reported too. A sample whose
    ``__getitem__`` raises is reported as GETITEM_FAILED and validation goes on. ``workers`` > 0 loads the
    samples in that many DataLoader worker processes (the results are the same, in the same order);
    ``fingerprint`` keeps each image's hashes in ``Report.fingerprints`` for :func:`compare_splits`. Statistics
    name classes by the dataset's ``classes`` when it has them. ``progress`` (a tqdm bar, or any iterable) is
    advanced once per sample checked; it never chooses the samples.

    ``headers_only`` takes the fast path where :func:`headers_only_refusal` allows it: each image's size comes
    from its file header and no pixel is decoded, and the report is the one decoding would give, except that an
    image whose header reads but whose body is corrupt goes unnoticed (and an unreadable header is reported in
    other words). Where it does not apply the images are decoded, and the reason is logged.
    """
    total = len(dataset)
    count = total if max_samples is None else min(total, max_samples)
    report, stats, ids, tick = Report(), Stats(), _ImageIds(), _ticker(progress)
    masks_seen: bool | None = None
    names = class_names_of(dataset)
    headers = _use_headers(dataset, headers_only, model_ready, fingerprint)
    report.violations += list(getattr(dataset, "load_violations", []) or [])
    if total == 0:
        report.violations.append(Violation.of("DATASET_EMPTY", None, None, None, "the dataset has no samples",
                                              "check the folder and its layout"))
    if check_pickle:
        report.violations += check_picklable(dataset)
    for i, (sample, error, fp, findings) in _load_all(dataset, count, workers, fingerprint, headers):
        tick()
        report.samples += 1
        report.violations += findings
        if error is not None:
            report.violations.append(error)
            continue
        if not isinstance(sample, (tuple, list)) or len(sample) != 2:
            report.violations.append(Violation.of("TARGET_TYPE", i, None, None, f"dataset[{i}] returned a "
                                                  f"{type(sample).__name__}, expected a pair (image, target)"))
            continue
        if fp is not None:
            report.fingerprints.append((i, fp[0], fp[1]))
        image, target = sample
        if masks_seen is None and isinstance(target, Mapping):
            masks_seen = "masks" in target
        c = Collector(i, model_ready)
        stats.add(i, check_sample(image, target, c, num_classes, num_keypoints, masks_seen))
        frame = check_orientation(dataset, i, image, target)
        items = ([v for v in c.items if v.code not in EXPLAINED]
                 if any(v.code == "EXIF_FRAME_MISMATCH" for v in frame) else c.items)
        report.violations += frame + items + check_size_hint(dataset, i, image) + ids.add(i, target)
    report.violations += ids.mixed()
    if dataset_rules:
        report.violations += dataset_checks(stats, names, complete=report.samples >= total)
    report.statistics = {"dataset_length": total, **({"classes": names} if names is not None else {}),
                         **stats.to_dict(names)}
    return report
