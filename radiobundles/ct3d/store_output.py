"""Writing predictions: into a store collection, and NIfTI file names by subject id.

* :class:`SaveToStored` (post-processing transform) writes each predicted label map into a
  collection of a store (by default the store the image came from), on the image's grid and
  affine, with the foreground index that label-driven sampling uses, so a prediction can serve
  as a training label (e.g. after correction in MONAI Label). Writing a subject again stores a
  new TileDB fragment: the earlier prediction stays readable by time travel.
* :func:`subject_name_formatter` names ``SaveImaged`` outputs after the subject
  (``case_001_seg.nii.gz`` for ``imagesTr/case_001_0000.nii.gz`` or ``store::CT/case_001``).

Example:
    >>> SaveToStored(keys="pred", collection="pred")({"pred": pred})   # pred: MetaTensor [1, X, Y, Z]
    >>> SaveImaged(keys="pred", output_name_formatter=subject_name_formatter, ...)
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import tiledb
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

from radiobject_adapter import RadiObject
from radiobject_adapter.address import is_volume_address, parse_address
from radiobject_adapter.config import ctx_for_threads, forget_array
from radiobject_adapter.store.foreground import ForegroundIndex
from radiobject_adapter.store.layout import affine_to_json, make_obs_id, obs_row
from radiobject_adapter.store.writer import StoreWriter
from radiobundles.ct3d.metrics import subject_id_of
from radiobundles.ct3d.visualize import label_map

__all__ = ["PREDICTION_SOURCE", "SaveToStored", "subject_name_formatter", "write_label_volume"]

# array metadata key: the source of the prediction a fragment holds (written with its voxels)
PREDICTION_SOURCE = "prediction_source"


def subject_name_formatter(metadict: Mapping[str, Any] | None, saver: Transform) -> dict[str, Any]:
    """``output_name_formatter`` for ``SaveImage(d)``: the subject id instead of the source file name."""
    subject = subject_id_of(metadict, fallback=str(getattr(saver, "_data_index", 0)))
    return {"subject": subject, "idx": (metadict or {}).get("patch_index")}


def _existing(store: str, collection: str, subject_id: str) -> str | None:
    radi = RadiObject(store)
    if collection not in radi.collection_names:
        return None
    coll = radi.collection(collection)
    volume = coll.get(subject_id)
    if volume is None and make_obs_id(subject_id, collection) in coll.pending:
        # an earlier write killed between registering the volume and its obs row: finish it
        # (row from the volume's metadata) and write the new prediction as its next fragment
        writer = StoreWriter(store)
        try:
            writer.existing_obs_ids(collection)
            writer.update_counters([collection])
        finally:
            writer.close()
        volume = coll.refresh().get(subject_id)
    return volume.uri if volume is not None else None


def _overwrite(uri: str, data: np.ndarray, meta: Mapping[str, Any]) -> None:
    """A new fragment of ``data`` with ``meta``, in two writes no kill can tear: first the old
    foreground index is removed (it must never describe the new voxels), then the voxels and
    the new metadata, one millisecond later (the earlier prediction stays readable by time
    travel, with its own index)."""
    import time

    from radiobject_adapter.store.foreground import FOREGROUND_KEYS

    newest = max((int(f.timestamp_range[1]) for f in tiledb.array_fragments(uri, ctx=ctx_for_threads())), default=0)
    before = max(time.time_ns() // 1_000_000, newest + 1)
    while time.time_ns() // 1_000_000 <= before:  # a stamp in the future would hide the fragment
        time.sleep(0.001)
    with tiledb.open(uri, "w", timestamp=before, ctx=ctx_for_threads()) as arr:
        for key in FOREGROUND_KEYS:
            del arr.meta[key]  # a missing key is no error
    with tiledb.open(uri, "w", timestamp=before + 1, ctx=ctx_for_threads()) as arr:
        arr[tuple(slice(0, n) for n in data.shape)] = data
        for key, value in meta.items():
            arr.meta[key] = value
    forget_array(uri)


def write_label_volume(
    store: str, collection: str, subject_id: str, data: np.ndarray, affine: np.ndarray, source: str = ""
) -> str:
    """Write a label map of one subject into ``collection`` of ``store``; returns the array URI.

    A subject already in the collection (same shape) is overwritten as a new fragment; its
    earlier content stays readable with ``Volume(uri, timestamp=...)``.

    Raises:
        ValueError: the subject's existing volume has another shape.
    """
    data = np.ascontiguousarray(data, dtype=np.uint8)
    affine = np.asarray(affine, dtype=np.float64)
    index_meta = ForegroundIndex.compute(data).to_metadata()
    existing = _existing(store, collection, subject_id)
    if existing is not None:
        with tiledb.open(existing, "r", ctx=ctx_for_threads()) as arr:
            shape = arr.schema.shape
        if tuple(shape) != data.shape:
            raise ValueError(
                f"{collection!r} of {store!r} already holds a volume of shape {tuple(shape)} for {subject_id!r}, "
                f"the prediction has {data.shape}; write into another collection (--pred_collection)"
            )
        # the obs row and `source_path` keep describing the volume (its first write); this
        # prediction's source goes with its fragment, readable by time travel: one commit, so
        # no kill can leave a row that disagrees with its volume
        _overwrite(
            existing, data, {"orientation_affine": affine_to_json(affine), PREDICTION_SOURCE: source, **index_meta}
        )
        return existing
    writer = StoreWriter(store)
    try:
        uri = writer.write_volume(
            collection,
            subject_id,
            make_obs_id(subject_id, collection),
            data,
            affine,
            meta={"source_path": source, PREDICTION_SOURCE: source},
            obs_row=obs_row(collection, data.shape, affine, source),
            raw_meta=index_meta,
            counters=True,
        )
    finally:
        writer.close()
    return uri


class SaveToStored(MapTransform):
    """Post-processing transform: write predicted label maps into a store collection.

    Args:
        keys: keys of the predictions (``[C, X, Y, Z]`` one-hot/probabilities or ``[1, X, Y, Z]`` label maps).
        collection: target collection (created if missing).
        store: target store; ``None``: the store of the image (its ``filename_or_obj`` is a
            volume address). Required for images read from files.
    """

    def __init__(
        self,
        keys: KeysCollection = "pred",
        collection: str = "pred",
        store: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if not collection:
            raise ValueError("give the collection to write predictions into, e.g. collection='pred'")
        self.collection = collection
        self.store = store

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            pred = d[key]
            meta = getattr(pred, "meta", None) or {}
            source = str(meta.get("filename_or_obj", ""))
            store = self.store or (parse_address(source).store if is_volume_address(source) else None)
            if store is None:
                raise ValueError(
                    f"{source!r} was not read from a store; give the store to write predictions into (--pred_store)"
                )
            affine = np.asarray(meta["affine"], dtype=np.float64)
            write_label_volume(store, self.collection, subject_id_of(meta), label_map(pred), affine, source)
        return d
