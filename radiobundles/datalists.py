"""MONAI datalists from a TileDB store or an nnU-Net-style NIfTI folder, with one subject-level split.

A bundle names its data with one value, ``dataset_dir``; :func:`make_datalist` turns it into the
dictionaries MONAI datasets take, whichever kind it is:

* a store (local path or ``s3://``): entries hold volume addresses ``<store>::<collection>/<id>``,
  read by :class:`radiobject_adapter.TileDBReader` or the patch datasets of the adapter;
  ``<store>::<collection>`` picks the image collection (``--dataset_dir /data/ct_store::CT``);
* a folder with ``imagesTr/<id>_0000.nii.gz`` (+ ``labelsTr/<id>.nii.gz``), or a folder of NIfTI
  files: entries hold file paths.

Both carry ``subject_id``, and the train/validation split is
:func:`radiobject_adapter.split_subjects` over the labelled subjects, so the same subjects and
seed give the same split from either source.

Example:
    >>> make_datalist("/data/ct_store", split="train", seed=0)[0]
    {'image': '/data/ct_store::CT/case_000', 'subject_id': 'case_000', 'label': '/data/ct_store::seg/case_000'}
    >>> make_datalist("/data/Task09", split="validation")[0]["image"]
    '/data/Task09/imagesTr/case_003_0000.nii.gz'
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from radiobject_adapter import RadiObject, split_subjects
from radiobject_adapter.address import split_collection_address
from radiobject_adapter.store.naming import CHANNEL_SUFFIX, SUPPORTED_SUFFIXES, strip_suffix, subject_id_from_path
from radiobject_adapter.store.radiobject import store_problem

__all__ = ["NIFTI_SUFFIXES", "SPLITS", "detect_source", "make_datalist", "nifti_items"]

SPLITS = ("train", "validation", "all", "labelled", "unlabelled")
NIFTI_SUFFIXES = tuple(s for s in SUPPORTED_SUFFIXES if ".nii" in s)


def _nifti_files(folder: str) -> list[str]:
    return sorted(
        os.path.join(folder, f)
        for f in os.listdir(folder)
        if f.lower().endswith(NIFTI_SUFFIXES) and not f.startswith(".")
    )


def detect_source(dataset_dir: str, images_folder: str = "imagesTr") -> str:
    """``"nifti"`` for a folder with ``images_folder/`` or NIfTI files in it, ``"store"`` for a store.

    Raises:
        ValueError: ``dataset_dir`` is neither (the message says what was looked for).

    Example:
        >>> detect_source("/data/ct_store"), detect_source("/data/Task09_Spleen")
        ('store', 'nifti')
    """
    path = str(dataset_dir)
    local = "://" not in path and os.path.isdir(path)
    if local and (os.path.isdir(os.path.join(path, images_folder)) or _nifti_files(path)):
        return "nifti"
    problem = store_problem(path)
    if problem is not None:
        raise ValueError(
            f"dataset_dir {path!r} is neither a TileDB store nor a folder with {images_folder}/ or NIfTI files "
            f"({problem}); pass --dataset_dir <store or folder>"
        )
    return "store"


def nifti_items(
    dataset_dir: str, images_folder: str = "imagesTr", labels_folder: str = "labelsTr"
) -> list[dict[str, Any]]:
    """``{"image", "subject_id"[, "label"]}`` for every single-channel image of a NIfTI folder.

    Images come from ``dataset_dir/images_folder`` (or, when that folder does not exist, from
    NIfTI files directly in ``dataset_dir``); only nnU-Net channel ``_0000`` is used. Labels are
    matched by subject id (``case_001_0000.nii.gz`` <-> ``case_001.nii.gz``).
    """
    folder = os.path.join(dataset_dir, images_folder)
    if not os.path.isdir(folder):
        folder = str(dataset_dir)
    images: dict[str, str] = {}
    for path in _nifti_files(folder):
        channel = CHANNEL_SUFFIX.search(strip_suffix(os.path.basename(path)))
        if channel is None or channel.group(1) == "0000":
            images[subject_id_from_path(path)] = os.path.abspath(path)
    if not images:
        raise ValueError(f"no NIfTI images ({', '.join(NIFTI_SUFFIXES)}) in {folder!r}")
    label_dir = os.path.join(dataset_dir, labels_folder)
    labels = (
        {subject_id_from_path(p): os.path.abspath(p) for p in _nifti_files(label_dir)}
        if os.path.isdir(label_dir)
        else {}
    )
    items = []
    for sid in sorted(images):
        item: dict[str, Any] = {"image": images[sid], "subject_id": sid}
        if sid in labels:
            item["label"] = labels[sid]
        items.append(item)
    return items


def _store_items(dataset_dir: str, image_collection: str, label_collection: str) -> list[dict[str, Any]]:
    store = RadiObject(dataset_dir)
    label = label_collection if label_collection in store.collection_names else None
    return store.datalist(image=image_collection, label=label, require_label=False)


def make_datalist(
    dataset_dir: str,
    split: str = "all",
    val_fraction: float = 0.2,
    seed: int = 0,
    image_collection: str = "CT",
    label_collection: str = "seg",
    images_folder: str = "imagesTr",
    labels_folder: str = "labelsTr",
    class_names: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """The datalist of one split of a store or a NIfTI folder.

    Args:
        dataset_dir: store URI, or folder (see :func:`detect_source`); ``<store>::<collection>``
            (the old ``<store>#<collection>`` too) names the image collection as well.
        split: ``"train"`` / ``"validation"`` (seeded split of the labelled subjects),
            ``"labelled"``, ``"unlabelled"`` (images without a label: what is left to infer or
            annotate) or ``"all"``.
        val_fraction / seed: the subject-level split (:func:`radiobject_adapter.split_subjects`).
        image_collection / label_collection: store collections.
        images_folder / labels_folder: NIfTI sub-folders.
        class_names: the network's classes; a store label holding a class beyond them is an
            error (:func:`radiobundles.labels.check_label_classes`, from the foreground index).

    Raises:
        ValueError: unknown split, a split that comes out empty, or a label with a class the
            network cannot output (the message says why).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    store, collection = split_collection_address(str(dataset_dir))
    if collection is not None and not os.path.exists(dataset_dir):  # a folder may have '#' in its name
        dataset_dir, image_collection = store, collection
    source = detect_source(dataset_dir, images_folder)
    if source == "nifti":
        items = nifti_items(dataset_dir, images_folder, labels_folder)
    else:
        items = _store_items(dataset_dir, image_collection, label_collection)
    labelled = [it for it in items if "label" in it]
    if split == "all":
        chosen = items
    elif split == "unlabelled":
        chosen = [it for it in items if "label" not in it]
    elif split == "labelled":
        chosen = labelled
    else:
        train, val = split_subjects([it["subject_id"] for it in labelled], val_fraction, seed)
        keep = set(train if split == "train" else val)
        chosen = [it for it in labelled if it["subject_id"] in keep]
    if not chosen:
        where = f"collections {image_collection!r}/{label_collection!r}" if source == "store" else images_folder
        raise ValueError(
            f"split {split!r} of {dataset_dir!r} ({where}) is empty: {len(items)} image(s), {len(labelled)} "
            f"labelled, val_fraction={val_fraction}; add subjects or choose another split"
        )
    if class_names is not None and source == "store":
        from radiobundles.labels import check_label_classes

        check_label_classes(chosen, class_names, dataset_dir)
    return chosen
