"""Class names as people type them: ``person``, ``Person`` and ``person `` are three names to every tool (labelme's
``labels.txt`` and label list, COCO ``categories``), so a loader keeps them apart and warns (CLASS_NAME_SIMILAR);
it reads them as one class only where the user asks (``merge_similar_names``):

- ``"whitespace"``: names equal once surrounding whitespace is stripped are one class;
- ``"case"`` (or ``True``): names equal once stripped and case-folded are one class.

The merged class is named by its most used spelling (LabelMe) or its lowest category id's (COCO), stripped.
"""

from __future__ import annotations

from typing import Iterable, Literal, Mapping, Union

from .common import DatasetError

MergeNames = Union[bool, Literal["whitespace", "case"], None]
MERGE_MODES = ("whitespace", "case")
# How to read near-duplicate names as one class, the end of every CLASS_NAME_SIMILAR hint.
MERGE_HINT = ("read them as one class with merge_similar_names='case' (--merge-similar-names case; 'whitespace' "
              "merges only names that differ in surrounding whitespace)")


def merge_mode(value: MergeNames) -> str | None:
    """The normalisation ``merge_similar_names`` asks for: None (keep names as written), "whitespace" or "case"."""
    if value is None or value is False:
        return None
    if value is True:
        return "case"
    if value in MERGE_MODES:
        return str(value)
    raise DatasetError(f"merge_similar_names={value!r}: choose False, True, 'whitespace' or 'case'")


def name_key(name: str, mode: str | None) -> str:
    """The name two spellings must share to be one class under ``mode``."""
    if mode is None:
        return name
    stripped = name.strip()
    return stripped.casefold() if mode == "case" else stripped


def similar_key(name: str) -> str:
    """What near-duplicates share: the name stripped and case-folded."""
    return name.strip().casefold()


def similar_groups(names: Iterable[str]) -> list[list[str]]:
    """Groups of two or more distinct names that differ only in case or surrounding whitespace, each sorted."""
    groups: dict[str, set[str]] = {}
    for n in names:
        groups.setdefault(similar_key(n), set()).add(n)
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)


def normalised_class_list(names: Iterable[str], mode: str | None, *, what: str) -> list[str]:
    """A class list given by the user under ``mode``: each name stripped; two that become one are refused."""
    names = list(names)
    if mode is None:
        return names
    seen: dict[str, str] = {}
    for n in names:
        key = name_key(n, mode)
        if key in seen:
            raise DatasetError(f"{what} {names}: {seen[key]!r} and {n!r} are one class with "
                               f"merge_similar_names={mode!r}; list it once")
        seen[key] = n
    return [n.strip() for n in names]


def spelled(names_files: Mapping[str, Iterable[str]], names: Iterable[str], limit: int = 3) -> str:
    """``'person' (a.json, b.json), 'Person' (c.json)``: each spelling with the files it occurs in."""
    parts = []
    for n in names:
        files = sorted(set(names_files.get(n, ())))
        shown = ", ".join(files[:limit]) + (f" and {len(files) - limit} more" if len(files) > limit else "")
        parts.append(f"{n!r} ({shown})" if shown else repr(n))
    return ", ".join(parts)


def unknown_label_hint(name: str, classes: Iterable[str], default: str) -> str:
    """LABEL_UNKNOWN's hint: for a name that differs from a class only in case or whitespace, say so."""
    close = [c for c in classes if similar_key(c) == similar_key(name) and c != name]
    if not close:
        return default
    how = "whitespace" if close[0].strip() == name.strip() else "case"
    differs = "surrounding whitespace" if how == "whitespace" else "case"
    return (f"it differs from the class {close[0]!r} only in {differs}; rename it, or read both as one class "
            f"with merge_similar_names={how!r} (--merge-similar-names {how})")
