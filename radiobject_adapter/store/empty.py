"""Empty stores and collections (radiobject's ``RadiObject._create`` / ``VolumeCollection._create``):
the groups, the ``obs`` / ``obs_meta`` tables with extra typed columns, and for a collection
its declared shape, ready for volumes written later by the store writer.

Example:
    >>> create_empty_store("store", obs_meta_schema={"age": np.int32})
    >>> create_empty_collection("ct", shape=(512, 512, 300), obs_schema={"kvp": np.float32})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import tiledb

from radiobject_adapter.config import open_group
from radiobject_adapter.store.dataframe import _attr_type, add_columns
from radiobject_adapter.store.layout import INDEX_COLUMNS, join_uri

__all__ = ["create_empty_collection", "create_empty_store"]


def create_empty_store(
    uri: str, obs_meta_schema: Mapping[str, Any] | None = None, ctx: tiledb.Ctx | None = None
) -> None:
    """A store at ``uri`` with no collections and a subject table with ``obs_meta_schema``'s
    columns (``{name: dtype}``)."""
    from radiobject_adapter.store.writer import StoreWriter

    writer = StoreWriter(uri, ctx=ctx)
    try:
        if obs_meta_schema:
            for c in obs_meta_schema:
                if c in INDEX_COLUMNS:
                    raise ValueError(f"column {c!r} conflicts with index column {c!r}; rename it")
            writer.write_subject_rows([], {c: _attr_type(t) for c, t in obs_meta_schema.items()})
    finally:
        writer.close()


def create_empty_collection(
    uri: str,
    shape: Sequence[int],
    obs_schema: Mapping[str, Any] | None = None,
    name: str | None = None,
    ctx: tiledb.Ctx | None = None,
) -> None:
    """A stand-alone collection at ``uri`` with no volumes, declared ``shape`` (X, Y, Z) and
    ``obs_schema``'s columns in its ``obs`` besides the usual ones."""
    from radiobject_adapter.store.build import CollectionWriter

    if len(shape) != 3 or any(int(n) < 1 for n in shape):
        raise ValueError(f"shape must be three positive sizes (X, Y, Z), got {tuple(shape)}")
    uri = str(uri).rstrip("/")
    writer = CollectionWriter(uri, ctx=ctx)
    try:
        writer.ensure_collection(name or uri.rsplit("/", 1)[-1])
        if obs_schema:
            add_columns(join_uri(uri, "obs"), obs_schema, ctx=writer.ctx)
        with open_group(uri, "w", ctx=writer.ctx) as grp:
            grp.meta["x_dim"], grp.meta["y_dim"], grp.meta["z_dim"] = (int(n) for n in shape)
    finally:
        writer.close()
