"""``Table``: a pandas DataFrame that also answers radiobject's ``Dataframe`` calls.

radiobject returns its ``obs`` / ``obs_meta`` tables as ``Dataframe`` objects read with
``.read(columns=..., value_filter=...)``; ours are pandas frames already read. ``Table`` is
both: every pandas operation works as before (and returns a plain ``pd.DataFrame``), and
radiobject's calls (``read``, ``columns`` without the index, ``index_columns``) work too.

Example:
    >>> radi.obs_meta.read(columns=["age"], value_filter="age > 40")   # radiobject's way
    >>> radi.obs_meta[radi.obs_meta.age > 40]                          # pandas' way
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from radiobject_adapter.store.layout import INDEX_COLUMNS

__all__ = ["Table"]


class Table(pd.DataFrame):
    """A ``pd.DataFrame`` with radiobject's ``Dataframe.read`` (see the module docstring)."""

    @property
    def _constructor(self) -> type[pd.DataFrame]:
        # slices, copies and results of pandas operations are plain DataFrames
        return pd.DataFrame

    @property
    def index_columns(self) -> tuple[str, str]:
        """The two index columns, ``("obs_subject_id", "obs_id")`` (radiobject's name)."""
        return INDEX_COLUMNS

    @property
    def all_columns(self) -> list[str]:
        """Every column name (radiobject's name; the index columns come first)."""
        return [str(c) for c in pd.DataFrame.columns.fget(self)]  # type: ignore[attr-defined]

    def read(
        self,
        columns: Sequence[str] | None = None,
        value_filter: str | None = None,
        include_index: bool = True,
    ) -> pd.DataFrame:
        """radiobject's ``Dataframe.read``: a plain DataFrame of ``columns`` (default: all),
        rows matching ``value_filter`` (a condition such as ``"age > 40 and sex == 'F'"``),
        with the index columns first unless ``include_index`` is false.

        Example:
            >>> radi.obs_meta.read(columns=["age"], value_filter="age > 40")
        """
        frame = pd.DataFrame(self)
        if value_filter is not None:
            try:
                frame = frame.query(value_filter)
            except Exception as err:
                raise ValueError(f"bad value_filter {value_filter!r}: {err}; columns: {list(frame.columns)}") from err
        all_cols = list(frame.columns)
        wanted = [c for c in (columns if columns is not None else all_cols) if c not in INDEX_COLUMNS]
        missing = [c for c in wanted if c not in all_cols]
        if missing:
            raise KeyError(f"no column(s) {missing}; columns: {all_cols}")
        index = [c for c in INDEX_COLUMNS if c in all_cols] if include_index else []
        return frame[index + wanted].reset_index(drop=True)
