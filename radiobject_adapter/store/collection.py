"""A named collection of volumes (one modality, or the labels) inside a store."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property

import pandas as pd
import tiledb

from radiobject_adapter.config import ctx_for_threads, with_retries
from radiobject_adapter.store.dataframe import read_dataframe
from radiobject_adapter.store.layout import join_uri
from radiobject_adapter.volume import Volume

__all__ = ["VolumeCollection"]


class _Locator:
    def __init__(self, collection: VolumeCollection, by_position: bool) -> None:
        self._collection = collection
        self._by_position = by_position

    def __getitem__(self, key: int | str) -> Volume:
        c = self._collection
        if self._by_position:
            return c._volume_for_obs_id(c.obs_ids[int(key)])
        return c._volume_for_obs_id(str(key))


class VolumeCollection:
    """Volumes of one collection, addressed by ``obs_id``, subject id or position.

    Positions follow the sorted ``obs_id`` order. Each volume is found through the
    ``obs_id`` stored on its array, so stores whose member numbering disagrees with their
    ``obs`` order (written by radiobject 0.1.1) still return the right volume.

    Example:
        >>> ct = RadiObject("store").CT
        >>> ct["case_001"].shape          # by subject id
        >>> ct.loc["case_001_CT"]         # by obs_id
        >>> ct.iloc[0], len(ct), ct.subject_ids
    """

    def __init__(self, uri: str, name: str | None = None, subjects: frozenset[str] | None = None) -> None:
        self.uri = uri.rstrip("/")
        self.name = name or self.uri.rsplit("/", 1)[-1]
        self._subjects = subjects
        self.loc = _Locator(self, by_position=False)
        self.iloc = _Locator(self, by_position=True)

    # -- index --------------------------------------------------------------------------
    @cached_property
    def metadata(self) -> dict:
        def read() -> dict:
            with tiledb.Group(self.uri, "r", ctx=ctx_for_threads()) as grp:
                return {k: grp.meta[k] for k in grp.meta}

        return with_retries(read)

    @cached_property
    def _entries(self) -> pd.DataFrame:
        """One row per readable volume: obs_id, subject id, array uri (sorted by obs_id)."""
        return with_retries(self._list_entries)

    def _list_entries(self) -> pd.DataFrame:
        ctx = ctx_for_threads()
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

        with ThreadPoolExecutor(max_workers=8) as pool:
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
        return with_retries(lambda: read_dataframe(join_uri(self.uri, "obs"), ctx=ctx_for_threads()))

    @cached_property
    def obs(self) -> pd.DataFrame:
        """The collection's per-volume table (sorted by subject, then obs_id)."""
        df = self._obs_all
        if self._subjects is not None:
            df = df[df["obs_subject_id"].isin(self._subjects)]
        return df.sort_values(["obs_subject_id", "obs_id"]).reset_index(drop=True)

    @property
    def obs_ids(self) -> list[str]:
        return list(self._entries["obs_id"])

    @property
    def subject_ids(self) -> list[str]:
        return [str(s) for s in self._entries["obs_subject_id"]]

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Volume]:
        for uri in self._entries["uri"]:
            yield Volume(uri)

    def __contains__(self, key: str) -> bool:
        try:
            self._lookup(key)
        except KeyError:
            return False
        return True

    def __repr__(self) -> str:
        return f"VolumeCollection(name={self.name!r}, volumes={len(self)})"

    def _lookup(self, key: str) -> str:
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
        return str(e.at[hit[0], "uri"])

    def _volume_for_obs_id(self, obs_id: str) -> Volume:
        return Volume(self._lookup(obs_id))

    def __getitem__(self, key: int | str) -> Volume:
        """A volume by position (int), obs_id or subject id (str)."""
        if isinstance(key, (int,)) and not isinstance(key, bool):
            return self.iloc[key]
        return Volume(self._lookup(str(key)))

    def get(self, subject_id: str) -> Volume | None:
        """The subject's volume, or ``None`` if this collection has none."""
        try:
            return self[subject_id]
        except KeyError:
            return None

    def uri_of(self, key: str) -> str:
        """Array URI of a volume (by obs_id or subject id)."""
        return self._lookup(key)
