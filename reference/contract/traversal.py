"""The dataset traversal: :func:`validate_dataset` checks every sample where it is loaded (in this process, or in
DataLoader workers, which send back findings rather than images), with
:func:`~reference.contract.checks.check_sample`, or from the loader's summaries where :func:`quick_check_batch` proves
the full check would find nothing, or from the image headers only where that gives the same answer; then it
adds the rules only the whole dataset can break. The report is the same whichever way a sample went."""

from __future__ import annotations

import copy
import logging
import pickle
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from .checks import ImageHeader, Parsed, check_sample, image_id_of, image_size
from .dataset_rules import Stats, class_names_of, dataset_checks, image_fingerprint
from .orientation import EXPLAINED, check_orientation
from .findings import Collector, Report, Violation
from .rules import RULES
from .summary import SummaryBatch, quick_check_batch

log = logging.getLogger(__name__)


def check_picklable(dataset: Any) -> list[Violation]:
    """NOT_PICKLABLE when the dataset cannot be sent to DataLoader workers (spawn start method). The attributes
    a loader lists in ``PARSED_DATA`` (records parsed from its files: lists, dicts, strings and numbers, which
    always pickle) are left out of the probe: a million annotations take seconds to pickle."""
    probe = dataset
    bulk = getattr(type(dataset), "PARSED_DATA", ())
    if bulk:
        probe = copy.copy(dataset)
        for name in bulk:
            setattr(probe, name, None)
    try:
        pickle.dumps(probe)
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


@dataclass
class _Checked:
    """What checking sample ``i`` gave, small enough to send back from a worker: the loader's notes, the
    finding that stopped it (a raise, or not a pair), else its violations, what the statistics and the id rules
    need, and the fingerprint when asked."""

    findings: list[Violation]
    stop: Violation | None = None
    parsed: Parsed | None = None
    items: list[Violation] = field(default_factory=list)
    image_id: int | None = None
    id_type: str | None = None
    fingerprint: tuple[str, int | None] | None = None


@dataclass
class _CleanRun:
    """Consecutive samples the batch quick check proved clean: what the statistics and the id rules need of
    them, and the notes their loader made (see :class:`~reference.contract.summary.SummaryBatch`)."""

    indices: list[int]
    sizes: np.ndarray
    image_ids: list[int]
    counts: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    findings: list[list[Violation]]

    @classmethod
    def of(cls, batch: SummaryBatch, first: int, stop: int) -> _CleanRun:
        """Batch positions ``first:stop``."""
        rows = slice(int(batch.counts[:first].sum()), int(batch.counts[:stop].sum()))
        return cls(batch.indices[first:stop], batch.sizes[first:stop], batch.image_ids[first:stop],
                   batch.counts[first:stop], batch.boxes[rows], batch.labels[rows], batch.findings[first:stop])


@dataclass(frozen=True)
class _Settings:
    """How the samples are checked (the same in every worker)."""

    num_classes: int | None
    num_keypoints: int | None
    model_ready: bool
    fingerprint: bool
    headers: bool
    quick: bool  # the loader's sample_summaries may stand in for building the samples
    require_masks: bool | None


class _Checker:
    """Checks samples where they are loaded (this process or a DataLoader worker): ``checker[chunk]`` gives the
    :class:`_Checked` of each index of a chunk, so a worker sends back findings, not images.

    A module-level class, so that workers can pickle it; one failing sample does not stop the rest.
    """

    def __init__(self, dataset: Any, settings: _Settings):
        self.dataset, self.settings = dataset, settings
        self.masks_seen: bool | None = None
        # whole chunks summarised at once (the quick check), for a loader whose images carry no frame question
        # (check_orientation needs a PIL image or an image_path to find one)
        self.batched = settings.quick and not callable(getattr(dataset, "image_path", None))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, chunk: list[int]) -> list[_Checked | _CleanRun]:
        if self.batched:
            return self._check_batch(chunk)
        return [self.check(i) for i in chunk]

    def _check_batch(self, chunk: list[int]) -> list[_Checked | _CleanRun]:
        """The chunk's samples in order: runs of consecutive ones the batch quick check proves clean, and each
        other one checked the full way."""
        st = self.settings
        batch, _ = self.dataset.sample_summaries(chunk, decode=not st.headers)
        clean: dict[int, int] = {}
        if batch is not None:
            proved = quick_check_batch(batch, num_classes=st.num_classes, num_keypoints=st.num_keypoints,
                                       require_masks=st.require_masks)
            for k, i in enumerate(batch.indices):
                if proved[k] and not check_size_hint(self.dataset, i, ImageHeader(*(int(v) for v in batch.sizes[k]))):
                    clean[i] = k
        out: list[_Checked | _CleanRun] = []
        run: list[int] = []
        for i in [*chunk, None]:
            if i is not None and i in clean and (not run or clean[i] == clean[run[-1]] + 1):
                run.append(i)
                continue
            if run:
                assert batch is not None
                out.append(_CleanRun.of(batch, clean[run[0]], clean[run[-1]] + 1))
                run = []
            if i is None:
                break
            if i in clean:
                run.append(i)
            else:
                out.append(self.check(i))
        return out

    def check(self, i: int) -> _Checked:
        """Sample ``i`` built (or its header sample read) and checked the full way."""
        st = self.settings
        try:
            sample = self.dataset.header_sample(i) if st.headers else self.dataset[i]
        except Exception as exc:  # noqa: BLE001 - reported as GETITEM_FAILED or the loader's rule
            return _Checked([], stop=sample_failure(i, exc))
        findings = sample_findings(self.dataset, i)
        if not isinstance(sample, (tuple, list)) or len(sample) != 2:
            return _Checked(findings, stop=Violation.of("TARGET_TYPE", i, None, None, f"dataset[{i}] returned a "
                                                        f"{type(sample).__name__}, expected a pair (image, target)"))
        image, target = sample
        fp = None
        if st.fingerprint:
            try:
                fp = image_fingerprint(image)
            except ImportError:  # a missing dependency is not a finding about the image
                raise
            except Exception:  # noqa: BLE001 - an image the contract rejects has no fingerprint
                fp = None
        require = st.require_masks if st.require_masks is not None else self.masks_seen
        if require is None and isinstance(target, Mapping):
            require = self.masks_seen = "masks" in target  # in order, in this process: the first target decides
        c = Collector(i, st.model_ready)
        parsed = check_sample(image, target, c, st.num_classes, st.num_keypoints, require)
        frame = check_orientation(self.dataset, i, image, target)
        items = ([v for v in c.items if v.code not in EXPLAINED]
                 if any(v.code == "EXIF_FRAME_MISMATCH" for v in frame) else c.items)
        iid = image_id_of(target)
        id_type = type(target["image_id"]).__name__ if iid is not None else None
        return _Checked(findings, parsed=parsed, items=frame + items + check_size_hint(dataset=self.dataset, i=i,
                                                                                        image=image),
                        image_id=iid, id_type=id_type, fingerprint=fp)


def _as_is(item: Any) -> Any:
    return item


# Samples a worker checks per request: enough to make the round trip to the worker small beside the work.
CHUNK = 16


# Samples per chunk when whole chunks are summarised at once (the batch quick check): its numpy calls then cost
# little per sample, and a few hundred samples' arrays are still small to send back.
BATCH_CHUNK = 256


def _check_all(checker: _Checker, count: int, workers: int) -> Iterator[_Checked | _CleanRun]:
    """The results of samples 0..count-1 in order, a :class:`_CleanRun` standing for its samples; with
    ``workers`` > 0 in DataLoader workers, a chunk of consecutive samples per request (:data:`CHUNK`, or
    :data:`BATCH_CHUNK` when the checker summarises whole chunks)."""
    size = BATCH_CHUNK if checker.batched else CHUNK
    chunks = [list(range(s, min(s + size, count))) for s in range(0, count, size)]
    if workers <= 0:
        for chunk in chunks:
            yield from checker[chunk]
        return
    from torch.utils.data import DataLoader

    loader = DataLoader(checker, batch_size=None, sampler=chunks, num_workers=workers, collate_fn=_as_is)
    for results in loader:
        yield from results


def _first_masks(dataset: Any, count: int, headers: bool) -> bool | None:
    """Whether the first sample that loads as a pair with a dict target has masks (the MISSING_KEY rule asks
    every later sample for masks when it does); None when none does. Loaded here once when samples are checked
    in workers, so that every worker applies the rule alike (in this process the checker notes it as it goes);
    a loader with ``sample_summaries`` says it in ``has_masks``."""
    has_masks = getattr(dataset, "has_masks", None)
    if isinstance(has_masks, bool) and callable(getattr(dataset, "sample_summaries", None)):
        return has_masks
    for i in range(count):
        try:
            sample = dataset.header_sample(i) if headers else dataset[i]
        except Exception:  # noqa: BLE001 - reported when it is checked
            continue
        if isinstance(sample, (tuple, list)) and len(sample) == 2 and isinstance(sample[1], Mapping):
            return "masks" in sample[1]
    return None


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

    def add(self, i: int, iid: int | None, id_type: str | None) -> list[Violation]:
        if iid is None:
            return []
        self.flavours.setdefault(id_type or "int", i)
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
    ``fingerprint`` keeps each image's hashes in ``Report.fingerprints`` for
    :func:`~reference.contract.compare_splits`. Statistics name classes by the dataset's ``classes`` when it
    has them. ``progress`` (a tqdm bar, or any iterable) is advanced once per sample checked; it never chooses
    the samples.

    ``headers_only`` takes the fast path where :func:`headers_only_refusal` allows it: each image's size comes
    from its file header and no pixel is decoded, and the report is the one decoding would give, except that an
    image whose header reads but whose body is corrupt goes unnoticed (and an unreadable header is reported in
    other words). Where it does not apply the images are decoded, and the reason is logged.
    """
    total = len(dataset)
    count = total if max_samples is None else min(total, max_samples)
    report, stats, ids, tick = Report(), Stats(), _ImageIds(), _ticker(progress)
    names = class_names_of(dataset)
    headers = _use_headers(dataset, headers_only, model_ready, fingerprint)
    report.violations += list(getattr(dataset, "load_violations", []) or [])
    if total == 0:
        report.violations.append(Violation.of("DATASET_EMPTY", None, None, None, "the dataset has no samples",
                                              "check the folder and its layout"))
    if check_pickle:
        report.violations += check_picklable(dataset)
    quick = (callable(getattr(dataset, "sample_summaries", None)) and getattr(dataset, "transforms", None) is None
             and not model_ready and not fingerprint)
    settings = _Settings(num_classes, num_keypoints, model_ready, fingerprint, headers, quick,
                         _first_masks(dataset, count, headers) if count and (workers > 0 or quick) else None)
    i, start = -1, time.perf_counter()
    for done in _check_all(_Checker(dataset, settings), count, workers):
        if isinstance(done, _CleanRun):
            for k, i in enumerate(done.indices):
                tick()
                report.violations += done.findings[k] + ids.add(i, done.image_ids[k], "int")
            report.samples += len(done.indices)
            stats.add_run(done.indices, done.sizes, done.counts, done.boxes, done.labels)
            continue
        i += 1
        tick()
        report.samples += 1
        report.violations += done.findings
        if done.stop is not None:
            report.violations.append(done.stop)
            continue
        if done.fingerprint is not None:
            report.fingerprints.append((i, done.fingerprint[0], done.fingerprint[1]))
        assert done.parsed is not None
        stats.add(i, done.parsed)
        report.violations += done.items + ids.add(i, done.image_id, done.id_type)
    # the sample loop alone (workers started, every sample checked): what ci/validate_scale.py sets beside a
    # plain decode loop's
    log.info("checked %d samples in %.3f s (%d workers)", report.samples, time.perf_counter() - start, workers)
    report.violations += ids.mixed()
    if dataset_rules:
        report.violations += dataset_checks(stats, names, complete=report.samples >= total)
    report.statistics = {"dataset_length": total, **({"classes": names} if names is not None else {}),
                         **stats.to_dict(names)}
    return report
