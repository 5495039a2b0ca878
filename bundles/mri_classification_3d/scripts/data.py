"""Subjects, classes, split and loaders of the classification bundle, from a store or a NIfTI folder.

``dataset_dir`` is either a TileDB store (volumes in collections such as ``T1w`` and
``FLAIR``, the target in a subject-table column) or a folder with one sub-folder per
collection (``T1w/<subject>.nii.gz``; subject ids by the ingest rule of
:func:`radiobject_adapter.subject_id_from_path`) plus a CSV subject table (default
``subjects.csv`` in the folder; ``radiobundles ingest`` turns such a folder into the store).

Items are ``{"image": MetaTensor[C, X, Y, Z], "label": "<class name>", "subject_id": ...}``
from either source; the store path uses the data layer's loader factories
(``create_training_dataloader(collections=..., labels="diagnosis", ...)``), the folder path
MONAI's ``LoadImaged``. The bundle's transforms then map the class name to its index
(:class:`ClassIndexd`) and bring every volume to one shape.

Example:
    >>> data = ClassificationData("/data/store", collections=["T1w", "FLAIR"], label_column="diagnosis")
    >>> data.class_map.class_names, len(data.subjects("train")), data.class_weights()
    >>> loader = data.loader("train", transform=preprocessing, batch_size=4)
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Hashable, Mapping, Sequence
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import torch
from monai.config import KeysCollection
from monai.data import DataLoader, Dataset
from monai.transforms import Compose, LoadImaged, MapTransform

from radiobject_adapter.data.loaders import (
    create_inference_dataloader,
    create_training_dataloader,
    create_validation_dataloader,
    make_dataloader,
)
from radiobject_adapter.io.ingest import load_subject_table
from radiobject_adapter.store.naming import discover_files, subject_id_from_path
from radiobject_adapter.store.radiobject import RadiObject, StoreNotFoundError, split_subjects

__all__ = ["SPLITS", "ClassIndexd", "ClassMap", "ClassificationData", "load_class_names"]

SPLITS = ("train", "validation", "test", "all")
_SPLIT_NAMES = {"train": "train", "training": "train", "val": "validation", "validation": "validation", "test": "test"}


class ClassMap:
    """Class names in network output order, and back.

    Saved beside the model (``class_names.json``) and inside every checkpoint, so a model is
    never read with another mapping: :meth:`load_state_dict` refuses a different one.

    Example:
        >>> cm = ClassMap.from_values(["lesion", "healthy", "lesion"])
        >>> cm.class_names, cm.index("lesion")
        (['healthy', 'lesion'], 1)
    """

    def __init__(self, class_names: Sequence[str]) -> None:
        names = [str(n) for n in class_names]
        if len(names) < 2:
            raise ValueError(f"a classifier needs at least two classes, got {names}")
        if len(set(names)) != len(names):
            raise ValueError(f"class names must be unique, got {names}")
        self.class_names = names
        self._index = {n: i for i, n in enumerate(names)}

    @classmethod
    def from_values(cls, values: Sequence[Any]) -> ClassMap:
        """Sorted distinct non-empty values (as strings): a stable order for the same table."""
        return cls(sorted({str(v) for v in values if _has_label(v)}))

    @classmethod
    def load(cls, path: str | os.PathLike) -> ClassMap:
        return cls(load_class_names(path))

    def __len__(self) -> int:
        return len(self.class_names)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClassMap) and other.class_names == self.class_names

    def index(self, name: Any) -> int:
        try:
            return self._index[str(name)]
        except KeyError:
            raise KeyError(f"class {name!r} is not one of the model's classes {self.class_names}") from None

    def state_dict(self) -> dict[str, list[str]]:
        return {"class_names": list(self.class_names)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        saved = list(state["class_names"])
        if saved != self.class_names:
            raise ValueError(
                f"the checkpoint was trained for classes {saved}, this run has {self.class_names}; "
                "pass --class_names with the checkpoint's classes or train from scratch"
            )

    def save(self, path: str | os.PathLike) -> str:
        """Write ``{"class_names": [...]}`` atomically (a temporary file, then a rename)."""
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".json.tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(self.state_dict(), fh, indent=4)
        os.replace(tmp, path)
        return path


def load_class_names(path: str | os.PathLike) -> list[str]:
    """The class names saved beside a trained model (``models/class_names.json``)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"no class map {os.fspath(path)!r}: train first (train.json writes it beside model.pt) or copy the "
            "model's class_names.json there"
        )
    with open(path) as fh:
        return list(json.load(fh)["class_names"])


def _has_label(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and np.isnan(value)) and str(value).strip() != ""


class ClassIndexd(MapTransform):
    """Replace a class name under ``keys`` by its index (``torch.long``); absent keys are skipped."""

    def __init__(self, keys: KeysCollection, class_map: ClassMap, allow_missing_keys: bool = True) -> None:
        super().__init__(keys, allow_missing_keys)
        self.class_map = class_map

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = torch.tensor(self.class_map.index(d[key]), dtype=torch.long)
        return d


class ClassificationData:
    """The subjects, classes and loaders of one dataset (a store or a NIfTI folder + CSV).

    Args:
        dataset_dir: store URI, or folder with ``<collection>/`` sub-folders of NIfTI files.
        collections: collections stacked as channels, in this order.
        label_column: subject-table column with the class of each subject.
        subjects_csv: the folder's subject table (default ``<dataset_dir>/subjects.csv``;
            unused for a store, whose subject table is inside).
        split_column: a table column with ``train`` / ``validation`` / ``test`` per subject; used
            when present, else a seeded split stratified by class.
        val_fraction / test_fraction: share of each class in validation / test (seeded split).
        seed: seed of the split.
        class_names: the classes in output order; ``None``: the sorted distinct values of
            ``label_column``.
        num_classes: the network's output channels; must equal the number of classes.
    """

    def __init__(
        self,
        dataset_dir: str,
        collections: Sequence[str],
        label_column: str = "diagnosis",
        subjects_csv: str | None = None,
        split_column: str = "split",
        val_fraction: float = 0.2,
        test_fraction: float = 0.0,
        seed: int = 0,
        class_names: Sequence[str] | None = None,
        num_classes: int | None = None,
    ) -> None:
        self.dataset_dir = str(dataset_dir).rstrip("/")
        self.collections = [collections] if isinstance(collections, str) else list(collections)
        if not self.collections:
            raise ValueError("give at least one collection, e.g. collections=['T1w']")
        self.label_column = label_column
        self.subjects_csv = subjects_csv
        self.split_column = split_column
        self.val_fraction, self.test_fraction, self.seed = float(val_fraction), float(test_fraction), int(seed)
        if not 0 <= self.val_fraction + self.test_fraction < 1:
            raise ValueError(f"val_fraction + test_fraction must be in [0, 1), got {val_fraction} + {test_fraction}")
        self._class_names = list(class_names) if class_names else None
        self.num_classes = int(num_classes) if num_classes is not None else None
        self.is_store = self._is_store()

    # -- source ----------------------------------------------------------------------------
    def _is_store(self) -> bool:
        # a NIfTI folder has the collections as sub-folders; a store keeps them under collections/
        local = "://" not in self.dataset_dir and os.path.isdir(self.dataset_dir)
        if local and all(os.path.isdir(os.path.join(self.dataset_dir, c)) for c in self.collections):
            return False
        try:
            RadiObject(self.dataset_dir)
        except StoreNotFoundError as err:
            raise ValueError(
                f"dataset_dir {self.dataset_dir!r} is neither a store nor a folder with sub-folders "
                f"{self.collections} of NIfTI files ({err}); pass --dataset_dir <store or folder> and "
                "--collections with the collection names"
            ) from None
        return True

    @cached_property
    def table(self) -> pd.DataFrame:
        """The subject table, indexed by subject id."""
        if self.is_store:
            radi = RadiObject(self.dataset_dir)
            missing = [c for c in self.collections if c not in radi.collection_names]
            if missing:
                raise ValueError(
                    f"store {self.dataset_dir!r} has no collection(s) {missing}; it has {list(radi.collection_names)}"
                )
            table = radi.obs_meta.set_index("obs_subject_id").drop(columns=["obs_id"], errors="ignore")
        else:
            csv = self.subjects_csv or os.path.join(self.dataset_dir, "subjects.csv")
            if not os.path.isfile(csv):
                raise FileNotFoundError(
                    f"no subject table {csv!r}; pass --subjects_csv <csv with subject_id and labels>"
                )
            table = load_subject_table(csv)
        table.index = table.index.astype(str)
        return table

    @cached_property
    def files(self) -> dict[str, list[str]]:
        """NIfTI folder only: ``subject -> [file per collection]`` for subjects present in all."""
        by_collection = []
        for name in self.collections:
            found = {subject_id_from_path(f): f for f in discover_files(os.path.join(self.dataset_dir, name))}
            by_collection.append(found)
        subjects = set(by_collection[0]).intersection(*by_collection[1:])
        partial = set().union(*by_collection) - subjects
        if partial:
            warnings.warn(
                f"{len(partial)} subject(s) lack a file in some collection and are left out: {sorted(partial)[:5]}",
                stacklevel=2,
            )
        return {s: [found[s] for found in by_collection] for s in sorted(subjects)}

    def imaged_subjects(self) -> list[str]:
        """Subjects with a volume in every collection."""
        if not self.is_store:
            return list(self.files)
        radi = RadiObject(self.dataset_dir)
        ids = set(radi.collection(self.collections[0]).subject_ids)
        for name in self.collections[1:]:
            ids &= set(radi.collection(name).subject_ids)
        return sorted(ids)

    # -- labels and split ------------------------------------------------------------------
    def labels(self) -> pd.Series:
        """Class name of each labelled subject that has all its volumes."""
        if self.label_column not in self.table.columns:
            raise KeyError(
                f"the subject table has no column {self.label_column!r}; columns: {list(self.table.columns)}; "
                "pass --label_column <column>"
            )
        values = self.table[self.label_column]
        keep = [s for s in self.imaged_subjects() if s in values.index and _has_label(values[s])]
        return values.loc[keep].astype(str)

    @cached_property
    def class_map(self) -> ClassMap:
        cm = ClassMap(self._class_names) if self._class_names else ClassMap.from_values(list(self.labels()))
        if self.num_classes is not None and len(cm) != self.num_classes:
            raise ValueError(
                f"column {self.label_column!r} has {len(cm)} classes {cm.class_names}, the network has "
                f"num_classes={self.num_classes}; pass --num_classes {len(cm)}"
            )
        unknown = sorted(set(self.labels()) - set(cm.class_names))
        if unknown:
            raise ValueError(f"labels {unknown} are not among class_names {cm.class_names}; never dropped silently")
        return cm

    def _table_split(self) -> pd.Series | None:
        if self.split_column not in self.table.columns:
            return None
        column = self.table[self.split_column]
        raw = column.astype(str).str.strip().str.lower()
        bad = sorted(set(raw[raw != ""]) - set(_SPLIT_NAMES))
        if bad:
            raise ValueError(f"column {self.split_column!r} has values {bad}; use train / validation / test")
        return raw.map(lambda v: _SPLIT_NAMES.get(v, ""))

    def subjects(self, split: str) -> list[str]:
        """Labelled subjects of ``split`` (``train``, ``validation``, ``test`` or ``all``)."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
        labels = self.labels()
        if split == "all":
            return sorted(labels.index)
        table_split = self._table_split()
        if table_split is not None:
            return sorted(s for s in labels.index if table_split.get(s, "") == split)
        chosen: list[str] = []
        for name in self.class_map.class_names:  # stratified: each class split on its own
            ids = sorted(labels.index[labels == name])
            rest, test = split_subjects(ids, self.test_fraction, self.seed) if self.test_fraction else (ids, [])
            inner = self.val_fraction / (1 - self.test_fraction)
            train, val = split_subjects(rest, inner, self.seed) if inner else (rest, [])
            chosen += {"train": train, "validation": val, "test": test}[split]
        return sorted(chosen)

    def class_weights(self, split: str = "train") -> torch.Tensor:
        """Inverse class frequencies of ``split``, mean 1 (for ``CrossEntropyLoss(weight=...)``)."""
        labels = self.labels().loc[self.subjects(split)]
        counts = np.array([(labels == n).sum() for n in self.class_map.class_names], dtype=np.float64)
        if (counts == 0).any():
            empty = [n for n, c in zip(self.class_map.class_names, counts) if c == 0]
            raise ValueError(f"no {split} subject of class(es) {empty}; add subjects or change the split")
        weights = counts.sum() / (len(counts) * counts)
        return torch.as_tensor(weights / weights.mean(), dtype=torch.float32)

    # -- loaders ---------------------------------------------------------------------------
    def loader(
        self,
        split: str,
        transform: Any = None,
        batch_size: int = 2,
        num_workers: int = 0,
        shuffle: bool | None = None,
        distributed: bool = False,
        labelled: bool = True,
    ) -> DataLoader:
        """A loader over the subjects of ``split`` (``labelled=False``: every imaged subject, no label).

        Shuffles the training split unless ``shuffle`` says otherwise.
        """
        ids = self.subjects(split) if labelled else self.imaged_subjects()
        if not ids:
            raise ValueError(f"no subjects in split {split!r} of {self.dataset_dir!r}")
        shuffle = split == "train" if shuffle is None else shuffle
        pin = torch.cuda.is_available()
        if self.is_store:
            radi = RadiObject(self.dataset_dir, subjects=ids)
            cols = [radi.collection(c) for c in self.collections]
            if not labelled:
                return create_inference_dataloader(cols, batch_size, num_workers, pin, transform)
            if shuffle:
                return create_training_dataloader(
                    cols, labels=self.label_column, batch_size=batch_size, num_workers=num_workers,
                    pin_memory=pin, transform=transform, distributed=distributed, seed=self.seed,
                )  # fmt: skip
            return create_validation_dataloader(
                cols, labels=self.label_column, batch_size=batch_size, num_workers=num_workers,
                pin_memory=pin, transform=transform, distributed=distributed,
            )  # fmt: skip
        labels = self.labels() if labelled else None
        items = [
            {"image": self.files[s], "subject_id": s, **({"label": labels[s]} if labels is not None else {})}
            for s in ids
        ]
        load = LoadImaged("image", reader="NibabelReader", image_only=True, ensure_channel_first=True)
        dataset = Dataset(items, Compose([load, transform]) if transform is not None else load)
        return make_dataloader(dataset, batch_size, shuffle, num_workers, pin, num_workers > 0, distributed, self.seed)
