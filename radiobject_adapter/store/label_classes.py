"""The label classes of a label collection: declared at ingest, or read from the foreground index.

``radiobundles ingest ... --label-classes background,liver,tumour`` records the names in the label
collection's group metadata (``label_classes``, a JSON list; the index of a name is its class
value) and rejects labels holding a class beyond them. A store ingested without names still
knows which classes its labels hold: every label volume carries per-class voxel counts in its
foreground index, and :func:`label_classes` names those ``class_<i>`` (or after ``default``).

Example:
    >>> radi = RadiObject("store")
    >>> label_classes(radi.seg)                    # declared at ingest
    ['background', 'liver', 'tumour']
    >>> classes_in_volumes(radi.seg)["case_001"]   # what each label holds
    {0, 1, 2}
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from radiobject_adapter.store.layout import LABEL_CLASSES_KEY

__all__ = ["LABEL_CLASSES_KEY", "classes_in_volumes", "declared_label_classes", "label_classes", "parse_label_classes"]


def parse_label_classes(names: Sequence[str] | str) -> list[str]:
    """Class names from a list or a comma-separated string, background (class 0) first.

    Raises:
        ValueError: fewer than two names, a blank name or a name given twice.

    Example:
        >>> parse_label_classes("background, liver ,tumour")
        ['background', 'liver', 'tumour']
    """
    items = names.split(",") if isinstance(names, str) else list(names)
    out = [str(n).strip() for n in items]
    if len(out) < 2 or any(not n for n in out):
        raise ValueError(
            f"label classes {names!r}: give one non-blank name per class value, background first "
            "(e.g. background,liver,tumour)"
        )
    twice = sorted({n for n in out if out.count(n) > 1})
    if twice:
        raise ValueError(f"label classes {names!r} name {twice} more than once")
    return out


def declared_label_classes(collection: Any) -> list[str] | None:
    """The class names declared at ingest for ``collection`` (a :class:`VolumeCollection`), or ``None``."""
    raw = collection.metadata.get(LABEL_CLASSES_KEY)
    return json.loads(str(raw)) if raw is not None else None


def _volume_classes(volume: Any) -> set[int]:
    from radiobject_adapter.store.foreground import COUNTS_KEY
    from radiobject_adapter.store.labels import ensure_foreground_index

    counts = volume.metadata.get(COUNTS_KEY)
    if counts is not None:
        return {int(c) for c, n in json.loads(str(counts)).items() if int(n) > 0}
    return {int(c) for c, n in ensure_foreground_index(volume, persist=False).counts.items() if n > 0}


def classes_in_volumes(collection: Any) -> dict[str, set[int]]:
    """``subject id -> class values present`` for each label volume (from its foreground index;
    a volume without one is read whole once)."""
    return {vol.subject_id or vol.obs_id or vol.uri: _volume_classes(vol) for vol in collection}


def label_classes(collection: Any, default: Sequence[str] | None = None) -> list[str]:
    """The classes a network trained on ``collection`` must output, background first.

    The names declared at ingest when there are any; otherwise one name per class value up to
    the largest one any label holds: ``default[i]`` where ``default`` has it, else ``class_<i>``.
    """
    declared = declared_label_classes(collection)
    if declared is not None:
        return declared
    present = set().union(*classes_in_volumes(collection).values()) if len(collection) else set()
    top = max(present | {1})
    names = list(default or [])
    return [names[i] if i < len(names) else ("background" if i == 0 else f"class_{i}") for i in range(top + 1)]
