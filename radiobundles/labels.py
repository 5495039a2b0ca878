"""A bundle's classes from its data: ``class_names`` read from the store, labels checked against them.

A store records the label classes declared at ingest (``radiobundles ingest --label-classes``;
:mod:`radiobject_adapter.store.label_classes`). Bundles take their ``class_names`` from it unless
told otherwise on the command line, so a network always has one output per class its labels
hold; :func:`check_label_classes` turns a label with a class the network cannot output into one
clear error before training starts (instead of an index error deep in the loss).

Example (``train.json``)::

    "class_names": {"_target_": "radiobundles.labels.class_names_for", "dataset_dir": "@dataset_dir",
                    "label_collection": "@label_collection", "default": "@default_class_names"}
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["check_label_classes", "class_names_for"]


def _label_collection(dataset_dir: str, label_collection: str) -> Any | None:
    from radiobject_adapter import RadiObject, is_store
    from radiobject_adapter.address import split_collection_address

    store, collection = split_collection_address(str(dataset_dir))  # <store>::<image collection>
    if collection is not None and not os.path.exists(str(dataset_dir)):
        dataset_dir = store
    if "://" not in str(dataset_dir) and not os.path.isdir(str(dataset_dir)):
        return None
    if not is_store(str(dataset_dir)):
        return None  # a NIfTI folder (or nothing yet): the configured default applies
    radi = RadiObject(str(dataset_dir))
    return radi.collection(label_collection) if label_collection in radi.collection_names else None


def class_names_for(dataset_dir: str, label_collection: str = "seg", default: Sequence[str] = ()) -> list[str]:
    """The class names a bundle trained or run on ``dataset_dir`` uses, background first.

    For a store with ``label_collection``: the classes declared at ingest, else one per class
    value its labels hold (named from ``default`` where it has a name). For anything else (a
    NIfTI folder, a path that does not exist yet): ``default``.

    Example:
        >>> class_names_for("demo_output/store", "seg", ["background", "structure_1", "structure_2"])
        ['background', 'structure_1', 'structure_2', 'structure_3']
    """
    from radiobject_adapter.store.label_classes import label_classes

    collection = _label_collection(dataset_dir, label_collection)
    if collection is None:
        return list(default)
    return label_classes(collection, default)


def check_label_classes(items: Sequence[Mapping[str, Any]], class_names: Sequence[str], store: str) -> None:
    """Raise if a label of ``items`` (a store datalist) holds a class beyond ``class_names``.

    Reads only each label's foreground-index counts (array metadata), never its voxels.

    Raises:
        ValueError: one line naming the label, its classes, the network's classes and what to do.
    """
    from radiobject_adapter import RadiObject
    from radiobject_adapter.address import parse_address, volume_address
    from radiobject_adapter.store.label_classes import classes_in_volumes, label_classes

    labels = [parse_address(str(it["label"])) for it in items if "label" in it]
    if not labels:
        return
    radi = RadiObject(store)
    n = len(class_names)
    for name in sorted({a.collection for a in labels}):
        collection = radi.collection(name)
        wanted = {a.key for a in labels if a.collection == name}
        for subject, present in sorted(classes_in_volumes(collection).items()):
            beyond = sorted(c for c in present if c >= n)
            if subject in wanted and beyond:
                store_classes = label_classes(collection)
                if list(store_classes) == list(class_names):  # the network has the store's classes: the label is off
                    what = f"values 0..{n - 1} are the store's declared classes: correct the label, or re-ingest"
                    what += " with --label-classes naming every class value"
                else:
                    what = "drop the --class_names override to use them, or give one name per class value"
                raise ValueError(
                    f"label {volume_address(store, name, subject)} holds class {beyond} but the network outputs {n} classes "
                    f"{list(class_names)} (values 0..{n - 1}); the store's label classes are {store_classes}: {what}"
                )
