"""radiobject's ``radiobject.dataframe``: :class:`Dataframe`, a sparse TileDB table indexed by
``(obs_subject_id, obs_id)`` (the form of every store's ``obs`` and ``obs_meta``), opened by URI.

A face over :mod:`radiobject_adapter.store.dataframe` (which writes and reads those tables for
the store): creating one from a schema or a pandas frame, its columns and types, and
``read(columns, value_filter, include_index)``. The ``obs`` / ``obs_meta`` of an open store are
:class:`~radiobject_adapter.store.table.Table` objects, which answer the same ``read`` call.

Example:
    >>> df = Dataframe.from_pandas("clinical", pd.DataFrame(
    ...     {"obs_subject_id": ["s1", "s2"], "obs_id": ["s1", "s2"], "age": [40, 61]}))
    >>> df.read(columns=["age"], value_filter="age > 50")
      obs_subject_id obs_id  age
    0             s2     s2   61
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import tiledb

from radiobject_adapter.store.dataframe import create_dataframe, read_dataframe, write_rows
from radiobject_adapter.store.layout import INDEX_COLUMNS

__all__ = ["INDEX_COLUMNS", "Dataframe"]


def _attr_type(values: pd.Series) -> np.dtype | type:
    """The column's own numeric dtype (int32 stays int32, as radiobject); anything else is text."""
    if pd.api.types.is_bool_dtype(values):
        return np.dtype(np.uint8)
    if pd.api.types.is_numeric_dtype(values):
        return np.dtype(values.dtype)
    return str


class Dataframe:
    """A TileDB dataframe at ``uri`` (see the module docstring)."""

    def __init__(self, uri: str, ctx: tiledb.Ctx | None = None) -> None:
        self.uri = str(uri)
        self._ctx = ctx

    def _schema(self) -> tiledb.ArraySchema:
        return tiledb.ArraySchema.load(self.uri, ctx=self._ctx)

    @property
    def index_columns(self) -> tuple[str, str]:
        """``("obs_subject_id", "obs_id")``."""
        return INDEX_COLUMNS

    @property
    def columns(self) -> list[str]:
        """The attribute columns, without the index columns."""
        schema = self._schema()
        return [schema.attr(i).name for i in range(schema.nattr)]

    @property
    def all_columns(self) -> list[str]:
        """Index columns first, then :attr:`columns`."""
        return [*INDEX_COLUMNS, *self.columns]

    @property
    def dtypes(self) -> dict[str, np.dtype]:
        """Each attribute column's type (text columns as numpy's ``<U0`` / ``S``)."""
        schema = self._schema()
        return {schema.attr(i).name: schema.attr(i).dtype for i in range(schema.nattr)}

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, attribute columns)``."""
        return len(self), len(self.columns)

    def __len__(self) -> int:
        with tiledb.open(self.uri, "r", ctx=self._ctx) as arr:
            return len(arr.query(attrs=[], dims=[INDEX_COLUMNS[1]])[:][INDEX_COLUMNS[1]])

    def __repr__(self) -> str:
        return f"Dataframe({self.uri!r}, columns={self.columns})"

    def read(
        self,
        columns: Sequence[str] | None = None,
        value_filter: str | None = None,
        include_index: bool = True,
    ) -> pd.DataFrame:
        """Rows matching ``value_filter`` (a TileDB query condition such as ``"age > 40"``),
        ``columns`` (default: all), the index columns first unless ``include_index`` is false."""
        frame = read_dataframe(self.uri, ctx=self._ctx, cond=value_filter)
        wanted = [c for c in (self.columns if columns is None else columns) if c not in INDEX_COLUMNS]
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            raise KeyError(f"no column(s) {missing} in {self.uri!r}; columns: {self.columns}")
        return frame[[*(INDEX_COLUMNS if include_index else ()), *wanted]]

    @classmethod
    def create(cls, uri: str, schema: Mapping[str, Any], ctx: tiledb.Ctx | None = None) -> Dataframe:
        """An empty dataframe at ``uri`` with ``schema`` (``{column: numpy dtype or str}``)."""
        for name in schema:
            if name in INDEX_COLUMNS:
                raise ValueError(f"column {name!r} conflicts with index column {name!r}; rename it")
        types = {n: (str if t in (str, object) else np.dtype(t)) for n, t in schema.items()}
        create_dataframe(str(uri), types, ctx=ctx)
        return cls(uri, ctx)

    @classmethod
    def from_pandas(cls, uri: str, df: pd.DataFrame, ctx: tiledb.Ctx | None = None) -> Dataframe:
        """A dataframe at ``uri`` holding ``df``'s rows; ``df`` must have both index columns."""
        for name in INDEX_COLUMNS:
            if name not in df.columns:
                raise ValueError(f"DataFrame must contain index column {name!r}; it has {list(df.columns)}")
        attrs = [c for c in df.columns if c not in INDEX_COLUMNS]
        out = cls.create(uri, {c: _attr_type(df[c]) for c in attrs}, ctx=ctx)
        write_rows(str(uri), df.to_dict("records"), ctx=ctx)
        return out
