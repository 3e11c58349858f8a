"""Dataset contract, reference engine and reproducibility suite for torchvision detection fine-tuning.

Data flows dataset -> transforms -> model -> engine -> evaluator -> report: ``reference.data`` ->
``reference.transforms`` -> ``reference.models`` -> ``reference.engine`` (with ``reference.training`` around its
loops) -> ``reference.engine.coco_eval`` -> ``reference.reporting``; ``reference.contract`` checks the data at
every step, and ``reference.app`` holds one module per command.
"""

__all__ = ["Report", "Severity", "Violation", "validate_dataset", "validate_sample"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # the contract's names are imported on first use, so that importing a submodule that needs no torch (the
    # pytest plugin, the CLI's argument parser) does not import torch
    if name in __all__:
        from . import contract

        return getattr(contract, name)
    raise AttributeError(f"module 'reference' has no attribute {name!r}")
