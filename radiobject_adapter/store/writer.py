"""Writing into a store: groups, collections and volumes, each step safe to interrupt.

A volume is written in three steps: voxels and metadata (its ``obs`` row among them), then
membership of its collection's ``volumes`` group, then its ``obs`` row. It becomes visible
with the row (readers list registered volumes that have one). A process killed before the
membership leaves an unregistered folder that no reader lists and that the next writer
removes before reusing its name; one killed after it leaves a *pending* volume whose row the
next writer of that collection writes from the array's metadata (:mod:`.recovery`), so
re-running the same ingest completes the work without skipping or doubling anything.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tiledb

from radiobject_adapter.config import ctx_for_threads, current_settings, forget_array, open_group
from radiobject_adapter.store.dataframe import create_dataframe, read_dataframe, write_rows
from radiobject_adapter.store.layout import (
    FORMAT_VERSION,
    FORMAT_VERSION_KEY,
    LABEL_CLASSES_KEY,
    Tiling,
    affine_to_json,
    collection_uri,
    compression_filters,
    create_volume_schema,
    drop_torn_fragments,
    join_uri,
    local_path,
    read_format_version,
)
from radiobject_adapter.store.lease import WriterLease
from radiobject_adapter.store.recovery import OBS_ROW_KEY, registered_volumes

__all__ = ["OBS_COLUMNS", "StoreWriter"]

# Per-volume table columns, the same as radiobject 0.1.1 writes for NIfTI input.
OBS_COLUMNS: dict[str, Any] = {
    "series_type": str,
    "voxel_spacing": str,
    "dimensions": str,
    "datatype": np.dtype(np.int64),
    "bitpix": np.dtype(np.int64),
    "scl_slope": np.dtype(np.float64),
    "scl_inter": np.dtype(np.float64),
    "xyzt_units": np.dtype(np.int64),
    "spatial_units": str,
    "qform_code": np.dtype(np.int64),
    "sform_code": np.dtype(np.int64),
    "axcodes": str,
    "affine_json": str,
    "orientation_source": str,
    "source_path": str,
}


def _plain(value: Any) -> Any:
    """JSON for numpy scalars (their Python value) and anything else (its text)."""
    return value.item() if isinstance(value, np.generic) else str(value)


class StoreWriter:
    """Creates a store if needed and appends volumes to its collections.

    Example:
        >>> w = StoreWriter("store")
        >>> w.write_volume("CT", "case_001", data, affine, meta={"source_path": "a.nii.gz"})
    """

    def __init__(
        self,
        uri: str,
        tiling: Tiling | None = None,
        compression: str | None = None,
        compression_level: int | None = None,
        ctx: tiledb.Ctx | None = None,
    ) -> None:
        self.uri = str(uri).rstrip("/")
        self.tiling = tiling or Tiling()
        defaults = current_settings().write  # configure(write=WriteConfig(...))
        self.filters = compression_filters(
            compression or defaults.compression,
            compression_level if compression_level is not None else defaults.compression_level,
        )
        self.ctx = ctx or ctx_for_threads()
        self._vfs = tiledb.VFS(ctx=self.ctx)
        self._ensured: set[str] = set()
        # obs ids whose missing obs row this writer wrote from the stored volume, per collection
        self.repaired: dict[str, list[str]] = {}
        self.lease = WriterLease(self.uri, self._vfs)
        if not self.lease.others_alive():
            drop_torn_fragments(self.uri)  # left by a killed writer; they would block opening groups
        self._ensure_root()

    # -- groups -------------------------------------------------------------------------
    def _object_type(self, uri: str) -> str | None:
        return tiledb.object_type(uri, ctx=self.ctx)

    def _ensure_root(self) -> None:
        kind = self._object_type(self.uri)
        if kind is None:
            if self._vfs.is_dir(self.uri) and self._vfs.ls(self.uri):
                raise FileExistsError(f"{self.uri!r} exists and is not a store; choose an empty or new location")
            tiledb.Group.create(self.uri, ctx=self.ctx)
        elif kind != "group":
            raise FileExistsError(f"{self.uri!r} is a TileDB {kind}, not a store group")
        with open_group(self.uri, "r", ctx=self.ctx) as grp:
            meta = {k: grp.meta[k] for k in grp.meta}
            members = {m.name for m in grp}
        read_format_version(meta)
        collections = join_uri(self.uri, "collections")
        if self._object_type(collections) is None:
            tiledb.Group.create(collections, ctx=self.ctx)
        # every step is re-checked, so a creation cut short by a kill is completed here
        if FORMAT_VERSION_KEY not in meta or "collections" not in members:
            with open_group(self.uri, "w", ctx=self.ctx) as grp:
                if FORMAT_VERSION_KEY not in meta and "n_collections" not in meta:
                    grp.meta[FORMAT_VERSION_KEY] = FORMAT_VERSION
                    grp.meta["subject_count"] = 0
                    grp.meta["n_collections"] = 0
                if "collections" not in members:
                    grp.add("collections", name="collections", relative=True)

    def _create_collection_parts(self, uri: str, name: str) -> None:
        """Create the collection group at ``uri`` with its ``obs`` and ``volumes`` members and
        counters, each piece only if missing (an interrupted creation is completed)."""
        self._create_once(uri, lambda: tiledb.Group.create(uri, ctx=self.ctx))
        obs_uri, vols_uri = join_uri(uri, "obs"), join_uri(uri, "volumes")
        self._create_once(obs_uri, lambda: create_dataframe(obs_uri, OBS_COLUMNS, ctx=self.ctx))
        self._create_once(vols_uri, lambda: tiledb.Group.create(vols_uri, ctx=self.ctx))
        with open_group(uri, "r", ctx=self.ctx) as grp:
            members = {m.name for m in grp}
            has_meta = "n_volumes" in grp.meta
        if {"obs", "volumes"} - members or not has_meta:
            with open_group(uri, "w", ctx=self.ctx) as grp:
                for child in ("obs", "volumes"):
                    if child not in members:
                        grp.add(child, name=child, relative=True)
                grp.meta["name"] = name
                if not has_meta:
                    grp.meta["n_volumes"] = 0

    def ensure_collection(self, name: str) -> str:
        """Create collection ``name`` (group, ``obs``, ``volumes``) if missing; return its URI.

        Each piece is checked separately, so a collection whose creation was interrupted
        (say, created but not yet registered) is completed rather than trusted.
        """
        if not name or "/" in name or name.startswith(("_", ".")):
            raise ValueError(f"invalid collection name {name!r}")
        uri = collection_uri(self.uri, name)
        if name in self._ensured:
            return uri
        self._create_collection_parts(uri, name)
        collections = join_uri(self.uri, "collections")
        with open_group(collections, "r", ctx=self.ctx) as grp:
            registered = {m.name for m in grp}
        if name not in registered:
            with open_group(collections, "w", ctx=self.ctx) as grp:
                grp.add(name, name=name, relative=True)
            with open_group(self.uri, "w", ctx=self.ctx) as grp:
                grp.meta["n_collections"] = len(registered) + 1
        self._ensured.add(name)
        return uri

    def declare_label_classes(self, name: str, classes: Sequence[str] | None) -> list[str] | None:
        """Record ``classes`` (names by class value) on label collection ``name``; returns the
        classes the collection declares afterwards (``None``: none declared, none given).

        Raises:
            ValueError: the collection already declares other classes.
        """

        uri = self.ensure_collection(name)
        with open_group(uri, "r", ctx=self.ctx) as grp:
            raw = grp.meta[LABEL_CLASSES_KEY] if LABEL_CLASSES_KEY in grp.meta else None
        declared = json.loads(str(raw)) if raw is not None else None
        if classes is None or declared == list(classes):
            return declared
        if declared is not None:
            raise ValueError(
                f"collection {name!r} of {self.uri!r} declares label classes {declared}, not {list(classes)}; "
                "ingest with the same classes (or none: the declared ones are used)"
            )
        with open_group(uri, "w", ctx=self.ctx) as grp:
            grp.meta[LABEL_CLASSES_KEY] = json.dumps(list(classes))
        return list(classes)

    def _create_once(self, uri: str, create: Any) -> None:
        """Create a group/array unless it exists; a folder left half-created by a killed
        writer (not a TileDB object) is removed first when no other writer is alive."""
        if self._object_type(uri) is not None:
            return
        try:
            create()
        except tiledb.TileDBError:
            if self._object_type(uri) is not None:
                return  # another writer created it meanwhile
            if not self._vfs.is_dir(uri) or self.lease.others_alive():
                raise
            self._vfs.remove_dir(uri)
            create()

    def existing_obs_ids(self, name: str, repair: bool = True) -> dict[str, str]:
        """``obs_id -> member name`` of the registered volumes of a collection.

        With ``repair`` (the default), a registered volume without its ``obs`` row (its
        writer was killed between the two) gets the row now, rebuilt from the volume's own
        metadata, and is listed in :attr:`repaired`: the caller counts it as present, which
        it then is, and does not write its voxels again.
        """
        col_uri = collection_uri(self.uri, name)
        uri = join_uri(col_uri, "volumes")
        if self._object_type(uri) != "group":
            return {}
        records, _ = registered_volumes(uri, name, ctx=self.ctx)
        out = {r.obs_id: r.member for r in records if r.obs_id is not None}
        if repair and records:
            obs_uri = join_uri(col_uri, "obs")
            have = set(read_dataframe(obs_uri, ctx=self.ctx)["obs_id"]) if self._object_type(obs_uri) else set()
            missing = [r for r in records if r.obs_id is not None and r.obs_id not in have and r.subject_id]
            if missing:
                write_rows(obs_uri, [r.obs_row() for r in missing], ctx=self.ctx)
                self.repaired.setdefault(name, []).extend(r.obs_id for r in missing)
        return out

    # -- volumes ------------------------------------------------------------------------
    def _claim_member(self, volumes_uri: str, schema: tiledb.ArraySchema) -> tuple[str, str]:
        """Create the array under the next free member name, claimed atomically first.

        TileDB's array creation is no claim: checked at 2.30, four processes creating one
        local array at once could all succeed, each adding its schema to the same folder (the
        loser then wrote its voxels against the winner's domain). So a local name is claimed
        by ``mkdir``, which exactly one process wins, and the array is created in that folder.
        Elsewhere (``s3://``) concurrent writers get distinct names from their driver
        (:meth:`_create_member`); a lone writer's create is checked as before. A folder left by
        a dead writer is reused once no other writer holds a lease.
        """
        with open_group(volumes_uri, "r", ctx=self.ctx) as grp:
            taken = {m.name for m in grp}
        i = len(taken)
        while True:
            name = str(i)
            i += 1
            if name in taken:
                continue
            uri = join_uri(volumes_uri, name)
            if self._vfs.is_dir(uri):
                if self.lease.others_alive():
                    continue  # perhaps another writer's volume in the making
                self._vfs.remove_dir(uri)  # left by an interrupted writer; never registered
            folder = local_path(uri)
            if folder is not None:
                try:
                    os.mkdir(folder)
                except FileExistsError:
                    continue  # another writer claimed it first
            try:
                tiledb.Array.create(uri, schema, ctx=self.ctx)
            except tiledb.TileDBError:
                if folder is None and self._vfs.is_dir(uri):
                    continue  # another writer claimed it first
                raise
            forget_array(uri)
            return name, uri

    def _create_member(self, volumes_uri: str, name: str, schema: tiledb.ArraySchema) -> tuple[str, str]:
        """Create the array under ``name``, a name the caller gave this writer alone.

        For concurrent writers on ``s3://``: there creating an array is no atomic claim (two
        writers racing for a name can both succeed), so a driver hands out distinct names
        (:mod:`radiobject_adapter.io.parallel_ingest`). An unregistered folder under the name is
        what a dead writer of the same name left, and is replaced.
        """
        uri = join_uri(volumes_uri, name)
        if self._vfs.is_dir(uri):
            with open_group(volumes_uri, "r", ctx=self.ctx) as grp:
                if name in {m.name for m in grp}:
                    raise FileExistsError(f"volume {name!r} of {volumes_uri!r} is registered already")
            self._vfs.remove_dir(uri)
        tiledb.Array.create(uri, schema, ctx=self.ctx)
        forget_array(uri)
        return name, uri

    def close(self) -> None:
        """Release this writer's lease (call when done; a killed writer's lease expires)."""
        self.lease.release()

    def write_volume(
        self,
        collection: str,
        subject_id: str,
        obs_id: str,
        data: np.ndarray,
        affine: np.ndarray,
        meta: Mapping[str, Any] | None = None,
        obs_row: Mapping[str, Any] | None = None,
        raw_meta: Mapping[str, Any] | None = None,
        timestamp: int | None = None,
        counters: bool = False,
        member: str | None = None,
    ) -> str:
        """Write one volume and register it; returns the array URI.

        The steps run in an order that any interruption leaves harmless: voxels + metadata
        (the row included), then group membership, then the ``obs`` row, the moment it becomes
        visible (a missing row is written by the next writer from the metadata, see
        :meth:`existing_obs_ids`). ``timestamp`` (ms) stamps the voxels
        and metadata (default: now), for callers whose metadata names the fragment's time.
        ``member``: the volume's name in its collection, handed out by a caller that runs
        concurrent writers (default: the next free name, claimed by creating the array).
        """
        col_uri = self.ensure_collection(collection)
        volumes_uri = join_uri(col_uri, "volumes")
        self.lease.refresh()
        data = np.ascontiguousarray(data)
        schema = create_volume_schema(data.shape, data.dtype, self.tiling, self.filters, ctx=self.ctx)
        if member is None:
            member, vol_uri = self._claim_member(volumes_uri, schema)
        else:
            member, vol_uri = self._create_member(volumes_uri, member, schema)
        array_meta = {
            "obs_id": obs_id,
            "obs_subject_id": subject_id,
            "collection": collection,
            "tile_orientation": self.tiling.orientation_label,
            "orientation_affine": affine_to_json(affine),
            **{k: str(v) for k, v in (meta or {}).items()},
            OBS_ROW_KEY: json.dumps(dict(obs_row or {}), default=_plain),
        }
        with tiledb.open(vol_uri, "w", timestamp=timestamp, ctx=self.ctx) as arr:
            arr[tuple(slice(0, n) for n in data.shape)] = data
            for key, value in array_meta.items():
                arr.meta[key] = str(value)
            for key, value in (raw_meta or {}).items():  # e.g. the foreground index (numpy)
                arr.meta[key] = value
        with open_group(volumes_uri, "w", ctx=self.ctx) as grp:
            grp.add(member, name=member, relative=True)
        if counters:  # single writes (a label, a prediction): counters before the commit point,
            self.update_counters([collection])  # so no kill leaves a visible volume uncounted
        row = {"obs_subject_id": subject_id, "obs_id": obs_id, **(obs_row or {})}
        write_rows(join_uri(col_uri, "obs"), [row], ctx=self.ctx)
        return vol_uri

    def update_counters(self, collections: Sequence[str]) -> None:
        """Refresh ``n_volumes`` / shared ``x|y|z_dim`` of collections and ``subject_count``."""
        subjects: set[str] = set()
        with open_group(join_uri(self.uri, "collections"), "r", ctx=self.ctx) as grp:
            all_names = [m.name for m in grp]
        for name in all_names:
            col_uri = collection_uri(self.uri, name)
            obs = read_dataframe(join_uri(col_uri, "obs"), ctx=self.ctx)
            subjects.update(obs["obs_subject_id"])
            if name not in collections:
                continue
            with open_group(join_uri(col_uri, "volumes"), "r", ctx=self.ctx) as grp:
                n = len(grp)
            dims = {d for d in obs.get("dimensions", []) if isinstance(d, str) and d}
            with open_group(col_uri, "r", ctx=self.ctx) as grp:
                stale = [k for k in ("x_dim", "y_dim", "z_dim") if k in grp.meta]
            with open_group(col_uri, "w", ctx=self.ctx) as grp:
                grp.meta["n_volumes"] = n
                if len(dims) == 1:
                    x, y, z = json.loads(dims.pop().replace("(", "[").replace(")", "]"))[:3]
                    grp.meta["x_dim"], grp.meta["y_dim"], grp.meta["z_dim"] = int(x), int(y), int(z)
                else:  # shapes differ: radiobject reads a shared shape only when these exist
                    for key in stale:
                        del grp.meta[key]
        with open_group(self.uri, "w", ctx=self.ctx) as grp:
            grp.meta["subject_count"] = len(subjects)
            grp.meta["n_collections"] = len(all_names)

    # -- subject table --------------------------------------------------------------------
    def subject_table_ids(self) -> list[str]:
        uri = join_uri(self.uri, "obs_meta")
        if self._object_type(uri) != "array":
            return []
        return list(read_dataframe(uri, ctx=self.ctx)["obs_subject_id"])

    def write_subject_rows(self, rows: Sequence[Mapping[str, Any]], columns: Mapping[str, Any]) -> None:
        """Write ``obs_meta`` rows (creating it with ``columns`` on first use)."""
        uri = join_uri(self.uri, "obs_meta")
        if self._object_type(uri) is None:
            create_dataframe(uri, columns, ctx=self.ctx)
        with open_group(self.uri, "r", ctx=self.ctx) as grp:
            registered = "obs_meta" in {m.name for m in grp}
        if not registered:  # also when a writer was killed between creating and registering it
            with open_group(self.uri, "w", ctx=self.ctx) as grp:
                grp.add("obs_meta", name="obs_meta", relative=True)
        else:
            with tiledb.open(uri, "r", ctx=self.ctx) as arr:
                have = {arr.schema.attr(i).name for i in range(arr.schema.nattr)}
            extra = set(columns) - have
            if extra:
                raise ValueError(
                    f"subject table of {self.uri!r} has columns {sorted(have)}; the new table adds "
                    f"{sorted(extra)}. Ingest into a new store or drop those columns"
                )
        write_rows(uri, [{"obs_id": r["obs_subject_id"], **r} for r in rows], ctx=self.ctx)
