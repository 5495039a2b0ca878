"""Building stores from arrays and files with radiobject's calls.

``Volume.from_numpy`` / ``create`` / ``from_nifti``, ``VolumeCollection.from_niftis`` /
``_from_volumes``, ``RadiObject.from_collections`` / ``from_images`` / ``append`` and the
older ``from_niftis`` forms all end here, and all write through
:class:`~radiobject_adapter.store.writer.StoreWriter`'s steps: voxels and metadata first,
then the group membership that makes a volume visible, under a writer lease, so a killed
build leaves nothing half-visible and can be re-run.

Example:
    >>> vol = Volume.from_numpy("vol0", np.zeros((64, 64, 32), np.int16))
    >>> ct = VolumeCollection.from_niftis("ct", niftis=[("a.nii.gz", "sub-01")], name="CT")
    >>> radi = RadiObject.from_collections("store", {"CT": ct})
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import tiledb

from radiobject_adapter.config import ctx_for_threads, current_settings, forget_array, open_group
from radiobject_adapter.store.layout import (
    Tiling,
    affine_to_json,
    compression_filters,
    create_volume_schema,
    join_uri,
    make_obs_id,
    obs_row,
)
from radiobject_adapter.store.naming import discover_files, strip_suffix, subject_id_from_path
from radiobject_adapter.store.writer import StoreWriter

__all__ = [
    "SERIES_TYPES",
    "CollectionWriter",
    "append_niftis",
    "copy_collections",
    "infer_series_type",
    "ingest_nifti_forms",
    "niftis_to_images",
    "write_volume_array",
]

# BIDS suffixes and scanner names radiobject groups files by (its ``infer_series_type`` and
# ``KNOWN_SERIES_TYPES``): a file's last ``_`` part is matched against SERIES_TYPES first.
SERIES_TYPES = (
    *("T1w", "T2w", "T1rho", "T1map", "T2map", "T2star", "FLAIR", "FLASH", "PD", "PDmap", "PDT2"),
    *("inplaneT1", "inplaneT2", "angio", "T1gd", "bold", "cbv", "phase", "dwi", "CT", "HRCT", "CTA"),
    *("CTPA", "phasediff", "magnitude", "fieldmap", "epi", "asl", "m0scan", "PET", "seg", "mask", "label"),
)
# Name fragments (upper case), most specific first: T1GD before T1, MSD task names are CT.
_PATTERNS = (
    *(("T1GD", "T1gd"), ("T1CE", "T1gd"), ("T1C", "T1gd"), ("T1", "T1w"), ("T2", "T2w")),
    *(("FLAIR", "FLAIR"), ("DWI", "dwi"), ("DTI", "dwi"), ("BOLD", "bold"), ("FUNC", "bold")),
    *(("LUNG_", "CT"), ("LIVER_", "CT"), ("COLON_", "CT"), ("PANCREAS_", "CT"), ("SPLEEN_", "CT")),
    *(("HEPATIC", "CT"), ("_CT_", "CT"), ("_CT.", "CT")),
)


def infer_series_type(path: str | os.PathLike) -> str:
    """The collection a file belongs to from its name: a BIDS suffix (``sub-01_T1w.nii.gz``
    -> ``T1w``), else a known pattern (``T1_MPRAGE`` -> ``T1w``).

    Raises:
        ValueError: the name says nothing; give ``collection_name`` or ``images={...}``.
    """
    name = os.path.basename(os.fspath(path))
    stem = strip_suffix(name)
    suffix = stem.split("_")[-1]
    for known in SERIES_TYPES:
        if known.lower() == suffix.lower():
            return known
    upper = name.upper()
    for pattern, series in _PATTERNS:
        if pattern in upper:
            return series
    raise ValueError(
        f"cannot tell the collection of {name!r} from its name; pass collection_name=... "
        "or images={'<collection>': [...]}"
    )


def niftis_to_images(
    images: Mapping[str, Any] | None = None,
    niftis: Sequence[tuple[str | os.PathLike, str]] | None = None,
    image_dir: str | os.PathLike | None = None,
    collection_name: str | None = None,
) -> dict[str, Any]:
    """radiobject's input forms as one ``{collection: files}`` mapping for :func:`ingest_niftis`.

    ``images`` (ours and radiobject's), or ``niftis=[(path, subject_id), ...]``, or
    ``image_dir=...``; without ``collection_name`` files are grouped by
    :func:`infer_series_type`.

    Example:
        >>> niftis_to_images(niftis=[("a/sub-01_T1w.nii.gz", "sub-01")])
        {'T1w': [('a/sub-01_T1w.nii.gz', 'sub-01')]}
    """
    if images is not None:
        if niftis is not None or image_dir is not None or collection_name is not None:
            raise ValueError("Cannot use 'images' with legacy niftis= / image_dir= / collection_name=; give one form")
        if not images:
            raise ValueError("images dict cannot be empty; pass e.g. images={'CT': 'imagesTr/'}")
        return dict(images)
    if niftis is not None and image_dir is not None:
        raise ValueError("Cannot specify both niftis= and image_dir=; give one")
    if image_dir is not None:
        niftis = [(p, subject_id_from_path(p)) for p in discover_files(image_dir)]
    if niftis is None:
        raise ValueError("Must specify images={collection: files}, niftis=[(path, subject_id), ...] or image_dir=...")
    pairs = [(os.fspath(p), str(s)) for p, s in niftis]
    if not pairs:
        raise ValueError("No NIfTI files found: niftis is empty; give [(path, subject_id), ...]")
    if collection_name:
        return {collection_name: pairs}
    grouped: dict[str, list[tuple[str, str]]] = {}
    for path, sid in pairs:
        grouped.setdefault(infer_series_type(path), []).append((path, sid))
    return grouped


def ingest_nifti_forms(uri: str, images: Mapping[str, Any] | None, kwargs: dict[str, Any]) -> Any:
    """``RadiObject.from_niftis``'s body: the older forms, radiobject-only options, then ingest."""
    from radiobject_adapter.io.ingest import ingest_niftis

    images = niftis_to_images(
        images, kwargs.pop("niftis", None), kwargs.pop("image_dir", None), kwargs.pop("collection_name", None)
    )
    if kwargs.pop("reorient", None):
        raise ValueError("reorient=True is not supported: volumes are stored as given, with their affine")
    if kwargs.pop("validate_alignment", False):
        _check_alignment(images)
    if isinstance(kwargs.get("obs_meta"), pd.DataFrame) and "obs_subject_id" in kwargs["obs_meta"].columns:
        _check_subjects_in_table(images, kwargs["obs_meta"])
    return ingest_niftis(uri, images, **{"progress": False, **kwargs})


def _check_subjects_in_table(images: Mapping[str, Any], obs_meta: pd.DataFrame) -> None:
    """radiobject's foreign-key rule: every subject of ``images`` has a row in ``obs_meta``."""
    from radiobject_adapter.io.ingest import _files_and_subjects

    given = {sid for spec in images.values() for _, sid in _files_and_subjects(spec, None)}
    missing = sorted(given - set(obs_meta["obs_subject_id"].astype(str)))
    if missing:
        raise ValueError(
            f"obs_subject_ids {missing[:5]} not found in obs_meta; add a row for each subject of the images"
        )


def _check_alignment(images: Mapping[str, Any]) -> None:
    from radiobject_adapter.io.ingest import _files_and_subjects

    sets = {name: {s for _, s in _files_and_subjects(spec, None)} for name, spec in images.items()}
    first, ids = next(iter(sets.items()))
    for name, other in sets.items():
        if other != ids:
            raise ValueError(
                f"Subject ID mismatch: subjects differ between {first!r} and {name!r}: only in {first!r}: {sorted(ids - other)[:3]}, "
                f"only in {name!r}: {sorted(other - ids)[:3]}"
            )


def load_for_build(path: str, reorient: bool | None = None) -> Any:
    """A NIfTI file loaded whole (3D or 4D); ``reorient=True`` turns it to the closest
    canonical (RAS+) orientation with nibabel, voxels and affine together."""
    import nibabel as nib

    from radiobject_adapter.io.nifti import LoadedVolume, load_nifti

    loaded = load_nifti(str(path), expect_ndim=None)
    if loaded.data.ndim not in (3, 4):
        raise ValueError(f"{path}: expected a 3D or 4D image, got shape {loaded.data.shape}")
    if not reorient:
        return loaded
    img = nib.as_closest_canonical(nib.Nifti1Image(loaded.data, loaded.affine, loaded.header))
    data = np.ascontiguousarray(np.asanyarray(img.dataobj))
    return LoadedVolume(path=loaded.path, data=data, affine=np.array(img.affine, dtype=np.float64), header=img.header)


# -- single arrays ---------------------------------------------------------------------------
def builder_tiling() -> Tiling:
    """Tiling of arrays built with radiobject's calls: ``configure(tile=TileConfig(...))``,
    else axial (radiobject's default; ingest's default is isotropic)."""
    tile = current_settings().write.tile
    return tile.tiling() if tile is not None else Tiling("axial")


def write_volume_array(
    uri: str,
    data: np.ndarray | None,
    shape: Sequence[int] | None = None,
    dtype: Any = None,
    affine: np.ndarray | None = None,
    meta: Mapping[str, Any] | None = None,
    ctx: tiledb.Ctx | None = None,
) -> str:
    """Create one volume array at ``uri`` (tiling and compression from :func:`configure`)
    and write ``data`` (or leave it empty with ``shape``/``dtype``), then its metadata.

    Raises:
        FileExistsError: ``uri`` already holds something.
    """
    ctx = ctx or ctx_for_threads()
    if data is not None:
        data = np.ascontiguousarray(data)
        shape, dtype = data.shape, data.dtype
    shape = tuple(int(n) for n in shape or ())
    if len(shape) not in (3, 4) or min(shape) < 1:
        raise ValueError(f"a volume is 3D or 4D with positive sizes, got shape {shape}")
    if tiledb.object_type(uri, ctx=ctx) is not None or tiledb.VFS(ctx=ctx).is_dir(uri):
        raise FileExistsError(f"{uri!r} exists; choose a new location for the volume")
    settings = current_settings().write
    filters = compression_filters(settings.compression, settings.compression_level)
    tiling = builder_tiling()
    tiledb.Array.create(uri, create_volume_schema(shape, np.dtype(dtype), tiling, filters, ctx=ctx), ctx=ctx)
    with tiledb.open(uri, "w", ctx=ctx) as arr:
        if data is not None:
            arr[tuple(slice(0, n) for n in shape)] = data
        arr.meta["tile_orientation"] = tiling.orientation_label
        if affine is not None:
            arr.meta["orientation_affine"] = affine_to_json(np.asarray(affine, dtype=np.float64))
        for key, value in (meta or {}).items():
            arr.meta[key] = str(value)
    forget_array(uri)
    return uri


def set_volume_metadata(uri: str, values: Mapping[str, Any], ctx: tiledb.Ctx | None = None) -> None:
    """Write array metadata (strings) of an existing volume."""
    with tiledb.open(uri, "w", ctx=ctx or ctx_for_threads()) as arr:
        for key, value in values.items():
            arr.meta[key] = str(value)
    forget_array(uri)


# -- collections --------------------------------------------------------------------------------
class CollectionWriter(StoreWriter):
    """A :class:`StoreWriter` whose target is one collection at ``uri`` (radiobject's
    stand-alone ``VolumeCollection``), not a store: same steps, lease and recovery."""

    def _ensure_root(self) -> None:  # no store group: the collection is the root
        vfs = self._vfs
        if tiledb.object_type(self.uri, ctx=self.ctx) is None and vfs.is_dir(self.uri) and vfs.ls(self.uri):
            raise FileExistsError(f"{self.uri!r} exists and is not a collection; choose a new location")

    def ensure_collection(self, name: str) -> str:
        # the collection is the root: its parts, no registration in a store
        if name not in self._ensured:
            self._create_collection_parts(self.uri, name)
            self._ensured.add(name)
        return self.uri

    def count(self) -> None:
        """Refresh ``n_volumes`` and the shared ``x|y|z_dim`` (as :meth:`update_counters`)."""
        with open_group(join_uri(self.uri, "volumes"), "r", ctx=self.ctx) as grp:
            uris = [m.uri for m in grp]
        shapes = set()
        for member in uris:
            dom = tiledb.ArraySchema.load(member, ctx=self.ctx).domain
            shapes.add(tuple(int(dom.dim(i).domain[1]) + 1 for i in range(min(3, dom.ndim))))
        with open_group(self.uri, "w", ctx=self.ctx) as grp:
            grp.meta["n_volumes"] = len(uris)
            if len(shapes) == 1:
                grp.meta["x_dim"], grp.meta["y_dim"], grp.meta["z_dim"] = shapes.pop()


def _volume_source(vol: Any) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """Voxels, affine and metadata (strings, without the ids) of a volume to copy."""
    meta = {k: str(v) for k, v in vol.metadata.items() if isinstance(v, str) or np.isscalar(v)}
    for key in ("obs_id", "obs_subject_id", "collection", "orientation_affine", "tile_orientation"):
        meta.pop(key, None)
    return vol.to_numpy(), vol.affine, meta


def write_collection(
    writer: StoreWriter,
    name: str,
    volumes: Sequence[tuple[str, Any]],
    subject_of: Mapping[str, str],
    obs_rows: Mapping[str, Mapping[str, Any]] | None = None,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> list[str]:
    """Copy ``(obs_id, Volume)`` pairs into collection ``name`` of ``writer``'s target, each
    volume's voxels through ``transform`` if given; volumes already there (same obs_id) are
    skipped, so a re-run completes an interrupted copy."""
    present = writer.existing_obs_ids(name) if not isinstance(writer, CollectionWriter) else _present(writer)
    if obs_rows:  # user columns (age, diagnosis...) become obs columns, never dropped
        from radiobject_adapter.store.dataframe import add_columns, column_dtype

        table = pd.DataFrame(list(obs_rows.values()))
        extra = [c for c in table.columns if c not in ("obs_id", "obs_subject_id")]
        obs_uri = join_uri(writer.ensure_collection(name), "obs")
        add_columns(obs_uri, {c: column_dtype(table[c]) for c in extra}, ctx=writer.ctx)
    written = []
    for obs_id, vol in volumes:
        if obs_id in present:
            continue
        data, affine, meta = _volume_source(vol)
        if transform is not None:
            data = np.ascontiguousarray(transform(data))
        copied = {k: v for k, v in (obs_rows or {}).get(obs_id, {}).items() if k not in ("obs_id", "obs_subject_id")}
        row = {**obs_row(name, data.shape), **copied}  # the source's row wins, as copied
        writer.write_volume(name, subject_of[obs_id], obs_id, data, affine, meta=meta, obs_row=row)
        written.append(obs_id)
    return written


def _present(writer: CollectionWriter) -> set[str]:
    uri = join_uri(writer.uri, "volumes")
    if tiledb.object_type(uri, ctx=writer.ctx) != "group":
        return set()
    found = set()
    with open_group(uri, "r", ctx=writer.ctx) as grp:
        members = [m.uri for m in grp]
    for member in members:
        with tiledb.open(member, "r", ctx=writer.ctx) as arr:
            if "obs_id" in arr.meta:
                found.add(str(arr.meta["obs_id"]))
    return found


def subjects_of(volumes: Sequence[tuple[str, Any]], obs_data: pd.DataFrame | None) -> dict[str, str]:
    """``obs_id -> subject``: from ``obs_data`` (``obs_id``, ``obs_subject_id`` columns), else
    the volume's own ``obs_subject_id``, else the obs_id itself (radiobject's default)."""
    table = {}
    if obs_data is not None and {"obs_id", "obs_subject_id"} <= set(obs_data.columns):
        table = dict(zip(obs_data["obs_id"].astype(str), obs_data["obs_subject_id"].astype(str)))
    return {o: table.get(o) or (v.subject_id if v.subject_id else o) for o, v in volumes}


def copy_collections(
    uri: str,
    collections: Mapping[str, Any],
    obs_meta: pd.DataFrame | None = None,
    ctx: tiledb.Ctx | None = None,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> None:
    """Write a store at ``uri`` holding a copy of each opened ``VolumeCollection`` (``{name:
    collection}``; a restricted collection copies its volumes only), voxels through
    ``transform`` if given, and the subject table ``obs_meta`` (default: the collections' subjects).

    Takes collections, not URIs, so that this writer never imports the object model (which
    imports it): ``RadiObject.from_collections`` opens URIs first."""
    from radiobject_adapter.io.ingest import _write_subject_table, load_subject_table

    if not collections:
        raise ValueError(
            "At least one VolumeCollection is required. At least one collection must be given, e.g. {'CT': ct}"
        )
    writer = StoreWriter(uri, ctx=ctx)
    subjects: set[str] = set()
    try:
        for name, col in collections.items():
            vols = [(o, col.loc[o]) for o in col.obs_ids]
            obs = col.obs
            rows = {str(r["obs_id"]): dict(r) for r in obs.to_dict("records")}
            subject_of = dict(zip(col.obs_ids, col.subject_ids))
            write_collection(writer, name, vols, subject_of, rows, transform)
            subjects.update(subject_of.values())
    finally:
        writer.close()
    writer.update_counters(list(collections))
    table = None
    if obs_meta is not None:
        table = load_subject_table(obs_meta)
        unknown = sorted(subjects - set(table.index))
        if unknown:
            raise ValueError(f"obs_meta lacks subjects of the collections: {unknown[:5]}")
        subjects |= set(table.index)
    _write_subject_table(writer, sorted(subjects), table)


def append_niftis(
    collection: Any, niftis: Sequence[tuple[str | os.PathLike, str]], reorient: bool | None = None
) -> list[str]:
    """Add ``[(nifti_path, subject_id), ...]`` to an existing collection (radiobject's
    ``VolumeCollection.append``): every file is read and checked (exists, shape of a uniform
    collection, obs_id not taken) before anything is written. Returns the new obs_ids."""
    pairs = [(os.fspath(p), str(s)) for p, s in niftis]
    for path, sid in pairs:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no such NIfTI file: {path!r} (subject {sid!r})")
    loaded = [load_for_build(p, reorient) for p, _ in pairs]
    shape = collection.shape
    for (path, _), vol in zip(pairs, loaded):
        if shape is not None and len(collection) and tuple(vol.data.shape[:3]) != tuple(shape):
            raise ValueError(
                f"Dimension mismatch: {path} has shape {vol.data.shape[:3]}, the collection's volumes {shape}"
            )
    name = collection.name
    obs_ids = [make_obs_id(sid, name) for _, sid in pairs]
    taken = sorted(set(obs_ids) & set(collection.refresh().obs_ids)) + sorted(
        {o for o in obs_ids if obs_ids.count(o) > 1}
    )
    if taken:
        raise ValueError(f"obs_id(s) already exist in collection {name!r}: {taken[:5]}")
    root, _, member = collection.uri.rpartition("/collections/")
    in_store = bool(root) and member == name and tiledb.object_type(root, ctx=collection._effective_ctx()) == "group"
    writer = StoreWriter(root, ctx=collection.ctx) if in_store else CollectionWriter(collection.uri, ctx=collection.ctx)
    try:
        for (_, sid), obs_id, vol in zip(pairs, obs_ids, loaded):
            writer.write_volume(
                name, sid, obs_id, vol.data, vol.affine, meta=vol.array_metadata(), obs_row=vol.obs_row(name)
            )
    finally:
        writer.close()
    if in_store:
        writer.update_counters([name])
    else:
        writer.count()
    collection.refresh()
    return obs_ids


def check_append_subjects(radi: Any, images: Mapping[str, Any], obs_meta: pd.DataFrame | None) -> None:
    """radiobject's rule for ``RadiObject.append``: subjects new to the store need a row in
    ``obs_meta`` (an ``obs_subject_id`` column); raises ``ValueError`` naming them otherwise."""
    from radiobject_adapter.io.ingest import _files_and_subjects

    given = {sid for spec in images.values() for _, sid in _files_and_subjects(spec, None)}
    new = sorted(given - set(radi.obs_subject_ids))
    if obs_meta is not None and "obs_subject_id" not in obs_meta.columns:
        raise ValueError(f"obs_meta must contain an obs_subject_id column; columns: {list(obs_meta.columns)}")
    if not new:
        return
    if obs_meta is None:
        raise ValueError(f"obs_meta required for new subjects: {new[:5]}; pass obs_meta=DataFrame(obs_subject_id=...)")
    missing = sorted(set(new) - set(obs_meta["obs_subject_id"].astype(str)))
    if missing:
        raise ValueError(f"obs_meta has missing entries for new subjects: {missing[:5]}")
