"""Adding columns to a store's subject table (``obs_meta``), e.g. a model's predictions.

The table is a sparse TileDB dataframe whose schema is fixed at ingest; new columns are
added by TileDB schema evolution, then every row is written again in one fragment with
its old values unchanged and the new values filled in. So the result is all-or-nothing
for the values (one write), and no existing column, row or value changes; earlier
versions stay readable by TileDB time travel.

Example:
    >>> probs = pd.DataFrame({"prob_lesion": [0.91, 0.12]}, index=["case_000", "case_001"])
    >>> write_subject_columns("store", probs)
    ['prob_lesion']
    >>> RadiObject("store").obs_meta[["obs_subject_id", "diagnosis", "prob_lesion"]]
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import tiledb

from radiobject_adapter.config import ctx_for_threads
from radiobject_adapter.store.dataframe import column_dtype, read_dataframe, write_rows
from radiobject_adapter.store.layout import INDEX_COLUMNS, compression_filters, join_uri
from radiobject_adapter.store.lease import WriterLease

__all__ = ["write_subject_columns"]


def _as_indexed(values: pd.DataFrame) -> pd.DataFrame:
    if "obs_subject_id" in values.columns:
        values = values.set_index("obs_subject_id")
    values = values.drop(columns=[c for c in INDEX_COLUMNS if c in values.columns])
    values.index = values.index.astype(str)
    if values.index.has_duplicates:
        dup = sorted(values.index[values.index.duplicated()].unique())
        raise ValueError(f"subject ids given more than once: {dup[:10]}; give one row per subject")
    if values.columns.has_duplicates:
        raise ValueError(f"column names given more than once: {list(values.columns)}")
    return values


def _kind(dtype: np.dtype | type) -> str:
    if dtype is str:
        return "text"
    return "text" if np.dtype(dtype).kind in "USO" else "number"


def write_subject_columns(uri: str, values: pd.DataFrame) -> list[str]:
    """Set columns of the subject table for some subjects; other subjects and columns keep theirs.

    Args:
        uri: the store (local path or ``s3://``).
        values: one row per subject, indexed by subject id (or with an ``obs_subject_id``
            column); each other column is a subject-table column. Missing columns are added
            (numbers as float64/int64, anything else as text); existing columns are
            overwritten for the given subjects only. Subjects of the table not in ``values``
            get an empty value (NaN, 0 or ``""``) in a new column.

    Returns:
        The names of the columns that were added.

    Raises:
        ValueError: unknown subject ids, a reserved column name, a text value for a number
            column, or no subject table in the store (ingest one with ``obs_meta=``).

    Example:
        >>> write_subject_columns("store", pd.DataFrame({"obs_subject_id": ["a"], "pred": ["lesion"]}))
    """
    from radiobject_adapter.store.radiobject import RadiObject

    values = _as_indexed(values)
    radi = RadiObject(uri)
    table_uri = join_uri(radi.uri, "obs_meta")
    ctx = ctx_for_threads()
    if tiledb.object_type(table_uri, ctx=ctx) != "array":
        raise ValueError(
            f"store {radi.uri!r} has no subject table; ingest with obs_meta=<csv> (or `radiobundles ingest "
            "--obs-meta`) first, so that the new columns have rows to go to"
        )
    table = read_dataframe(table_uri, ctx=ctx)
    known = set(table["obs_subject_id"])
    unknown = sorted(set(values.index) - known)
    if unknown:
        raise ValueError(
            f"{len(unknown)} subject(s) are not in the subject table of {radi.uri!r}: {unknown[:5]}; "
            "predictions must come from this store's subjects"
        )
    with tiledb.open(table_uri, "r", ctx=ctx) as arr:
        have = {arr.schema.attr(i).name: arr.schema.attr(i).dtype for i in range(arr.schema.nattr)}
    added = [c for c in values.columns if c not in have]
    for col in values.columns:
        if col in have and _kind(have[col]) == "number" and _kind(column_dtype(values[col])) == "text":
            raise ValueError(f"column {col!r} of the subject table holds numbers; cannot write text into it")

    lease = WriterLease(radi.uri, tiledb.VFS(ctx=ctx))
    lease.refresh()
    try:
        if added:
            evolution = tiledb.ArraySchemaEvolution(ctx)
            for col in added:
                dtype = column_dtype(values[col])
                evolution.add_attribute(
                    tiledb.Attr(
                        name=col, dtype=dtype, var=dtype is str, filters=compression_filters("zstd", 3), ctx=ctx
                    )
                )
            evolution.array_evolve(table_uri)
        rows = []
        for row in table.to_dict("records"):
            sid = row["obs_subject_id"]
            if sid in values.index:
                row.update(values.loc[sid].to_dict())
            rows.append(row)
        write_rows(table_uri, rows, ctx=ctx)
    finally:
        lease.release()
    return added
