"""Which collections a dataset stacks and the per-volume class labels it returns."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from radiobject_adapter.store.collection import VolumeCollection
from radiobject_adapter.store.radiobject import RadiObject

__all__ = ["LabelSource", "chosen_collections", "resolve_labels"]

LabelSource = str | pd.DataFrame | Mapping[str, Any] | Callable[[str], Any] | None


def chosen_collections(collections: Any, modalities: Sequence[str] | None) -> list[VolumeCollection]:
    """The collections a :class:`VolumeCollectionDataset` stacks (see its ``collections``)."""
    if isinstance(collections, RadiObject):
        names = list(modalities) if modalities is not None else list(collections.collection_names)
        unknown = [n for n in names if n not in collections.collection_names]
        if unknown:
            raise ValueError(
                f"modalities {unknown} are not collections of {collections.uri}; "
                f"it has {list(collections.collection_names)}"
            )
        return [collections.collection(n) for n in names]
    cols = [collections] if isinstance(collections, VolumeCollection) else list(collections)
    if modalities is not None:
        by_name = {c.name: c for c in cols}
        unknown = [n for n in modalities if n not in by_name]
        if unknown:
            raise ValueError(f"modalities {unknown} are not among the given collections {list(by_name)}")
        cols = [by_name[n] for n in modalities]
    if not cols:
        raise ValueError("give at least one collection")
    return cols


def resolve_labels(
    labels: LabelSource, collection: VolumeCollection, obs_ids: Sequence[str], subjects: Sequence[str]
) -> list[Any] | None:
    """Per-volume targets for ``obs_ids`` (with their ``subjects``), in that order, from ``labels``
    (see :class:`~radiobject_adapter.data.datasets.VolumeCollectionDataset`); ``None`` for none.

    Example:
        >>> resolve_labels("diagnosis", radi.CT, ["CT/case_000"], ["case_000"])
        ['tumor']
    """
    if labels is None:
        return None
    if callable(labels) and not isinstance(labels, (str, pd.DataFrame, Mapping)):
        return [labels(o) for o in obs_ids]
    if isinstance(labels, str):
        obs = collection.obs.set_index("obs_id")
        if labels in obs.columns:
            return [obs.at[o, labels] for o in obs_ids]
        root = collection.uri.rsplit("/collections/", 1)[0]
        table = RadiObject(root).obs_meta.set_index("obs_subject_id")
        if labels not in table.columns:
            raise KeyError(f"no column {labels!r} in the collection obs or the subject table ({list(table.columns)})")
        return [table.at[s, labels] for s in subjects]
    if isinstance(labels, pd.DataFrame):
        df = labels
        key = next((k for k in ("obs_id", "obs_subject_id", "subject_id") if k in df.columns), None)
        df = df.set_index(key) if key else df
        values = [c for c in df.columns if c not in ("obs_id", "obs_subject_id", "subject_id")]
        if len(values) != 1:
            raise ValueError(f"label DataFrame needs exactly one value column, has {values}")
        labels = df[values[0]].to_dict()
    mapping = dict(labels)
    out = []
    for o, s in zip(obs_ids, subjects):
        if o in mapping:
            out.append(mapping[o])
        elif s in mapping:
            out.append(mapping[s])
        else:
            raise KeyError(f"no label for {o!r} (subject {s!r})")
    return out
