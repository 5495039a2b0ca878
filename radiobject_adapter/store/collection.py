"""A named collection of volumes (one modality, or the labels) inside a store."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import tiledb

from radiobject_adapter.config import ctx_for_threads, current_settings, with_retries
from radiobject_adapter.store.dataframe import read_dataframe
from radiobject_adapter.store.layout import join_uri
from radiobject_adapter.store.selection import CollectionSelection
from radiobject_adapter.store.table import Table
from radiobject_adapter.volume import Volume

__all__ = ["VolumeCollection"]


def _position(key: object, n: int) -> int:
    """A position in ``range(n)`` from an int (negative counts from the end)."""
    if isinstance(key, bool) or not isinstance(key, (int, np.integer)):
        raise TypeError(f"positions are ints, not {type(key).__name__} ({key!r})")
    i = int(key) + n if key < 0 else int(key)
    if not 0 <= i < n:
        raise IndexError(f"position {key} out of range for {n} volumes")
    return i


class _Locator:
    """``iloc`` (positions) / ``loc`` (obs_ids or subject ids): one key gives a
    :class:`~radiobject_adapter.volume.Volume`; a slice, a list or a boolean mask gives a
    :class:`VolumeCollection` restricted to those volumes (radiobject's views)."""

    def __init__(self, collection: VolumeCollection, by_position: bool) -> None:
        self._collection = collection
        self._by_position = by_position

    def __getitem__(self, key: Any) -> Volume | VolumeCollection:
        c = self._collection
        ids = c.obs_ids
        if self._by_position:
            if isinstance(key, slice):
                return c._view(ids[key])
            if isinstance(key, np.ndarray) and key.dtype == np.bool_:
                if len(key) != len(ids):
                    raise ValueError(f"boolean mask of length {len(key)} for {len(ids)} volumes")
                return c._view([o for o, keep in zip(ids, key) if keep])
            if isinstance(key, (list, tuple, np.ndarray)):
                return c._view([ids[_position(k, len(ids))] for k in key])
            return c._volume_for_obs_id(ids[_position(key, len(ids))])
        if isinstance(key, (list, tuple, np.ndarray)):
            return c._view([c._obs_id_of(str(k)) for k in key])
        if not isinstance(key, str):
            raise TypeError(f"loc takes an obs_id or subject id (str) or a list of them, not {type(key).__name__}")
        return c._volume_for_obs_id(key)


class VolumeCollection(CollectionSelection):
    """Volumes of one collection, addressed by ``obs_id``, subject id or position.

    Positions follow the sorted ``obs_id`` order. Each volume is found through the
    ``obs_id`` stored on its array, so stores whose member numbering disagrees with their
    ``obs`` order (written by radiobject 0.1.1) still return the right volume.

    Slices, lists and boolean masks (``ct[1:3]``, ``ct.iloc[[0, 2]]``, ``ct.loc[[...]]``)
    give a collection restricted to those volumes, as radiobject's views do.

    Args:
        uri: the collection's group URI.
        ctx: a TileDB context to read with (radiobject's call shape); default: the process's.
        name: the collection's name (default: the last part of ``uri``).
        subjects: restrict to these subject ids; obs_ids: restrict to these volumes.

    Example:
        >>> ct = RadiObject("store").CT
        >>> ct["case_001"].shape          # by subject id
        >>> ct.loc["case_001_CT"]         # by obs_id
        >>> ct.iloc[0], len(ct), ct.subject_ids, ct[:2]
    """

    def __init__(
        self,
        uri: str,
        ctx: tiledb.Ctx | None = None,
        name: str | None = None,
        subjects: Iterable[str] | None = None,
        obs_ids: Iterable[str] | None = None,
    ) -> None:
        if ctx is not None and not isinstance(ctx, tiledb.Ctx):
            raise TypeError(
                f"VolumeCollection's second argument is a tiledb.Ctx, not {type(ctx).__name__}; "
                "pass the collection's name as VolumeCollection(uri, name=...)"
            )
        self.uri = str(uri).rstrip("/")
        self.ctx = ctx
        self._ctx = ctx  # radiobject's attribute name
        self.name = name or self.uri.rsplit("/", 1)[-1]
        self._subjects = frozenset(subjects) if subjects is not None else None
        self._volume_ids = frozenset(obs_ids) if obs_ids is not None else None
        self.loc = _Locator(self, by_position=False)
        self.iloc = _Locator(self, by_position=True)

    # -- building (radiobject's calls; see radiobject_adapter.store.build) ---------------------
    @classmethod
    def from_volumes(
        cls,
        uri: str,
        volumes: Sequence[tuple[str, Volume]],
        obs_data: pd.DataFrame | None = None,
        name: str | None = None,
        ctx: tiledb.Ctx | None = None,
        validate_dimensions: bool = True,
    ) -> VolumeCollection:
        """A collection at ``uri`` holding copies of ``(obs_id, Volume)`` pairs; subjects come
        from ``obs_data`` (``obs_id``, ``obs_subject_id`` + more columns) or the volumes;
        ``validate_dimensions`` requires one shape for all (as radiobject).

        Example:
            >>> VolumeCollection.from_volumes("ct", [("s1_CT", Volume.from_numpy("v", data))], name="CT")
        """
        from radiobject_adapter.store.build import CollectionWriter, builder_tiling, subjects_of, write_collection

        uri = str(uri).rstrip("/")
        name = name or uri.rsplit("/", 1)[-1]
        volumes = list(volumes)
        if not volumes:
            raise ValueError("At least one volume is required: give [(obs_id, Volume), ...]")
        shapes = {tuple(v.shape[:3]) for _, v in volumes}
        if validate_dimensions and len(shapes) > 1:
            raise ValueError(
                f"Dimension mismatch: volumes differ in shape {sorted(shapes)}; pass validate_dimensions=False"
            )
        rows = {str(r["obs_id"]): r for r in obs_data.to_dict("records")} if obs_data is not None else None
        writer = CollectionWriter(uri, tiling=builder_tiling(), ctx=ctx)
        try:
            write_collection(writer, name, list(volumes), subjects_of(list(volumes), obs_data), rows)
        finally:
            writer.close()
        writer.count()
        return cls(uri, ctx, name=name)

    _from_volumes = from_volumes  # radiobject's test fixtures call the private name

    @classmethod
    def from_niftis(
        cls,
        uri: str,
        niftis: Sequence[tuple[str, str]],
        reorient: bool | None = None,
        validate_dimensions: bool = True,
        name: str | None = None,
        ctx: tiledb.Ctx | None = None,
        progress: bool = False,
        valid_subject_ids: Iterable[str] | None = None,
    ) -> VolumeCollection:
        """A collection at ``uri`` from ``[(nifti_path, subject_id), ...]`` (radiobject's call);
        ``validate_dimensions`` requires one shape for all; ``reorient=True`` turns each to the
        closest canonical (RAS+) orientation; ``valid_subject_ids`` (e.g. the store's subject
        table) refuses any other subject before anything is written.

        Example:
            >>> VolumeCollection.from_niftis("ct", [("a.nii.gz", "sub-01")], name="CT")
        """
        from radiobject_adapter.store.build import CollectionWriter, builder_tiling, load_for_build

        uri = str(uri).rstrip("/")
        name = name or uri.rsplit("/", 1)[-1]
        pairs = [(str(p), str(s)) for p, s in niftis]
        if not pairs:
            raise ValueError("At least one NIfTI is required: niftis is empty; give [(path, subject_id), ...]")
        if valid_subject_ids is not None:
            invalid = sorted({s for _, s in pairs} - set(valid_subject_ids))
            if invalid:
                raise ValueError(f"Invalid obs_subject_ids {invalid[:5]}: not in valid_subject_ids")
        loaded = [load_for_build(p, reorient) for p, _ in pairs]
        shapes = {v.data.shape[:3] for v in loaded}
        if validate_dimensions and len(shapes) > 1:
            raise ValueError(
                f"Dimension mismatch: volumes differ in shape {sorted(shapes)}; pass validate_dimensions=False"
            )
        writer = CollectionWriter(uri, tiling=builder_tiling(), ctx=ctx)
        try:
            for (_path, sid), vol in zip(pairs, loaded):
                obs_id = f"{sid}_{name}"
                writer.write_volume(
                    name, sid, obs_id, vol.data, vol.affine, meta=vol.array_metadata(), obs_row=vol.obs_row(name)
                )
        finally:
            writer.close()
        writer.count()
        return cls(uri, ctx, name=name)

    def append(
        self,
        niftis: Sequence[tuple[str, str]] | None = None,
        dicom_dirs: Sequence[tuple[str, str]] | None = None,
        reorient: bool | None = None,
        progress: bool = False,
    ) -> None:
        """Add NIfTI files ``[(path, subject_id), ...]`` to this collection (radiobject's call);
        all are checked before any is written (see :func:`~radiobject_adapter.store.build.append_niftis`).

        Example:
            >>> radi.CT.append(niftis=[("new.nii.gz", "sub-09")])
        """
        from radiobject_adapter.store.build import append_niftis

        if self.is_view:
            raise TypeError("cannot append to a selection of a collection; append to the whole collection")
        if niftis is None and dicom_dirs is None:
            raise ValueError("Must provide niftis=[(path, subject_id), ...]")
        if niftis is not None and dicom_dirs is not None:
            raise ValueError("Cannot provide both niftis and dicom_dirs")
        if dicom_dirs is not None:
            raise ValueError("DICOM series are not appended here; ingest them with radiobundles' DICOM ingest")
        append_niftis(self, niftis, reorient)
        self.__dict__.pop("metadata", None)

    def get_obs_row_by_obs_id(self, obs_id: str) -> pd.DataFrame:
        """The ``obs`` row of one volume (radiobject's call)."""
        obs = pd.DataFrame(self.obs)
        return obs[obs["obs_id"] == obs_id].reset_index(drop=True)

    def _effective_ctx(self) -> tiledb.Ctx:
        return self.ctx or ctx_for_threads()

    def _view(self, obs_ids: Iterable[str]) -> VolumeCollection:
        view = VolumeCollection(self.uri, self.ctx, self.name, self._subjects, obs_ids)
        view.__dict__["metadata"] = self.metadata
        return view

    @property
    def is_view(self) -> bool:
        """Whether this collection is restricted to some subjects or volumes."""
        return self._subjects is not None or self._volume_ids is not None

    # -- index --------------------------------------------------------------------------
    @cached_property
    def metadata(self) -> dict:
        def read() -> dict:
            with tiledb.Group(self.uri, "r", ctx=self._effective_ctx()) as grp:
                return {k: grp.meta[k] for k in grp.meta}

        return with_retries(read)

    @cached_property
    def _entries(self) -> pd.DataFrame:
        """One row per readable volume: obs_id, subject id, array uri (sorted by obs_id)."""
        return with_retries(self._list_entries)

    def _list_entries(self) -> pd.DataFrame:
        ctx = self._effective_ctx()
        vol_uri = join_uri(self.uri, "volumes")
        with tiledb.Group(vol_uri, "r", ctx=ctx) as grp:
            member_uris = [m.uri for m in grp]

        def identify(uri: str) -> tuple[str, str | None, str] | None:
            # Only members that are not arrays are skipped; any other error (a timeout on S3)
            # must surface rather than make a volume silently vanish from the listing.
            if tiledb.object_type(uri, ctx=ctx) != "array":
                return None
            with tiledb.open(uri, "r", ctx=ctx) as arr:
                meta = arr.meta
                if "obs_id" not in meta:
                    return None
                subject = meta["obs_subject_id"] if "obs_subject_id" in meta else None
                return str(meta["obs_id"]), subject, uri

        with ThreadPoolExecutor(max_workers=current_settings().read.max_workers) as pool:
            found = [r for r in pool.map(identify, member_uris) if r is not None]
        entries = pd.DataFrame(found, columns=["obs_id", "obs_subject_id", "uri"])
        obs = self._obs_all
        if entries["obs_subject_id"].isna().any():
            # radiobject writes the subject only into obs; fill it from there
            subject_of = dict(zip(obs["obs_id"], obs["obs_subject_id"]))
            entries["obs_subject_id"] = [
                s if isinstance(s, str) else subject_of.get(o) for o, s in zip(entries.obs_id, entries.obs_subject_id)
            ]
        # the obs row is a volume's commit point: one registered without it was left by a
        # writer killed in between; it stays invisible until the next writer (or
        # `radiobundles check --repair`) writes the row from the volume's metadata
        committed = entries["obs_id"].isin(set(obs["obs_id"]))
        self.__dict__["_pending"] = sorted(entries.loc[~committed, "obs_id"])
        entries = entries[committed]
        entries = entries.drop_duplicates("obs_id", keep="last").sort_values("obs_id").reset_index(drop=True)
        if self._subjects is not None:
            entries = entries[entries["obs_subject_id"].isin(self._subjects)].reset_index(drop=True)
        if self._volume_ids is not None:
            entries = entries[entries["obs_id"].isin(self._volume_ids)].reset_index(drop=True)
        return entries

    @property
    def pending(self) -> list[str]:
        """obs ids of volumes registered without their ``obs`` row (a writer was killed
        between the two): not listed until repaired, see :mod:`.recovery`."""
        self._entries  # noqa: B018 (the listing finds them)
        return list(self.__dict__.get("_pending", []))

    def refresh(self) -> VolumeCollection:
        """Forget cached listings (after another process added volumes)."""
        for name in ("_entries", "metadata", "obs", "_obs_all", "_pending"):
            self.__dict__.pop(name, None)
        return self

    @cached_property
    def _obs_all(self) -> pd.DataFrame:
        return with_retries(lambda: read_dataframe(join_uri(self.uri, "obs"), ctx=self._effective_ctx()))

    @cached_property
    def obs(self) -> Table:
        """The collection's per-volume table (sorted by subject, then obs_id): a pandas
        DataFrame that also has radiobject's ``.read(columns=..., value_filter=...)``."""
        df = self._obs_all
        if self._subjects is not None:
            df = df[df["obs_subject_id"].isin(self._subjects)]
        if self._volume_ids is not None:
            df = df[df["obs_id"].isin(self._volume_ids)]
        return Table(df.sort_values(["obs_subject_id", "obs_id"]).reset_index(drop=True))

    @property
    def obs_ids(self) -> list[str]:
        return list(self._entries["obs_id"])

    @property
    def subject_ids(self) -> list[str]:
        """The subject of each volume, in position order."""
        return [str(s) for s in self._entries["obs_subject_id"]]

    @property
    def obs_subject_ids(self) -> list[str]:
        """radiobject's name for :attr:`subject_ids`."""
        return self.subject_ids

    @property
    def shape(self) -> tuple[int, int, int] | None:
        """The shared ``(X, Y, Z)`` of the whole collection's volumes, ``None`` if they differ."""
        m = self.metadata
        if not all(k in m for k in ("x_dim", "y_dim", "z_dim")):
            return None
        return int(m["x_dim"]), int(m["y_dim"]), int(m["z_dim"])

    @property
    def is_uniform(self) -> bool:
        """Whether all volumes share one shape (radiobject's name)."""
        return self.shape is not None

    def head(self, n: int = 5) -> VolumeCollection:
        """The first ``n`` volumes (a restricted collection)."""
        return self._view(self.obs_ids[:n])

    def tail(self, n: int = 5) -> VolumeCollection:
        """The last ``n`` volumes (a restricted collection)."""
        return self._view(self.obs_ids[-n:] if n else [])

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Volume]:
        for uri in self._entries["uri"]:
            yield Volume(uri, self.ctx)

    def __contains__(self, key: str) -> bool:
        try:
            self._lookup(key)
        except KeyError:
            return False
        return True

    def __repr__(self) -> str:
        view = ", view" if self.is_view else ""
        return f"VolumeCollection(name={self.name!r}, volumes={len(self)}{view})"

    def _row(self, key: str) -> int:
        e = self._entries
        hit = e.index[e["obs_id"] == key]
        if len(hit) == 0:
            hit = e.index[e["obs_subject_id"] == key]
        if len(hit) == 0:
            raise KeyError(
                f"no volume {key!r} in collection {self.name!r} ({len(e)} volumes); "
                f"give an obs_id or a subject id, e.g. {e['obs_subject_id'].iloc[0] if len(e) else '-'!r}"
            )
        if len(hit) > 1:
            raise KeyError(f"subject {key!r} has {len(hit)} volumes in {self.name!r}; give the obs_id instead")
        return int(hit[0])

    def _lookup(self, key: str) -> str:
        return str(self._entries.at[self._row(key), "uri"])

    def _obs_id_of(self, key: str) -> str:
        return str(self._entries.at[self._row(key), "obs_id"])

    def _volume_for_obs_id(self, obs_id: str) -> Volume:
        return Volume(self._lookup(obs_id), self.ctx)

    def __getitem__(self, key: Any) -> Volume | VolumeCollection:
        """A volume by position (int), obs_id or subject id (str); a slice, list or boolean
        mask gives the collection restricted to those volumes."""
        if isinstance(key, str):
            return Volume(self._lookup(key), self.ctx)
        if isinstance(key, list) and key and all(isinstance(k, str) for k in key):
            return self.loc[key]
        return self.iloc[key]

    def get(self, subject_id: str) -> Volume | None:
        """The subject's volume, or ``None`` if this collection has none."""
        try:
            return self[subject_id]
        except KeyError:
            return None

    def uri_of(self, key: str) -> str:
        """Array URI of a volume (by obs_id or subject id)."""
        return self._lookup(key)
