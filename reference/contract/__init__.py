"""The dataset contract of torchvision detection models, as code.

A detection dataset returns ``(image, target)`` where ``target`` is a dict of per-instance tensors. The models
check little of this and fail late, deep inside torch; :func:`validate_sample` and :func:`validate_dataset`
check all of it up front and report every broken rule with a stable code, the sample index, the field, the
instance index and the offending values.

- :mod:`.rules`: the rule table (codes, severities and families; see there for the one code made elsewhere)
  and the thresholds;
- :mod:`.findings`: :class:`Violation`, :class:`Report` and the per-sample :class:`Collector`;
- :mod:`.checks`: one check per field and :func:`validate_sample`;
- :mod:`.traversal`: :func:`validate_dataset`, over every sample of a dataset;
- :mod:`.summary`: the quick check of a loader's sample summaries;
- :mod:`.dataset_rules`: statistics, the dataset-wide rules and :func:`compare_splits`;
- :mod:`.orientation`: the EXIF frame of a user's own dataset.
"""

from .checks import ImageHeader, image_id_of, image_id_value, image_size, validate_sample
from .dataset_rules import class_name, class_names_of, compare_splits, dataset_checks, image_fingerprint
from .findings import Collector, Report, Violation
from .rules import (AREA_BOUNDARY_WIDTHS, AREA_REL_TOLERANCE, BOUNDS_EPS_PX, FAMILIES, FAR_FROM_MEAN_STD,
                    IMBALANCE_RATIO, KNOWN_KEYS, MASK_BOX_TOLERANCE_PX, NEAR_DUPLICATE_BITS, OPTIONAL_KEYS,
                    PER_INSTANCE_KEYS, REQUIRED_KEYS, RULE_BY_CODE, RULE_TABLE, RULES, Rule, Severity)
from .traversal import check_picklable, headers_only_refusal, validate_dataset

__all__ = [
    "AREA_BOUNDARY_WIDTHS", "AREA_REL_TOLERANCE", "BOUNDS_EPS_PX", "FAMILIES", "FAR_FROM_MEAN_STD", "IMBALANCE_RATIO",
    "KNOWN_KEYS", "MASK_BOX_TOLERANCE_PX", "NEAR_DUPLICATE_BITS", "OPTIONAL_KEYS", "PER_INSTANCE_KEYS",
    "REQUIRED_KEYS", "RULE_BY_CODE", "RULE_TABLE", "RULES", "Collector", "ImageHeader", "Report", "Rule",
    "Severity", "Violation", "check_picklable", "class_name", "class_names_of", "compare_splits", "dataset_checks",
    "headers_only_refusal", "image_fingerprint", "image_id_of", "image_id_value", "image_size", "validate_dataset",
    "validate_sample",
]
