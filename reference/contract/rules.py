"""The rule table: every code the contract reports, its severity, the family it belongs to and what it checks.

A flat table, as Datumaro's anomaly types: the checks look a rule's severity up here (``Violation.of``),
``RULES`` and ``FAMILIES`` are derived from it, and tools and tests key on the codes, which are stable. One code
is not in it: ``GETITEM_TIMEOUT``, which ``tvref validate --timeout`` makes itself (an error) from the
GETITEM_FAILED of a sample that took too long to load.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Severity(str, enum.Enum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class Rule:
    """One row of the table. ``model_ready``: the severity when checking what reaches the model, if it differs."""

    code: str
    severity: Severity
    family: str
    summary: str
    model_ready: Severity | None = None

    def severity_for(self, model_ready: bool) -> Severity:
        return self.model_ready if model_ready and self.model_ready is not None else self.severity


E, W, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

RULE_TABLE: tuple[Rule, ...] = (
    # the image
    Rule("IMAGE_TYPE", E, "image", "a PIL image or a tensor (a float tensor where it reaches the model)"),
    Rule("IMAGE_SHAPE", E, "image", "a tensor image has shape [C, H, W]"),
    Rule("IMAGE_CHANNELS", E, "image", "three channels, RGB"),
    Rule("IMAGE_DTYPE", E, "image", "uint8 or float (float where it reaches the model)"),
    Rule("IMAGE_NONFINITE", E, "image", "a float image holds no NaN or inf"),
    Rule("IMAGE_RANGE", W, "image", "float values in [0, 1]", model_ready=E),
    Rule("EXIF_FRAME_MISMATCH", E, "image",
         "the boxes fit the frame (stored or upright, by the EXIF orientation) the pixels are given in"),
    Rule("EXIF_STORED_FRAME", W, "image",
         "a photo with an EXIF orientation is read and annotated as stored, not upright as tools show it"),
    # the target's structure
    Rule("TARGET_TYPE", E, "target_keys", "a sample is a pair (image, target), the target a dict"),
    Rule("MISSING_KEY", E, "target_keys", "boxes, labels, image_id, area, iscrowd (and masks where any has them)"),
    Rule("UNKNOWN_KEY", W, "target_keys", "no key the models and transforms ignore"),
    Rule("COUNT_MISMATCH", E, "target_keys", "every per-instance field has the first dimension N of boxes"),
    # boxes
    Rule("BOXES_TYPE", E, "boxes", "boxes is a tensor"),
    Rule("BOXES_SHAPE", E, "boxes", "boxes has shape [N, 4], rank 2 even when N = 0"),
    Rule("BOXES_DTYPE", E, "boxes", "boxes is a float tensor"),
    Rule("BOXES_NONFINITE", E, "boxes", "every coordinate is finite"),
    Rule("BOX_DEGENERATE", E, "boxes", "x2 > x1 and y2 > y1 (XYXY)"),
    Rule("BOX_OUT_OF_BOUNDS", E, "boxes", "a box lies inside the image"),
    Rule("CANVAS_MISMATCH", E, "boxes", "BoundingBoxes are XYXY on a canvas of the image's size"),
    Rule("NEGATIVE_SAMPLE_ENCODING", E, "boxes", "an image without objects has boxes [0, 4], not a zero box"),
    # labels
    Rule("LABELS_TYPE", E, "labels", "labels is a tensor"),
    Rule("LABELS_SHAPE", E, "labels", "labels has shape [N]"),
    Rule("LABELS_DTYPE", E, "labels", "labels is int64"),
    Rule("LABEL_BACKGROUND", E, "labels", "label 0 (background) never marks an object"),
    Rule("LABEL_NEGATIVE", E, "labels", "no negative label"),
    Rule("LABEL_OUT_OF_RANGE", E, "labels", "every label fits the head (below num_classes)"),
    # what evaluation reads
    Rule("IMAGE_ID_TYPE", E, "evaluation_fields", "image_id is an int or a one-element integer tensor"),
    Rule("IMAGE_ID_MIXED", W, "evaluation_fields", "one image_id flavour (int or tensor) across the dataset"),
    Rule("IMAGE_ID_DUPLICATE", E, "evaluation_fields", "image_id is unique across the dataset"),
    Rule("AREA_TYPE", E, "evaluation_fields", "area is a tensor"),
    Rule("AREA_NEGATIVE", E, "evaluation_fields", "area is finite and not negative"),
    Rule("AREA_INCONSISTENT", W, "evaluation_fields", "area matches the box or the mask area"),
    Rule("ISCROWD_TYPE", E, "evaluation_fields", "iscrowd is a tensor"),
    Rule("ISCROWD_VALUES", E, "evaluation_fields", "iscrowd is 0 or 1"),
    # masks
    Rule("MASKS_TYPE", E, "masks", "masks is a tensor"),
    Rule("MASKS_SHAPE", E, "masks", "masks has shape [N, H, W], the image's H and W"),
    Rule("MASKS_DTYPE", E, "masks", "masks is uint8"),
    Rule("MASKS_VALUES", E, "masks", "mask values are 0 and 1"),
    Rule("MASK_EMPTY", W, "masks", "every mask has a foreground pixel"),
    Rule("MASK_BOX_MISMATCH", W, "masks", "a mask's box agrees with the instance's box"),
    # keypoints
    Rule("KEYPOINTS_TYPE", E, "keypoints", "keypoints is a tensor"),
    Rule("KEYPOINTS_SHAPE", E, "keypoints", "keypoints has shape [N, K, 3]"),
    Rule("KEYPOINTS_DTYPE", E, "keypoints", "keypoints is a float tensor"),
    Rule("KEYPOINTS_VISIBILITY", E, "keypoints", "visibility is 0, 1 or 2"),
    # loading the samples
    Rule("GETITEM_FAILED", E, "loading", "dataset[i] returns"),
    Rule("NOT_PICKLABLE", E, "loading", "the dataset pickles (DataLoader workers need it)"),
    Rule("SIZE_MISMATCH", E, "loading", "get_height_and_width(i) agrees with the image"),
    # what a loader found in the annotation files (each names the file, the annotation id or shape index and the
    # field); the loaders keep them in ``load_violations`` and validate_dataset reports them
    Rule("ANNOTATION_INVALID", E, "annotation_files", "malformed: left out of its image's target"),
    Rule("ANNOTATION_DROPPED", W, "annotation_files",
         "well-formed but not an instance (a line, a zero-size box, background)"),
    Rule("ANNOTATION_REPAIRED", W, "annotation_files",
         "kept after a repair the message states (e.g. a mask from its box)"),
    Rule("ANNOTATION_ID_DUPLICATE", E, "annotation_files", "annotation ids are unique"),
    Rule("DECLARED_SIZE_MISMATCH", E, "annotation_files",
         "the size an annotation file declares for an image is the image's own (upright) size"),
    Rule("IMAGE_ENTRY_INVALID", E, "annotation_files",
         "an image record that cannot be used (duplicate id, no size, a size or shape far outside the image)"),
    Rule("LABEL_UNKNOWN", E, "annotation_files", "a class name or category inside the class list"),
    Rule("CLASS_NAME_SIMILAR", W, "annotation_files",
         "no two class names differing only in case or surrounding whitespace (separate classes unless merged)"),
    Rule("CLASS_NAMES_MERGED", INFO, "annotation_files",
         "class names differing only in case or whitespace read as one class, as merge_similar_names asked"),
    Rule("CATEGORY_NAME_DUPLICATE", W, "annotation_files",
         "one name per COCO category: a repeated name is one class (the lowest id)"),
    Rule("IMAGE_FILE_SHARED", W, "annotation_files",
         "one COCO image record per file: a file listed twice is one image (the lowest id), annotations merged"),
    Rule("IMAGE_PATH_RESOLVED", W, "annotation_files",
         "file_name is relative to the image root, not a path on another machine (found by its base name)"),
    Rule("FILE_SKIPPED", W, "annotation_files",
         "no system files (.DS_Store, Thumbs.db, desktop.ini, macOS ._*) among the dataset's files; skipped"),
    # the dataset as a whole
    Rule("DATASET_EMPTY", E, "dataset", "at least one sample"),
    Rule("CLASS_UNUSED", W, "dataset", "every declared class has an instance"),
    Rule("CLASS_IMBALANCE", INFO, "dataset", "the majority/minority class ratio stays below IMBALANCE_RATIO"),
    Rule("BOX_SIZE_OUTLIER", INFO, "dataset", "a box lies within FAR_FROM_MEAN_STD deviations of its class's sizes"),
    # a training split beside its validation split
    Rule("SPLIT_DUPLICATE_IMAGE", W, "splits", "no image in both splits"),
    Rule("SPLIT_CLASS_MISSING", W, "splits", "every class has instances in both splits"),
    Rule("SPLIT_CLASS_ID_MISMATCH", E, "splits", "a class name has one label in both splits"),
)

RULE_BY_CODE: dict[str, Rule] = {r.code: r for r in RULE_TABLE}
# code -> default severity, the view most tools need
RULES: dict[str, Severity] = {r.code: r.severity for r in RULE_TABLE}
# family -> its codes, in table order (the pytest plugin makes one test per family)
FAMILIES: dict[str, tuple[str, ...]] = {}
for _rule in RULE_TABLE:
    FAMILIES[_rule.family] = FAMILIES.get(_rule.family, ()) + (_rule.code,)
del _rule

REQUIRED_KEYS = ("boxes", "labels", "image_id", "area", "iscrowd")
OPTIONAL_KEYS = ("masks", "keypoints")
KNOWN_KEYS = REQUIRED_KEYS + OPTIONAL_KEYS
PER_INSTANCE_KEYS = ("labels", "area", "iscrowd", "masks", "keypoints")

# How far (pixels) the box of a mask may sit from the given box before MASK_BOX_MISMATCH: one pixel for the
# inclusive/exclusive corner conventions plus one for resampling.
MASK_BOX_TOLERANCE_PX = 2.0
# Float rounding slack of BOX_OUT_OF_BOUNDS: resizing a box that touches the border by H'/H in float32 can
# land it 1e-6 beyond the new border, which no model minds.
BOUNDS_EPS_PX = 1e-3
# Relative slack of AREA_INCONSISTENT: areas are compared with both the box and the mask area.
AREA_REL_TOLERANCE = 0.05
# Absolute slack against the mask area, in boundary pixels of the mask: the same valid polygon rasterised two
# common ways (Pillow with its outline, as labelme draws it, and pycocotools' decoding) differs by up to a ring
# of about one pixel around the shape, which on a thin object is far more than 5 % (a 19 x 54 px bottle: 873 vs
# 815 px). Two boundary widths cover both directions and sub-pixel outlines; a forgotten rescale (x4) is still
# caught on all but the tiniest objects.
AREA_BOUNDARY_WIDTHS = 2.0
# Dataset-level thresholds, Datumaro's validator defaults: majority/minority class count ratio and the number of
# standard deviations from its class's mean at which a box is reported.
IMBALANCE_RATIO = 50.0
FAR_FROM_MEAN_STD = 5.0
# Perceptual hashes (64-bit pHash) at most this many bits apart count as the same picture across splits.
NEAR_DUPLICATE_BITS = 4
