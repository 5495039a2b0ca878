"""radiobject's ``radiobject.query``: chained filters over a store (:class:`Query`, from
``radi.lazy()``) or one collection (:class:`CollectionQuery`, from ``collection.lazy()``), a
voxel transform (``map``), and what they produce: counts, tables, volumes, stacked batches,
or a new store / collection (``materialize``).

Each filter narrows a selection of the store (:mod:`radiobject_adapter.store.selection`), so
it reads at most the subject or ``obs`` table; voxels are read only by ``iter_volumes``,
``iter_batches``, ``to_numpy_stack`` and ``materialize``, which writes through the store
writer (lease, kill-safe order) like every other builder.

Example:
    >>> q = RadiObject("store").lazy().filter("age > 40").select_collections(["CT"]).head(8)
    >>> q.count()                         # QueryCount(n_subjects=8, n_volumes={'CT': 8})
    >>> for batch in q.iter_batches(batch_size=4):
    ...     batch.volumes["CT"].shape     # (4, X, Y, Z)
    >>> q.map(lambda v: v / 1000).materialize("ct_scaled")
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["CollectionQuery", "Query", "QueryCount", "TransformFn", "VolumeBatch"]

TransformFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class VolumeBatch:
    """Voxels of several subjects: ``volumes[collection]`` is ``(N, X, Y, Z)``; ``subject_ids``
    the N subjects in order; ``obs_ids[collection]`` each volume's obs_id."""

    volumes: dict[str, np.ndarray]
    subject_ids: tuple[str, ...]
    obs_ids: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class QueryCount:
    """Subjects selected, and volumes selected per output collection."""

    n_subjects: int
    n_volumes: dict[str, int]


def _compose(first: TransformFn | None, then: TransformFn) -> TransformFn:
    if first is None:
        return then
    return lambda v: then(first(v))


def _positions(key: Any, n: int) -> list[int] | slice | np.ndarray:
    """An ``iloc`` key as something a selection's ``iloc[...]`` turns into a selection (an int
    becomes a one-element list, so the answer stays a query, never a single volume)."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return [int(key)]
    return key


class Query:
    """Filters over a store's subjects and collections (see the module docstring).

    Args:
        radi: the :class:`~radiobject_adapter.store.radiobject.RadiObject` (or a selection of it).
        transform: voxel function applied by ``iter_batches`` and ``materialize``.
    """

    def __init__(self, radi: Any, transform: TransformFn | None = None) -> None:
        self._radi = radi
        self._transform = transform

    def _with(self, radi: Any) -> Query:
        return Query(radi, self._transform)

    # -- filters --------------------------------------------------------------------------
    def filter(self, expr: str) -> Query:
        """Subjects whose subject-table row matches ``expr`` (e.g. ``"age > 40"``)."""
        return self._with(self._radi.filter(expr))

    def filter_subjects(self, ids: Sequence[str]) -> Query:
        """Only these subject ids (intersected with the current selection)."""
        return self._with(self._radi._with(subjects=[str(i) for i in ids]))

    def filter_collection(self, collection_name: str, expr: str) -> Query:
        """Subjects whose volume in ``collection_name`` has an ``obs`` row matching ``expr``."""
        obs = pd.DataFrame(self._radi.collection(collection_name).obs)
        try:
            hits = obs.query(expr)
        except Exception as err:
            raise ValueError(
                f"bad filter {expr!r} on {collection_name!r}: {err}; columns: {list(obs.columns)}"
            ) from err
        return self.filter_subjects(sorted(set(hits["obs_subject_id"].astype(str))))

    def iloc(self, key: Any) -> Query:
        """Subjects by position: an int, slice, list of ints or boolean mask."""
        return self._with(self._radi.iloc[_positions(key, len(self))])

    def loc(self, key: str | Sequence[str]) -> Query:
        """Subjects by id: one id or a list."""
        return self._with(self._radi.loc[key])

    def head(self, n: int = 5) -> Query:
        return self._with(self._radi.head(n))

    def tail(self, n: int = 5) -> Query:
        return self._with(self._radi.tail(n))

    def sample(self, n: int = 5, seed: int | None = None) -> Query:
        """``n`` subjects at random, the same ones for the same ``seed``."""
        return self._with(self._radi.sample(n, seed))

    def select_collections(self, names: Sequence[str]) -> Query:
        """Only these collections in the output."""
        return self._with(self._radi.select_collections(names))

    def map(self, fn: TransformFn) -> Query:
        """Apply ``fn`` to each volume's voxels when batching or materialising (chained maps
        compose in order)."""
        return Query(self._radi, _compose(self._transform, fn))

    # -- results --------------------------------------------------------------------------
    @property
    def subject_ids(self) -> list[str]:
        return self._radi.obs_subject_ids

    def count(self) -> QueryCount:
        """How many subjects, and how many of their volumes in each output collection."""
        names = self._radi.collection_names
        return QueryCount(len(self), {n: len(self._radi.collection(n)) for n in names})

    def to_obs_meta(self) -> pd.DataFrame:
        """The selected subjects' subject-table rows."""
        return pd.DataFrame(self._radi.obs_meta).reset_index(drop=True)

    def iter_volumes(self, collection_name: str | None = None) -> Iterator[Any]:
        """The selected volumes (:class:`~radiobject_adapter.volume.Volume`) of one collection,
        or of every output collection in turn (untransformed: read them with ``to_numpy``)."""
        names = [collection_name] if collection_name else list(self._radi.collection_names)
        for name in names:
            yield from self._radi.collection(name)

    def iter_batches(self, batch_size: int = 32) -> Iterator[VolumeBatch]:
        """Batches of ``batch_size`` subjects; each output collection's voxels stacked
        (through the ``map`` transform), for subjects that have a volume there."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        ids = self.subject_ids
        cols = {n: self._radi.collection(n) for n in self._radi.collection_names}
        fn = self._transform or (lambda v: v)
        for start in range(0, len(ids), batch_size):
            chunk = ids[start : start + batch_size]
            volumes, obs_ids = {}, {}
            for name, col in cols.items():
                present = [s for s in chunk if s in set(col.subject_ids)]
                if present:
                    volumes[name] = np.stack([fn(col[s].to_numpy()) for s in present])
                    obs_ids[name] = tuple(col._obs_id_of(s) for s in present)
            yield VolumeBatch(volumes, tuple(chunk), obs_ids)

    def materialize(self, uri: str, streaming: bool = True, ctx: Any = None) -> Any:
        """A new store at ``uri`` with the selected subjects, the output collections and their
        volumes (through the ``map`` transform). Volumes are written one at a time whatever
        ``streaming`` says (radiobject's switch between in-memory and streamed writes)."""
        from radiobject_adapter.store.build import copy_collections

        if len(self) == 0:
            raise ValueError("the query selects no subjects; nothing to materialize")
        cols = {n: self._radi.collection(n) for n in self._radi.collection_names}
        copy_collections(uri, cols, self.to_obs_meta(), ctx=ctx, transform=self._transform)
        # the store's own class (views share it): no import of the object model, which imports this
        return type(self._radi)(uri, ctx)

    def __len__(self) -> int:
        return len(self.subject_ids)

    def __repr__(self) -> str:
        count = self.count()
        return (
            f"Query({self._radi.uri!r}: {count.n_subjects} subjects, "
            f"{sum(count.n_volumes.values())} volumes in {list(count.n_volumes)})"
        )


class CollectionQuery:
    """Filters over one collection's volumes (see the module docstring).

    Args:
        collection: the :class:`~radiobject_adapter.store.collection.VolumeCollection`.
        transform: voxel function applied by ``to_numpy_stack`` and ``materialize``.
    """

    def __init__(self, collection: Any, transform: TransformFn | None = None) -> None:
        self._col = collection
        self._transform = transform

    def _with(self, collection: Any) -> CollectionQuery:
        return CollectionQuery(collection, self._transform)

    def _keep(self, obs_ids: Sequence[str]) -> CollectionQuery:
        wanted = set(obs_ids)
        return self._with(self._col._view([o for o in self._col.obs_ids if o in wanted]))

    def filter(self, expr: str) -> CollectionQuery:
        """Volumes whose ``obs`` row matches ``expr`` (e.g. ``"series_type == 'CT'"``)."""
        obs = pd.DataFrame(self._col.obs)
        try:
            hits = obs.query(expr)
        except Exception as err:
            raise ValueError(f"bad filter {expr!r}: {err}; columns: {list(obs.columns)}") from err
        return self._keep(list(hits["obs_id"].astype(str)))

    def filter_subjects(self, ids: Sequence[str]) -> CollectionQuery:
        """Volumes of these subjects."""
        wanted = {str(i) for i in ids}
        return self._keep([o for o, s in zip(self._col.obs_ids, self._col.subject_ids) if s in wanted])

    def iloc(self, key: Any) -> CollectionQuery:
        """Volumes by position: an int, slice, list of ints or boolean mask."""
        return self._with(self._col.iloc[_positions(key, self.count())])

    def loc(self, key: str | Sequence[str]) -> CollectionQuery:
        """Volumes by obs_id: one or a list."""
        keys = [key] if isinstance(key, str) else list(key)
        unknown = [k for k in keys if k not in set(self._col.obs_ids)]
        if unknown:
            raise KeyError(f"no volume(s) {unknown[:5]} in collection {self._col.name!r}")
        return self._keep(keys)

    def head(self, n: int = 5) -> CollectionQuery:
        return self._with(self._col.head(n))

    def tail(self, n: int = 5) -> CollectionQuery:
        return self._with(self._col.tail(n))

    def sample(self, n: int = 5, seed: int | None = None) -> CollectionQuery:
        """``n`` volumes at random, the same ones for the same ``seed``."""
        return self._with(self._col.sample(n, seed))

    def map(self, fn: TransformFn) -> CollectionQuery:
        """Apply ``fn`` to each volume's voxels in ``to_numpy_stack`` / ``materialize``."""
        return CollectionQuery(self._col, _compose(self._transform, fn))

    def count(self) -> int:
        return len(self._col)

    def to_obs(self) -> pd.DataFrame:
        """The selected volumes' ``obs`` rows."""
        return pd.DataFrame(self._col.obs).reset_index(drop=True)

    def iter_volumes(self) -> Iterator[Any]:
        """The selected volumes (untransformed)."""
        yield from self._col

    def to_numpy_stack(self) -> np.ndarray:
        """All selected volumes' voxels (through the transform) as one ``(N, X, Y, Z)`` array;
        ``ValueError`` if their shapes differ."""
        fn = self._transform or (lambda v: v)
        arrays = [fn(v.to_numpy()) for v in self._col]
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            raise ValueError(f"volumes differ in shape {sorted(shapes)}; iterate iter_volumes() instead")
        return np.stack(arrays)

    def materialize(self, uri: str, name: str | None = None, ctx: Any = None) -> Any:
        """A new collection at ``uri`` with the selected volumes (through the transform) and
        their ``obs`` rows."""
        from radiobject_adapter.store.build import CollectionWriter, builder_tiling, write_collection

        if self.count() == 0:
            raise ValueError("the query selects no volumes; nothing to materialize")
        name = name or self._col.name
        vols = [(o, self._col.loc[o]) for o in self._col.obs_ids]
        rows = {str(r["obs_id"]): r for r in self.to_obs().to_dict("records")}
        subject_of = dict(zip(self._col.obs_ids, self._col.subject_ids))
        writer = CollectionWriter(str(uri).rstrip("/"), tiling=builder_tiling(), ctx=ctx)
        try:
            write_collection(writer, name, vols, subject_of, rows, self._transform)
        finally:
            writer.close()
        writer.count()
        return type(self._col)(str(uri).rstrip("/"), ctx, name=name)  # as above: the collection's class

    def __len__(self) -> int:
        return self.count()

    def __repr__(self) -> str:
        return f"CollectionQuery({self._col.name!r}: {self.count()} volumes)"
