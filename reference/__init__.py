"""Dataset contract, reference engine and reproducibility suite for torchvision detection fine-tuning.

Data flows dataset -> transforms -> model -> engine -> evaluator -> report:
``reference.datasets`` -> ``reference.transforms`` -> ``reference.models`` -> ``reference.engine`` /
``reference.training`` -> ``reference.coco_eval`` -> ``reference.report``; ``reference.contract`` checks the
data at every step.
"""

from .contract import Report, Severity, Violation, validate_dataset, validate_sample

__all__ = ["Report", "Severity", "Violation", "validate_dataset", "validate_sample"]
__version__ = "0.1.0"
