"""One MONAI ``ImageReader`` for both data sources of a bundle: store addresses and NIfTI files.

``LoadImaged(reader="radiobundles.readers.StoreOrNiftiReader")`` reads a volume address
(``<store>::<collection>/<id>``) with :class:`radiobject_adapter.TileDBReader` and anything else
with MONAI's ``NibabelReader``. The choice is made per item, so a config does not need to know
where its datalist came from: the bundle's own ``dataset_dir``, or a datalist that MONAI Label
passes in (``train#dataset#data``), either kind. Addresses pass through MONAI configs unchanged
(old ``#`` addresses arrive as ``::``, the current form; see :mod:`radiobject_adapter.address`).
:func:`subject_id_of` names the subject of what was read, from either source (the bundles' and the
MONAI Label app's writers and metrics share it).

Example:
    >>> from monai.transforms import LoadImaged
    >>> load = LoadImaged(keys="image", reader="radiobundles.readers.StoreOrNiftiReader", expanduser=False)
    >>> load({"image": "/data/ct_store::CT/case_000"})["image"].shape
    >>> load({"image": "/data/imagesTr/case_000_0000.nii.gz"})["image"].shape
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from monai.data import ImageReader, NibabelReader
from monai.utils import ensure_tuple

from radiobject_adapter import TileDBReader, Volume
from radiobject_adapter.address import is_volume_address, parse_address
from radiobject_adapter.store.naming import subject_id_from_path

__all__ = ["StoreOrNiftiReader", "subject_id_of"]


class StoreOrNiftiReader(ImageReader):
    """``TileDBReader`` for volume addresses, ``NibabelReader`` for files.

    Args:
        channel_dim: as in both readers (``None``: no channel axis in the data).
        kwargs: passed to both readers (e.g. ``dtype``; ``NibabelReader`` forwards its extra
            arguments to ``nibabel.load``).
    """

    def __init__(self, channel_dim: int | None = None, **kwargs: Any) -> None:
        super().__init__()
        self.store_reader = TileDBReader(channel_dim=channel_dim, **kwargs)
        self.file_reader = NibabelReader(channel_dim=channel_dim, **kwargs)

    def _reader_for(self, names: list[str]) -> ImageReader:
        return self.store_reader if self.store_reader.verify_suffix(names) else self.file_reader

    def verify_suffix(self, filename: Sequence[str] | str) -> bool:
        """True for volume addresses and for files ``NibabelReader`` reads (``.nii``, ``.nii.gz``)."""
        names = [str(f) for f in ensure_tuple(filename)]
        return self._reader_for(names).verify_suffix(names)

    def read(self, data: Sequence[str] | str, **kwargs: Any) -> Any:
        names = [str(d) for d in ensure_tuple(data)]
        kinds = {self.store_reader.verify_suffix(n) for n in names}
        if len(kinds) > 1:
            raise ValueError(f"cannot stack volume addresses and files as channels of one image: {names}")
        return self._reader_for(names).read(names if len(names) > 1 else names[0], **kwargs)

    def get_data(self, img: Any) -> tuple[np.ndarray, dict]:
        first = img[0] if isinstance(img, (list, tuple)) else img
        reader = self.store_reader if isinstance(first, Volume) else self.file_reader
        return reader.get_data(img)


def subject_id_of(meta: Mapping[str, Any] | None, fallback: str = "") -> str:
    """Subject id from MONAI meta: ``subject_id`` (store reads), else from ``filename_or_obj``.

    Example:
        >>> subject_id_of({"filename_or_obj": "/data/imagesTr/case_004_0000.nii.gz"})
        'case_004'
    """
    if not meta:
        return fallback
    if meta.get("subject_id"):
        return str(meta["subject_id"])
    name = meta.get("filename_or_obj")
    if not name:
        return fallback
    name = str(name[0] if isinstance(name, (list, tuple)) else name)
    return parse_address(name).key if is_volume_address(name) else subject_id_from_path(name)
