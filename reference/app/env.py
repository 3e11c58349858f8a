"""``tvref env``: the versions in use, and whether pycocotools works with this numpy."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Environment:
    """The versions by package, and the error pycocotools raised encoding a mask (None when it works)."""

    versions: dict[str, str]
    pycocotools_error: str | None

    @property
    def ok(self) -> bool:
        return self.pycocotools_error is None

    def lines(self) -> list[str]:
        lines = [f"{k}: {v}" for k, v in self.versions.items()]
        if self.ok:
            return lines + ["pycocotools: works with this numpy"]
        return lines + [f"pycocotools: BROKEN with this numpy ({self.pycocotools_error})"]


def pycocotools_error() -> str | None:
    """``Type: message`` of what encoding a small mask with pycocotools raises, or None when it works."""
    try:
        import numpy as np
        from pycocotools import mask as mask_utils

        mask_utils.encode(np.asfortranarray(np.ones((4, 4), dtype=np.uint8)))
    except Exception as exc:  # noqa: BLE001 - the check's whole point is to report this
        return f"{type(exc).__name__}: {exc}"
    return None


def environment() -> Environment:
    """The versions (:func:`reference.reporting.run_report.versions`) and the pycocotools check."""
    from ..reporting.run_report import versions

    return Environment(versions(), pycocotools_error())
