"""Sparse TileDB dataframes indexed by ``(obs_subject_id, obs_id)`` (RadiObject's ``obs``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import tiledb

from radiobject_adapter.store.layout import INDEX_COLUMNS, compression_filters

__all__ = ["add_columns", "column_dtype", "create_dataframe", "read_dataframe", "write_rows"]


def column_dtype(values: pd.Series) -> np.dtype | type:
    """TileDB attribute type for a pandas column: numbers stay numbers, the rest is text."""
    if pd.api.types.is_bool_dtype(values):
        return np.dtype(np.uint8)
    if pd.api.types.is_integer_dtype(values):
        return np.dtype(np.int64)
    if pd.api.types.is_float_dtype(values):
        return np.dtype(np.float64)
    return str


def create_dataframe(uri: str, columns: Mapping[str, np.dtype | type], ctx: tiledb.Ctx | None = None) -> None:
    """Create an empty sparse dataframe with the two string index dimensions."""
    for name in columns:
        if name in INDEX_COLUMNS:
            raise ValueError(f"column name {name!r} is reserved for the index")
    dims = [tiledb.Dim(name=n, dtype="ascii", ctx=ctx) for n in INDEX_COLUMNS]
    filters = compression_filters("zstd", 3)
    attrs = [
        tiledb.Attr(name=name, dtype=dtype, var=dtype is str, filters=filters, ctx=ctx)
        for name, dtype in columns.items()
    ]
    schema = tiledb.ArraySchema(
        domain=tiledb.Domain(*dims, ctx=ctx), attrs=attrs, sparse=True, allows_duplicates=False, ctx=ctx
    )
    tiledb.Array.create(uri, schema, ctx=ctx)


def write_rows(uri: str, rows: Sequence[Mapping[str, object]], ctx: tiledb.Ctx | None = None) -> None:
    """Write rows (dicts with both index columns); re-writing a row replaces it."""
    if not rows:
        return
    with tiledb.open(uri, "w", ctx=ctx) as arr:
        schema = arr.schema
        subjects = np.array([str(r[INDEX_COLUMNS[0]]) for r in rows])
        obs_ids = np.array([str(r[INDEX_COLUMNS[1]]) for r in rows])
        data: dict[str, np.ndarray] = {}
        for i in range(schema.nattr):
            attr = schema.attr(i)
            raw = [r.get(attr.name) for r in rows]
            if attr.isvar or attr.dtype.kind in "US":
                data[attr.name] = np.array(["" if v is None or v is pd.NA else str(v) for v in raw], dtype=object)
            else:
                fill = np.nan if attr.dtype.kind == "f" else 0
                data[attr.name] = np.array(
                    [fill if v is None or (isinstance(v, float) and np.isnan(v)) else v for v in raw],
                    dtype=attr.dtype,
                )
        arr[subjects, obs_ids] = data


def read_dataframe(uri: str, ctx: tiledb.Ctx | None = None, cond: str | None = None) -> pd.DataFrame:
    """Read the whole dataframe (optionally filtered by a TileDB query condition)."""
    with tiledb.open(uri, "r", ctx=ctx) as arr:
        names = [arr.schema.attr(i).name for i in range(arr.schema.nattr)]
        result = arr.query(cond=cond)[:] if cond else arr.query()[:]
    data: dict[str, object] = {}
    for col in INDEX_COLUMNS:
        data[col] = [v.decode() if isinstance(v, bytes) else str(v) for v in result[col]]
    for name in names:
        values = result[name]
        if values.dtype == object:
            values = [v.decode() if isinstance(v, bytes) else v for v in values]
        data[name] = values
    return pd.DataFrame(data, columns=[*INDEX_COLUMNS, *names])


def _attr_type(dtype: Any) -> np.dtype | type:
    """A column type for TileDB: numbers as given, text (``str``, ``U64``, object) as text."""
    if dtype in (str, object):
        return str
    dt = np.dtype(dtype)
    return str if dt.kind in "USO" else dt


def add_columns(uri: str, schema: Mapping[str, Any], ctx: tiledb.Ctx | None = None) -> None:
    """Add typed columns to the TileDB dataframe at ``uri`` (a schema evolution: rows already
    there read as empty/zero in them); columns it has already are left as they are."""
    with tiledb.open(uri, "r", ctx=ctx) as arr:
        have = {arr.schema.attr(i).name for i in range(arr.schema.nattr)}
    reserved = [c for c in schema if c in INDEX_COLUMNS]
    if reserved:
        raise ValueError(f"column(s) {reserved} conflict with index column names {list(INDEX_COLUMNS)}")
    new = {c: _attr_type(t) for c, t in schema.items() if c not in have}
    if not new:
        return
    evolution = tiledb.ArraySchemaEvolution(ctx)
    for name, dtype in new.items():
        filters = compression_filters("zstd", 3)
        evolution.add_attribute(tiledb.Attr(name=name, dtype=dtype, var=dtype is str, filters=filters, ctx=ctx))
    evolution.array_evolve(uri)
