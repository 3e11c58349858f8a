"""The report model: :class:`Violation` (one broken rule, where and what), :class:`Report` (a dataset's
violations and statistics, as JSON or text) and :class:`Collector`, which builds a sample's violations with
the severities of the rule table."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from .rules import RULE_BY_CODE, Severity


@dataclass(frozen=True)
class Violation:
    """One broken rule: where (sample index, field, instance) and what (message, hint)."""

    code: str
    severity: Severity
    index: int | None
    field: str | None
    instance: int | None
    message: str
    hint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["severity"] = self.severity.value
        return d

    def __str__(self) -> str:
        where = f"sample {self.index}" if self.index is not None else "dataset"
        if self.field:
            where += f", {self.field}"
        if self.instance is not None:
            where += f"[{self.instance}]"
        text = f"{self.severity.value.upper()} {self.code} ({where}): {self.message}"
        return text + (f" Hint: {self.hint}" if self.hint else "")

    @classmethod
    def of(cls, code: str, index: int | None, field_: str | None, instance: int | None, message: str,
           hint: str | None = None, *, model_ready: bool = False) -> "Violation":
        """A violation of rule ``code`` with the severity the rule table gives it (its model-ready severity when
        ``model_ready``)."""
        return cls(code, RULE_BY_CODE[code].severity_for(model_ready), index, field_, instance, message, hint)


@dataclass
class Report:
    """The result of validating a dataset: violations plus statistics; serialises to JSON."""

    samples: int = 0
    violations: list[Violation] = field(default_factory=list)
    statistics: dict[str, Any] = field(default_factory=dict)
    # (sample index, sha1 of the pixels, 64-bit pHash or None) per image, when asked for; not serialised
    fingerprints: list[tuple[int, str, int | None]] = field(default_factory=list, repr=False)

    def count(self, severity: Severity) -> int:
        return sum(v.severity is severity for v in self.violations)

    @property
    def errors(self) -> list[Violation]:
        return [v for v in self.violations if v.severity is Severity.ERROR]

    @property
    def ok(self) -> bool:
        return not self.errors

    def codes(self) -> set[str]:
        return {v.code for v in self.violations}

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": {
                "samples": self.samples,
                "errors": self.count(Severity.ERROR),
                "warnings": self.count(Severity.WARNING),
                "infos": self.count(Severity.INFO),
            },
            "violations": [v.to_dict() for v in self.violations],
            "statistics": self.statistics,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def render_text(self, examples: int = 3) -> str:
        """A readable summary grouped by code, with the first ``examples`` violations of each."""
        s = self.to_dict()["summary"]
        lines = [
            f"{s['samples']} samples checked: {s['errors']} errors, {s['warnings']} warnings, {s['infos']} infos"
        ]
        by_code: dict[str, list[Violation]] = defaultdict(list)
        for v in self.violations:
            by_code[v.code].append(v)
        for code, items in sorted(by_code.items(), key=lambda kv: (kv[1][0].severity != Severity.ERROR, kv[0])):
            lines.append(f"{code} [{items[0].severity.value}] x{len(items)}")
            for v in items[:examples]:
                lines.append(f"  - {v}")
            if len(items) > examples:
                lines.append(f"  ... and {len(items) - examples} more")
        st = self.statistics
        if st:
            lines.append(
                f"instances per class: {st.get('instances_per_class')}; empty images: {st.get('empty_images')}; "
                f"box sizes (COCO buckets): {st.get('box_size_buckets')}"
            )
        return "\n".join(lines)


class Collector:
    """Builds the violations of one sample; keeps the check functions short."""

    def __init__(self, index: int | None, model_ready: bool):
        self.index = index
        self.model_ready = model_ready
        self.items: list[Violation] = []

    def add(self, code: str, field_: str | None, message: str, *, instance: int | None = None,
            hint: str | None = None) -> None:
        self.items.append(Violation.of(code, self.index, field_, instance, message, hint,
                                       model_ready=self.model_ready))
