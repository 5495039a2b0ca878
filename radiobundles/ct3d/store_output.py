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
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

from radiobject_adapter import RadiObject
from radiobject_adapter.address import is_volume_address, parse_address
from radiobject_adapter.store.labels import LabelError, find_label, write_label
from radiobundles.ct3d.visualize import label_map
from radiobundles.readers import subject_id_of

__all__ = ["PREDICTION_SOURCE", "SaveToStored", "subject_name_formatter", "write_label_volume"]

# array metadata key: the source of the prediction a fragment holds (written with its voxels)
PREDICTION_SOURCE = "prediction_source"


def subject_name_formatter(metadict: Mapping[str, Any] | None, saver: Transform) -> dict[str, Any]:
    """``output_name_formatter`` for ``SaveImage(d)``: the subject id instead of the source file name."""
    subject = subject_id_of(metadict, fallback=str(getattr(saver, "_data_index", 0)))
    return {"subject": subject, "idx": (metadict or {}).get("patch_index")}


def write_label_volume(
    store: str, collection: str, subject_id: str, data: np.ndarray, affine: np.ndarray, source: str = ""
) -> str:
    """Write a label map of one subject into ``collection`` of ``store``; returns the array URI.

    A subject already in the collection (same shape) gets a new version (fragment); its
    earlier content stays readable with ``Volume(uri, timestamp=...)``. The obs row and
    ``source_path`` keep describing the volume (its first write); each prediction's source goes
    with its own fragment (``prediction_source``). Written by the data layer's label writer
    (:func:`radiobject_adapter.store.labels.write_label`), like MONAI Label's saves.

    Raises:
        ValueError: the subject's existing volume has another shape.
    """
    data = np.ascontiguousarray(data, dtype=np.uint8)
    try:
        return write_label(
            store,
            collection,
            subject_id,
            data,
            affine,
            uri=find_label(RadiObject(store), collection, subject_id),
            version_meta={PREDICTION_SOURCE: source},
            source_path=source,
        ).uri
    except LabelError as err:
        raise LabelError(f"{err} (--pred_collection)") from None


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
