"""Volume addresses that passed through a MONAI bundle config.

MONAI 1.6's ``ConfigParser`` rewrites every ``#`` in every string value to ``::`` (``#`` is its
old id separator). A datalist given as a config override, as MONAI Label's ``BundleTrainTask``
gives ``train#dataset#data``, therefore turns ``/data/store#CT/case_001`` into
``/data/store::CT/case_001``. :func:`restore_address` undoes that for strings that name a volume
of an existing store, and leaves everything else alone.

Example:
    >>> restore_address("/data/ct_store::CT/case_001")
    '/data/ct_store#CT/case_001'
    >>> restore_address("/data/imagesTr/case_001_0000.nii.gz")
    '/data/imagesTr/case_001_0000.nii.gz'
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import tiledb

from radiobject_adapter.address import SEPARATOR, is_volume_address
from radiobject_adapter.config import ctx_for_threads

__all__ = ["CONFIG_SEPARATOR", "restore_address", "restore_addresses"]

CONFIG_SEPARATOR = "::"


@lru_cache(maxsize=256)
def _is_store(uri: str) -> bool:
    try:
        return tiledb.object_type(uri, ctx=ctx_for_threads()) == "group"
    except tiledb.TileDBError:
        return False


def restore_address(text: Any) -> Any:
    """``<store>::<collection>/<id>`` back to ``<store>#<collection>/<id>`` when ``<store>`` is a store."""
    if not isinstance(text, str) or CONFIG_SEPARATOR not in text or is_volume_address(text):
        return text
    store, rest = text.rsplit(CONFIG_SEPARATOR, 1)
    candidate = f"{store}{SEPARATOR}{rest}"
    return candidate if is_volume_address(candidate) and _is_store(store) else text


def restore_addresses(item: Mapping[str, Any]) -> dict[str, Any]:
    """A datalist entry with :func:`restore_address` applied to its values (and lists of them)."""
    return {
        key: [restore_address(v) for v in value] if isinstance(value, (list, tuple)) else restore_address(value)
        for key, value in item.items()
    }
