"""Subject selection on a store, with radiobject's names: ``iloc``, ``loc``, ``head``,
``tail``, ``select_collections``, ``obs_subject_ids``.

A selection is a :class:`~radiobject_adapter.store.radiobject.RadiObject` restricted to some
subjects (and collections): it reads the same store, nothing is copied.

Example:
    >>> radi.iloc[0:2].obs_subject_ids       # the first two subjects
    >>> radi.loc["sub-01"].CT.iloc[0]        # one subject's CT volume
    >>> radi.select_collections(["CT"]).collection_names
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = ["CollectionSelection", "SubjectSelection", "sample_keys"]


def sample_keys(keys: Sequence[str], n: int, seed: int | None) -> list[str]:
    """``n`` of ``keys`` drawn without replacement (all if fewer), in their original order;
    the same ``seed`` draws the same keys."""
    if n < 0:
        raise ValueError(f"sample size must be >= 0, got {n}")
    picked = np.random.default_rng(seed).choice(len(keys), size=min(n, len(keys)), replace=False)
    return [keys[i] for i in sorted(picked)]


def _position(key: object, n: int) -> int:
    if isinstance(key, bool) or not isinstance(key, (int, np.integer)):
        raise TypeError(f"subject positions are ints, not {type(key).__name__} ({key!r})")
    i = int(key) + n if key < 0 else int(key)
    if not 0 <= i < n:
        raise IndexError(f"subject position {key} out of range for {n} subjects")
    return i


class _SubjectLocator:
    """``radi.iloc[...]`` (positions in :attr:`obs_subject_ids`) / ``radi.loc[...]`` (ids)."""

    def __init__(self, radi: SubjectSelection, by_position: bool) -> None:
        self._radi = radi
        self._by_position = by_position

    def __getitem__(self, key: Any) -> Any:
        ids = self._radi.obs_subject_ids
        if self._by_position:
            if isinstance(key, slice):
                chosen = ids[key]
            elif isinstance(key, np.ndarray) and key.dtype == np.bool_:
                if len(key) != len(ids):
                    raise ValueError(f"boolean mask of length {len(key)} for {len(ids)} subjects")
                chosen = [s for s, keep in zip(ids, key) if keep]
            elif isinstance(key, (list, tuple, np.ndarray)):
                chosen = [ids[_position(k, len(ids))] for k in key]
            else:
                chosen = [ids[_position(key, len(ids))]]
        else:
            keys = [key] if isinstance(key, str) else list(key) if isinstance(key, (list, tuple)) else None
            if keys is None:
                raise TypeError(f"loc takes a subject id (str) or a list of them, not {type(key).__name__}")
            unknown = [k for k in keys if k not in set(ids)]
            if unknown:
                raise KeyError(f"no subject(s) {unknown[:5]} in {self._radi.uri!r}; e.g. {ids[:3]}")
            chosen = keys
        return self._radi._with(subjects=chosen)


class SubjectSelection:
    """Mixin of :class:`RadiObject`: radiobject's subject selection API (module docstring)."""

    uri: str
    _ctx: Any
    _subjects: frozenset[str] | None
    _collection_filter: tuple[str, ...] | None

    def _with(self, subjects: Iterable[str] | None = None, collections: Sequence[str] | None = None) -> Any:
        """A RadiObject over the same store restricted to ``subjects`` / ``collections``
        (intersected with the current restriction)."""
        subs = self._subjects if subjects is None else frozenset(subjects)
        if subjects is not None and self._subjects is not None:
            subs = frozenset(subjects) & self._subjects
        cols = self._collection_filter if collections is None else tuple(collections)
        view = type(self)(self.uri, self._ctx, subjects=subs, collections=cols)
        return view

    @property
    def iloc(self) -> _SubjectLocator:
        """Subjects by position in :attr:`obs_subject_ids`: an int, slice, list or boolean mask."""
        return _SubjectLocator(self, by_position=True)

    @property
    def loc(self) -> _SubjectLocator:
        """Subjects by id: one id or a list of ids."""
        return _SubjectLocator(self, by_position=False)

    @property
    def is_view(self) -> bool:
        """Whether this store is restricted to some subjects or collections."""
        return self._subjects is not None or self._collection_filter is not None

    @property
    def obs_subject_ids(self) -> list[str]:
        """Subject ids of the subject table (sorted), as radiobject lists them."""
        return [str(s) for s in self.obs_meta["obs_subject_id"]]  # type: ignore[attr-defined]

    @property
    def n_collections(self) -> int:
        return len(self.collection_names)  # type: ignore[attr-defined]

    def head(self, n: int = 5) -> Any:
        """The first ``n`` subjects."""
        return self.iloc[:n]

    def tail(self, n: int = 5) -> Any:
        """The last ``n`` subjects."""
        return self.iloc[len(self.obs_subject_ids) - n :] if n else self.iloc[[]]

    @classmethod
    def _create(cls, uri: str, obs_meta_schema: Any = None, ctx: Any = None) -> Any:
        """An empty store at ``uri`` (radiobject's call; see :mod:`radiobject_adapter.store.empty`)."""
        from radiobject_adapter.store.empty import create_empty_store

        create_empty_store(uri, obs_meta_schema, ctx=ctx)
        return cls(uri, ctx)  # type: ignore[call-arg]

    def sample(self, n: int = 5, seed: int | None = None) -> Any:
        """``n`` subjects drawn at random (reproducible with ``seed``)."""
        return self._with(subjects=sample_keys(self.obs_subject_ids, n, seed))

    @property
    def index(self) -> Any:
        """:class:`~radiobject_adapter.indexing.Index` of :attr:`obs_subject_ids` (radiobject's)."""
        from radiobject_adapter.indexing import Index

        return Index.build(self.obs_subject_ids)

    def lazy(self) -> Any:
        """A :class:`~radiobject_adapter.query.Query` over these subjects (radiobject's call)."""
        from radiobject_adapter.query import Query

        return Query(self)

    def materialize(self, uri: str, streaming: bool = True, ctx: Any = None) -> Any:
        """A new store at ``uri`` holding a copy of this selection (radiobject's call; see
        :meth:`radiobject_adapter.query.Query.materialize`)."""
        return self.lazy().materialize(uri, streaming=streaming, ctx=ctx)

    def validate(self) -> None:
        """Check the store's invariants (:meth:`check`); ``ValueError`` listing what is wrong."""
        report = self.check()  # type: ignore[attr-defined]
        if not report.clean:
            raise ValueError(f"store {self.uri!r} is not valid:\n{report.summary()}")

    def select_collections(self, names: Sequence[str]) -> Any:
        """The same subjects with only the collections ``names``."""
        names = [names] if isinstance(names, str) else list(names)
        known = set(self.collection_names)  # type: ignore[attr-defined]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise KeyError(f"no collection(s) {unknown} in {self.uri!r}; collections: {sorted(known)}")
        return self._with(collections=names)

    @property
    def all_obs_ids(self) -> list[str]:
        """Every volume's obs_id, over all collections."""
        return [o for name in self.collection_names for o in self.collection(name).obs_ids]  # type: ignore[attr-defined]

    def get_volume(self, obs_id: str) -> Any:
        """The volume with this obs_id, whichever collection holds it."""
        for name in self.collection_names:  # type: ignore[attr-defined]
            col = self.collection(name)  # type: ignore[attr-defined]
            if obs_id in col.obs_ids:
                return col.loc[obs_id]
        raise KeyError(f"obs_id {obs_id!r} not found in any collection of {self.uri!r}")

    def get_obs_row_by_obs_subject_id(self, obs_subject_id: str) -> Any:
        """The subject-table row of one subject (radiobject's call)."""
        import pandas as pd

        meta = pd.DataFrame(self.obs_meta)  # type: ignore[attr-defined]
        return meta[meta["obs_subject_id"] == obs_subject_id].reset_index(drop=True)


class CollectionSelection:
    """Mixin of :class:`VolumeCollection`: radiobject's ``sample``, ``index`` and ``lazy``."""

    obs_ids: list[str]

    @classmethod
    def _create(
        cls, uri: str, shape: Sequence[int], obs_schema: Any = None, name: str | None = None, ctx: Any = None
    ) -> Any:
        """An empty collection at ``uri`` with a declared ``shape`` (radiobject's call)."""
        from radiobject_adapter.store.empty import create_empty_collection

        create_empty_collection(uri, shape, obs_schema, name=name, ctx=ctx)
        return cls(uri, ctx, name=name)  # type: ignore[call-arg]

    def sample(self, n: int = 5, seed: int | None = None) -> Any:
        """``n`` volumes drawn at random (reproducible with ``seed``), as a restricted collection."""
        return self._view(sample_keys(self.obs_ids, n, seed))  # type: ignore[attr-defined]

    @property
    def index(self) -> Any:
        """:class:`~radiobject_adapter.indexing.Index` of :attr:`obs_ids` (radiobject's)."""
        from radiobject_adapter.indexing import Index

        return Index.build(self.obs_ids)

    def lazy(self) -> Any:
        """A :class:`~radiobject_adapter.query.CollectionQuery` over these volumes."""
        from radiobject_adapter.query import CollectionQuery

        return CollectionQuery(self)

    def map(self, fn: Any) -> Any:
        """A :class:`~radiobject_adapter.query.CollectionQuery` applying ``fn`` to each
        volume's voxels when materialised (radiobject's ``collection.map(fn).materialize(uri)``)."""
        return self.lazy().map(fn)

    def materialize(self, uri: str, name: str | None = None, ctx: Any = None) -> Any:
        """A new collection at ``uri`` holding a copy of these volumes."""
        return self.lazy().materialize(uri, name=name, ctx=ctx)
