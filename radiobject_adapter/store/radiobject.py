"""``RadiObject``: a store of subjects, each with volumes in named collections.

Example:
    >>> from radiobject_adapter import RadiObject
    >>> radi = RadiObject.from_niftis("store", images={"CT": "imagesTr/*.nii.gz", "seg": "labelsTr/"})
    >>> radi.CT["case_001"][0:64, 0:64, 0:64].shape
    (64, 64, 64)
    >>> radi.obs_meta.head()
    >>> train = radi.datalist(image="CT", label="seg", split="train")
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import Any

import pandas as pd
import tiledb

from radiobject_adapter.address import volume_address
from radiobject_adapter.config import ctx_for_threads, with_retries
from radiobject_adapter.errors import StoreNotFoundError
from radiobject_adapter.store.collection import VolumeCollection
from radiobject_adapter.store.dataframe import read_dataframe
from radiobject_adapter.store.layout import collection_uri, drop_torn_fragments, join_uri, read_format_version
from radiobject_adapter.store.lease import WriterLease
from radiobject_adapter.store.selection import SubjectSelection
from radiobject_adapter.store.table import Table

__all__ = ["RadiObject", "StoreNotFoundError", "is_store", "split_subjects", "store_problem"]


def store_problem(uri: str, ctx: tiledb.Ctx | None = None) -> str | None:
    """``None`` when ``uri`` is a store (a TileDB group holding a ``collections`` group), else why not.

    The one check behind :func:`is_store` and :class:`RadiObject`: a TileDB error (an
    unreachable or failing object store) is retried as every read-side open is
    (:func:`~radiobject_adapter.config.with_retries`), so a passing fault is not taken for
    "no store".

    Example:
        >>> store_problem("ct_store") is None, store_problem("imagesTr/")
        (True, "'imagesTr' is not a radiobundles store (no TileDB group with 'collections'); ...")
    """
    uri = str(uri).rstrip("/")
    ctx = ctx or ctx_for_threads()

    def kinds() -> tuple[str | None, str | None]:
        kind = tiledb.object_type(uri, ctx=ctx)
        return kind, tiledb.object_type(join_uri(uri, "collections"), ctx=ctx) if kind == "group" else None

    try:
        kind, collections_kind = with_retries(kinds)
    except tiledb.TileDBError as err:
        return f"cannot reach store {uri!r}: {err}"
    if kind != "group" or collections_kind != "group":
        return (
            f"{uri!r} is not a radiobundles store (no TileDB group with 'collections'); "
            "create one with `radiobundles ingest` or RadiObject.from_niftis"
        )
    return None


def is_store(uri: str) -> bool:
    """True when ``uri`` is a store: a TileDB group holding a ``collections`` group.

    The one answer to "store or folder of files?" (bundles' ``dataset_dir``, MONAI Label's
    studies, paired image sources). A missing path, a plain folder or an unreachable URI is
    not a store; :func:`store_problem` says why.

    Example:
        >>> is_store("ct_store"), is_store("imagesTr/")
        (True, False)
    """
    return store_problem(uri) is None


def split_subjects(subject_ids: Iterable[str], val_fraction: float = 0.2, seed: int = 0) -> tuple[list[str], list[str]]:
    """Seeded subject-level split: the same ids, fraction and seed give the same split.

    Example:
        >>> split_subjects(["a", "b", "c", "d", "e"], val_fraction=0.4, seed=1)
    """
    ids = sorted(set(subject_ids))
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = round(len(ids) * val_fraction)
    if val_fraction > 0 and len(ids) > 1:
        n_val = min(max(1, n_val), len(ids) - 1)
    shuffled = ids[:]
    random.Random(seed).shuffle(shuffled)
    val = sorted(shuffled[:n_val])
    return sorted(set(ids) - set(val)), val


class RadiObject(SubjectSelection):
    """A store opened for reading (local path or ``s3://`` URI).

    Args:
        uri: the store's root.
        ctx: a TileDB context to read with (radiobject's call shape); default: the process's.
        subjects: restrict to these subject ids (used by :meth:`filter`, ``iloc``, ``loc``...).
        collections: restrict to these collections (used by :meth:`select_collections`).
    """

    def __init__(
        self,
        uri: str,
        ctx: tiledb.Ctx | None = None,
        subjects: Iterable[str] | None = None,
        collections: Iterable[str] | None = None,
    ) -> None:
        if ctx is not None and not isinstance(ctx, tiledb.Ctx):
            raise TypeError(
                f"RadiObject's second argument is a tiledb.Ctx, not {type(ctx).__name__}; "
                "pass subjects by keyword: RadiObject(uri, subjects=[...])"
            )
        uri = str(uri).rstrip("/")
        # datalists carry this URI into other processes and folders: make local paths absolute
        self.uri = uri if "://" in uri else os.path.abspath(uri)
        self._ctx = ctx
        self._subjects = frozenset(subjects) if subjects is not None else None
        self._collection_filter = tuple(collections) if collections is not None else None
        ctx = ctx or ctx_for_threads()
        if "://" not in self.uri and not WriterLease(self.uri, tiledb.VFS(ctx=ctx)).others_alive():
            drop_torn_fragments(self.uri)  # a killed writer's empty metadata file would block opening

        problem = store_problem(self.uri, ctx)
        if problem is not None:
            raise StoreNotFoundError(problem)
        self.format_version = read_format_version(self.metadata)
        self._collections: dict[str, VolumeCollection] = {}

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_niftis(cls, uri: str, images: dict[str, Any] | None = None, **kwargs: Any) -> RadiObject:
        """Ingest NIfTI files into ``uri`` and open it (see :func:`ingest_niftis` for options).

        radiobject's older forms work too: ``niftis=[(path, subject_id), ...]``,
        ``image_dir=...`` with ``collection_name=...``, and lists of ``(path, subject_id)``
        as the values of ``images`` (see :func:`~radiobject_adapter.store.build.niftis_to_images`).
        """
        from radiobject_adapter.store.build import ingest_nifti_forms

        ctx = kwargs.pop("ctx", None)
        ingest_nifti_forms(uri, images, kwargs)
        return cls(uri, ctx)

    @classmethod
    def from_images(cls, uri: str, images: dict[str, Any], **kwargs: Any) -> RadiObject:
        """radiobject's newer name for :meth:`from_niftis` (NIfTI inputs)."""
        return cls.from_niftis(uri, images, **kwargs)

    @classmethod
    def from_collections(
        cls,
        uri: str,
        collections: dict[str, Any],
        obs_meta: pd.DataFrame | None = None,
        ctx: tiledb.Ctx | None = None,
    ) -> RadiObject:
        """A store at ``uri`` holding copies of ``{name: VolumeCollection or its URI}`` and the
        subject table ``obs_meta`` (default: the collections' subjects).

        Example:
            >>> ct = VolumeCollection.from_niftis("ct", [("a.nii.gz", "sub-01")], name="CT")
            >>> RadiObject.from_collections("store", {"CT": ct}).CT.subject_ids
            ['sub-01']
        """
        from radiobject_adapter.store.build import copy_collections

        opened = {
            name: col if isinstance(col, VolumeCollection) else VolumeCollection(str(col), name=name)
            for name, col in collections.items()
        }
        copy_collections(uri, opened, obs_meta, ctx=ctx)
        return cls(uri, ctx)

    _from_volume_collections = from_collections  # radiobject's test fixtures call the private name

    def append(self, images: dict[str, Any] | None = None, **kwargs: Any) -> RadiObject:
        """Ingest more NIfTI files into this store (any form :meth:`from_niftis` takes, e.g.
        radiobject's ``niftis=[(path, subject_id)], obs_meta=df``); volumes already present
        are skipped; subjects new to the store need an ``obs_meta`` row (radiobject's rule).
        Returns ``self``, refreshed."""
        from radiobject_adapter.store.build import check_append_subjects, ingest_nifti_forms, niftis_to_images

        if self.is_view:
            raise TypeError("cannot append to a selection of a store; append to RadiObject(uri)")
        if images is None and kwargs.get("niftis") is None and kwargs.get("image_dir") is None:
            raise ValueError("Must provide niftis=[(path, subject_id), ...] or images={collection: files}")
        if kwargs.pop("dicom_dirs", None) is not None:
            raise ValueError("DICOM series are not appended here; ingest them with radiobundles' DICOM ingest")
        if images is None:  # radiobject's forms: resolve once, to check the subjects first
            images = niftis_to_images(
                None, kwargs.pop("niftis", None), kwargs.pop("image_dir", None), kwargs.pop("collection_name", None)
            )
        check_append_subjects(self, images, kwargs.get("obs_meta"))
        report = ingest_nifti_forms(self.uri, images, kwargs)
        if report.failures:
            raise ValueError("append rejected some subjects:\n" + report.summary())
        return self.refresh()

    @classmethod
    def from_dicoms(cls, uri: str, sources: dict[str, Any], **kwargs: Any) -> RadiObject:
        """Ingest DICOM series into ``uri`` and open it (see :func:`~radiobject_adapter.io.dicom_ingest.ingest_dicoms`).

        Example:
            >>> radi = RadiObject.from_dicoms("store", {"CT": "dicom/"}, rules="configs/dicom_rules.json")

        Raises:
            IngestError: some series were rejected (the others are written; the message lists them).
        """
        from radiobject_adapter.io.dicom_ingest import ingest_dicoms
        from radiobject_adapter.io.ingest import IngestError

        report = ingest_dicoms(uri, sources, **kwargs)
        if report.failures:
            raise IngestError(f"some DICOM series were rejected (the rest is written):\n{report.summary()}")
        return cls(uri)

    def check(self, repair: bool = False) -> Any:
        """Verify the store's invariants (see :func:`~radiobject_adapter.store.check.check_store`);
        with ``repair``, fix what stored data allows. Returns a ``CheckReport``.

        Example:
            >>> report = RadiObject("store").check()
            >>> print(report.summary()); report.exit_code    # 0 clean, 1 repaired, 2 damaged
        """
        from radiobject_adapter.store.check import check_store

        report = check_store(self.uri, repair=repair)
        self.refresh()
        return report

    # -- structure ------------------------------------------------------------------------
    @cached_property
    def metadata(self) -> dict[str, Any]:
        def read() -> dict[str, Any]:
            with tiledb.Group(self.uri, "r", ctx=self._ctx or ctx_for_threads()) as grp:
                return {k: grp.meta[k] for k in grp.meta}

        return with_retries(read)

    @cached_property
    def collection_names(self) -> tuple[str, ...]:
        def read() -> tuple[str, ...]:
            with tiledb.Group(join_uri(self.uri, "collections"), "r", ctx=self._ctx or ctx_for_threads()) as grp:
                return tuple(sorted(m.name for m in grp))

        names = with_retries(read)
        if self._collection_filter is not None:
            return tuple(n for n in self._collection_filter if n in names)
        return names

    def collection(self, name: str) -> VolumeCollection:
        """The collection ``name`` (e.g. ``"CT"``, ``"seg"``)."""
        if name not in self.collection_names:
            raise KeyError(f"no collection {name!r} in {self.uri!r}; collections: {list(self.collection_names)}")
        if name not in self._collections:
            self._collections[name] = VolumeCollection(
                collection_uri(self.uri, name), self._ctx, name=name, subjects=self._subjects
            )
        return self._collections[name]

    def __getattr__(self, name: str) -> VolumeCollection:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self.collection(name)
        except KeyError as err:
            raise AttributeError(str(err)) from None

    def __getitem__(self, key: Any) -> Any:
        """A collection by name (``radi["CT"]``); a name that is no collection but a subject
        id selects that subject, as in radiobject (``radi["sub-01"]``); lists, slices and
        boolean masks select subjects (see :attr:`iloc` / :attr:`loc`)."""
        if isinstance(key, str):
            if key in self.collection_names or key not in self.obs_subject_ids:
                return self.collection(key)
            return self.loc[key]
        if isinstance(key, list) and key and all(isinstance(k, str) for k in key):
            return self.loc[key]
        return self.iloc[key]

    def refresh(self) -> RadiObject:
        """Forget cached listings (after another process wrote to the store)."""
        for name in ("metadata", "collection_names", "obs_meta"):
            self.__dict__.pop(name, None)
        self._collections.clear()
        return self

    # -- subjects -------------------------------------------------------------------------
    @cached_property
    def obs_meta(self) -> Table:
        """The subject table: ``obs_subject_id`` plus user columns (``diagnosis``, ``age``...);
        a pandas DataFrame that also has radiobject's ``.read(columns=..., value_filter=...)``."""
        uri = join_uri(self.uri, "obs_meta")
        ctx = self._ctx or ctx_for_threads()
        if tiledb.object_type(uri, ctx=ctx) != "array":
            return Table(pd.DataFrame({"obs_subject_id": self.subject_ids}))
        df = read_dataframe(uri, ctx=ctx)
        if self._subjects is not None:
            df = df[df["obs_subject_id"].isin(self._subjects)]
        return Table(df.sort_values("obs_subject_id").reset_index(drop=True))

    @property
    def subject_ids(self) -> list[str]:
        """Subjects with at least one volume, sorted."""
        ids: set[str] = set()
        for name in self.collection_names:
            ids.update(self.collection(name).subject_ids)
        return sorted(ids)

    def __len__(self) -> int:
        return len(self.subject_ids)

    def __repr__(self) -> str:
        return f"RadiObject({self.uri!r}, collections={list(self.collection_names)})"

    def query(self, expr: str) -> list[str]:
        """Subject ids whose subject-table row matches a pandas query, e.g. ``"age > 60"``."""
        df = self.obs_meta
        try:
            hits = df.query(expr)
        except Exception as err:
            raise ValueError(f"bad subject query {expr!r}: {err}; columns: {list(df.columns)}") from err
        return sorted(hits["obs_subject_id"].astype(str))

    def filter(self, expr: str) -> RadiObject:
        """A view of the store restricted to the subjects matching ``expr``."""
        return self._with(subjects=self.query(expr))

    # -- MONAI ----------------------------------------------------------------------------
    def datalist(
        self,
        image: str | Sequence[str],
        label: str | None = None,
        columns: Sequence[str] = (),
        split: str | None = None,
        val_fraction: float = 0.2,
        seed: int = 0,
        require_label: bool = True,
    ) -> list[dict[str, Any]]:
        """MONAI-style dicts ``{"image": addr, "label": addr, "subject_id": ...}``.

        Args:
            image: image collection, or several (stacked as channels by ``LoadImaged``).
            label: label collection (optional).
            columns: subject-table columns to copy into each dict.
            split: ``"train"``, ``"validation"`` or ``None`` (every subject).
            val_fraction / seed: the subject-level split (see :func:`split_subjects`).
            require_label: drop subjects without a label volume when ``label`` is given.
        """
        image_names = [image] if isinstance(image, str) else list(image)
        subjects = set(self.collection(image_names[0]).subject_ids)
        for name in image_names[1:]:
            subjects &= set(self.collection(name).subject_ids)
        if label is not None and require_label:
            subjects &= set(self.collection(label).subject_ids)
        if split is not None:
            train, val = split_subjects(subjects, val_fraction, seed)
            if split in ("train", "training"):
                subjects = set(train)
            elif split in ("val", "validation"):
                subjects = set(val)
            else:
                raise ValueError(f"split must be 'train', 'validation' or None, not {split!r}")
        meta = self.obs_meta.set_index("obs_subject_id") if columns else None
        for col in columns:
            if meta is not None and col not in meta.columns:
                raise KeyError(f"subject table has no column {col!r}; columns: {list(meta.columns)}")
        items = []
        for sid in sorted(subjects):
            addrs = [volume_address(self.uri, n, sid) for n in image_names]
            item: dict[str, Any] = {"image": addrs[0] if len(addrs) == 1 else addrs, "subject_id": sid}
            if label is not None and (require_label or sid in self.collection(label)):
                item["label"] = volume_address(self.uri, label, sid)
            for col in columns:
                value = meta.at[sid, col] if meta is not None and sid in meta.index else None
                item[col] = value.item() if hasattr(value, "item") else value
            items.append(item)
        return items
