"""``TileDBReader``: a MONAI ``ImageReader`` over store volumes.

Use it from any bundle or script exactly like MONAI's own readers::

    LoadImaged(keys=["image", "label"], reader="radiobject_adapter.TileDBReader",
               expanduser=False, image_only=True)

with datalist entries holding volume addresses (``"/data/store::CT/case_001"``, see
:mod:`radiobject_adapter.address`). The data and the ``affine``, ``original_affine`` and
``spatial_shape`` meta equal what ``NibabelReader`` returns for the source NIfTI file.
``expanduser=False`` keeps ``s3://`` URIs intact (MONAI would rewrite ``//``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from monai.data import ImageReader
from monai.data.image_reader import _copy_compatible_dict, _stack_images
from monai.utils import MetaKeys, SpaceKeys, ensure_tuple

from radiobject_adapter.address import is_volume_address
from radiobject_adapter.store.resolve import resolve_volume
from radiobject_adapter.volume import Volume

__all__ = ["TileDBReader"]


class TileDBReader(ImageReader):
    """Reads volumes from a TileDB store for MONAI's ``LoadImage(d)``.

    Args:
        channel_dim: as in ``NibabelReader``; ``None`` means the volume has no channel axis.
        dtype: cast the data to this dtype (``None`` keeps the stored dtype).

    Example:
        >>> from monai.transforms import LoadImage
        >>> img = LoadImage(reader=TileDBReader(), expanduser=False, dtype=None)("store::CT/case_001")
        >>> img.affine, img.shape
    """

    def __init__(self, channel_dim: int | None = None, dtype: Any = None, **kwargs: Any) -> None:
        super().__init__()
        self.channel_dim = channel_dim
        self.dtype = dtype
        self.kwargs = kwargs

    def verify_suffix(self, filename: Sequence[str] | str) -> bool:
        """True for volume addresses (``<store>::<collection>/<id>``; the old ``#`` form too)."""
        return all(is_volume_address(str(f)) for f in ensure_tuple(filename))

    def read(self, data: Sequence[str] | str, **kwargs: Any) -> Volume | list[Volume]:
        volumes = [resolve_volume(str(name)) for name in ensure_tuple(data)]
        return volumes if len(volumes) > 1 else volumes[0]

    def get_data(self, img: Volume | Sequence[Volume]) -> tuple[np.ndarray, dict]:
        arrays: list[np.ndarray] = []
        compatible_meta: dict = {}
        for vol in ensure_tuple(img):
            data = vol.to_numpy()
            if self.dtype is not None:
                data = data.astype(self.dtype, copy=False)
            affine = np.array(vol.affine, dtype=np.float64, copy=True)
            meta: dict[str, Any] = {
                MetaKeys.AFFINE: affine,
                MetaKeys.ORIGINAL_AFFINE: affine.copy(),
                MetaKeys.SPATIAL_SHAPE: np.asarray(vol.shape[:3], dtype=np.int16),  # NIfTI's dim dtype
                MetaKeys.SPACE: SpaceKeys.RAS,
                MetaKeys.ORIGINAL_CHANNEL_DIM: (
                    (float("nan") if data.ndim == 3 else -1) if self.channel_dim is None else self.channel_dim
                ),
                "pixdim": np.array([1.0, *vol.spacing, *([1.0] * 4)][:8]),
                "obs_id": vol.obs_id,
                "subject_id": vol.subject_id,
                "source_path": vol.source_path or "",
            }
            arrays.append(data)
            _copy_compatible_dict(meta, compatible_meta)
        return _stack_images(arrays, compatible_meta), compatible_meta
