"""Label volumes in a store: checked against their image, written as versions, indexed right.

The one home of what every label writer needs (NIfTI ingest, MONAI Label's saves, a bundle's
predictions written back):

* :func:`check_label_grid` / :func:`as_label_array`: a label lies on its image's grid and holds
  class indices (whole, non-negative numbers that fit the stored type); :class:`LabelError`
  otherwise, before anything is written.
* :func:`write_label`: the first version of a subject's label is a new array whose voxels,
  metadata, foreground index and record are written before it is registered; every later one
  is a new fragment (:func:`~radiobject_adapter.store.label_versions.write_version`: two writes
  no kill can tear, the older versions stay readable by time travel).
* :func:`ensure_foreground_index`: the invariant "the foreground index a reader uses describes
  the voxels it reads (the newest fragment)": an index is written with the voxels, removed
  before a new version is written, and rebuilt by a reader that finds none or a stale one.

Example:
    >>> data = as_label_array(mask, where=" of case_001")
    >>> radi = RadiObject("store")
    >>> written = write_label(radi.uri, "seg", "case_001", data, image.affine,
    ...                       uri=find_label(radi, "seg", "case_001"),
    ...                       record={"tag": "final", "annotator": "ann1", "source": "slicer"})
    >>> written.version in [v.version for v in list_versions(written.uri)]
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tiledb

from radiobject_adapter.config import ctx_for_threads, forget_array
from radiobject_adapter.errors import LabelError
from radiobject_adapter.store.foreground import DEFAULT_MAX_PER_CLASS, FRAGMENT_KEY, ForegroundIndex
from radiobject_adapter.store.label_versions import next_timestamp, record_metadata, write_version
from radiobject_adapter.store.layout import Tiling, affine_to_json, make_obs_id, obs_row
from radiobject_adapter.store.lease import WriterLease
from radiobject_adapter.store.writer import StoreWriter

__all__ = [
    "LabelError",
    "WrittenLabel",
    "as_label_array",
    "check_label_grid",
    "ensure_foreground_index",
    "find_label",
    "index_collection",
    "label_dtype_for",
    "write_label",
]


def label_dtype_for(top: int) -> np.dtype:
    """Smallest unsigned dtype for class indices up to ``top`` (``int32`` beyond ``uint16``)."""
    if top < 256:
        return np.dtype(np.uint8)
    if top < 65536:
        return np.dtype(np.uint16)
    return np.dtype(np.int32)


def check_label_grid(
    label_shape: Sequence[int],
    label_affine: np.ndarray,
    image_shape: Sequence[int],
    image_affine: np.ndarray,
    atol: float = 1e-3,
    where: str = "",
    hint: str = "",
) -> None:
    """Raise :class:`LabelError` unless the label has the image's shape and (within ``atol``
    mm) its affine. ``where`` names the label/image in the message (e.g. ``" for image 'x'"``),
    ``hint`` is added to the shape message (how the caller's user exports on the image grid)."""
    shape, expected = tuple(int(s) for s in label_shape), tuple(int(s) for s in image_shape)
    if shape != expected:
        raise LabelError(
            f"label shape {shape} != image shape {expected}{where}; export the label on the image grid{hint}"
        )
    diff = float(np.abs(np.asarray(label_affine, np.float64) - np.asarray(image_affine, np.float64)).max())
    if diff > atol:
        raise LabelError(
            f"label affine differs from the image affine by up to {diff:.4g} mm (> {atol}){where}; "
            "the label was drawn on another grid: resample it onto the image"
        )


def as_label_array(
    data: np.ndarray,
    dtype: np.dtype | type | None = None,
    max_label: int | None = None,
    smallest: bool = False,
    where: str = "",
) -> np.ndarray:
    """``data`` as a class-index map, or :class:`LabelError` saying what is wrong.

    Args:
        dtype: the stored type to cast to (an existing label's); the values must fit.
        max_label: the largest class the collection declares (``--label-classes``/``--max-label``).
        smallest: cast to :func:`label_dtype_for` its largest value (when ``dtype`` is None);
            otherwise an integer label keeps its type and a float one gets the smallest.
        where: names the label in messages, e.g. ``" case_001_seg.nii.gz"`` or ``" for image 'x'"``.
    """
    data = np.asanyarray(data)
    if data.dtype.kind == "f":
        if not np.isfinite(data).all():
            raise LabelError(f"the label{where} has NaN or infinite values; labels are class indices")
        if not np.array_equal(data, np.round(data)):
            raise LabelError(f"the label{where} has non-integer values; labels must be class indices")
    elif data.dtype.kind not in "iub":
        raise LabelError(f"the label{where} has voxel type {data.dtype}; labels are integer class indices")
    if data.size and float(data.min()) < 0:
        raise LabelError(f"the label{where} has negative values; labels must be class indices >= 0")
    top = int(data.max()) if data.size else 0
    if max_label is not None and top > max_label:
        found = sorted(int(v) for v in np.unique(data) if v > max_label)[:10]
        raise LabelError(f"the label{where} has classes {found} beyond the declared maximum {max_label}")
    if dtype is not None:
        target = np.dtype(dtype)
    elif smallest or data.dtype.kind == "f":
        target = label_dtype_for(top)
    else:
        return data
    if top > np.iinfo(target).max:
        raise LabelError(
            f"the label{where} has class {top}, more than the stored labels' type {target} holds "
            f"(max {np.iinfo(target).max})"
        )
    return np.ascontiguousarray(data.astype(target, copy=False))


def find_label(radi: Any, collection: str, subject_id: str) -> str | None:
    """The array URI of the subject's label in ``collection`` of the store ``radi`` (a
    :class:`~radiobject_adapter.store.radiobject.RadiObject`), or ``None``.

    A first write killed between registering its array and writing its ``obs`` row (hidden
    from listings; voxels, record and index whole) is finished here, the row written from the
    array's metadata, so the next write becomes its next version instead of a second array.
    (``radi`` is passed in: this module sits below the object model, which ingest imports.)
    """
    if collection not in radi.collection_names:
        return None
    coll = radi.collection(collection)
    volume = coll.get(subject_id)
    if volume is None and make_obs_id(subject_id, collection) in coll.pending:
        writer = StoreWriter(radi.uri)
        try:
            writer.existing_obs_ids(collection)  # writes the missing rows
            writer.update_counters([collection])
        finally:
            writer.close()
        volume = coll.refresh().get(subject_id)
    return volume.uri if volume is not None else None


@dataclass(frozen=True)
class WrittenLabel:
    """Where a label version went: the label array and the version's timestamp (ms)."""

    uri: str
    version: int
    created: bool


def write_label(
    store: str,
    collection: str,
    subject_id: str,
    data: np.ndarray,
    affine: np.ndarray,
    *,
    uri: str | None = None,
    record: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
    version_meta: Mapping[str, Any] | None = None,
    source_path: str = "",
    tiling: Tiling | None = None,
) -> WrittenLabel:
    """Write ``data`` (a checked label, see :func:`as_label_array`) as the newest version of
    the subject's label in ``collection``; the caller serialises writes of one label.

    Args:
        uri: the subject's label array (:func:`find_label`); ``None``: the subject has none yet.
        record: who/when/how of this version (``tag``, ``annotator``, ``source``, ``info``),
            listed by :func:`~radiobject_adapter.store.label_versions.list_versions`.
        meta: metadata of a new label array (with ``source_path``), e.g. the image's NIfTI facts.
        version_meta: metadata written with every version's voxels (e.g. which model predicted it).
        source_path: the ``source_path`` of a new array's ``obs`` row.
        tiling: tiling of a new array (default: the store writer's).

    Raises:
        LabelError: the subject's label array has another shape than ``data``.
    """
    data = np.ascontiguousarray(data)
    affine = np.asarray(affine, dtype=np.float64)
    if uri is not None:
        with tiledb.open(uri, "r", ctx=ctx_for_threads()) as arr:
            shape = tuple(arr.schema.shape)
        if shape != data.shape:
            raise LabelError(
                f"{collection!r} of {store!r} already holds a label of shape {shape} for {subject_id!r}, "
                f"this one has {data.shape}; write it into another collection"
            )
        # a reader opening the store meanwhile must not take this write's metadata file, empty
        # for an instant, for a killed writer's (RadiObject cleans those up when no writer lives)
        lease = WriterLease(store, tiledb.VFS(ctx=ctx_for_threads()))
        lease.refresh()
        try:
            extra = {"orientation_affine": affine_to_json(affine), **dict(version_meta or {})}
            return WrittenLabel(uri, write_version(uri, data, record, extra), created=False)
        finally:
            lease.release()
    version = next_timestamp(0)
    raw_meta = ForegroundIndex.compute(data).to_metadata()
    if record is not None:
        raw_meta.update(record_metadata(version, record))
    writer = StoreWriter(store, tiling=tiling) if tiling is not None else StoreWriter(store)
    try:
        new_uri = writer.write_volume(
            collection,
            subject_id,
            make_obs_id(subject_id, collection),
            data,
            affine,
            meta={"source_path": source_path, **dict(meta or {}), **dict(version_meta or {})},
            obs_row=obs_row(collection, data.shape, affine, source_path),
            raw_meta=raw_meta,
            timestamp=version,
            counters=True,
        )
    finally:
        writer.close()
    return WrittenLabel(new_uri, version, created=True)


def ensure_foreground_index(
    volume: Any, max_per_class: int = DEFAULT_MAX_PER_CLASS, persist: bool = True
) -> ForegroundIndex:
    """The volume's index; built from one full read when missing (stores made before the
    index existed, or a label save killed before its index was written), and written back to
    the array's metadata when ``persist`` and writable.

    An index built here records the fragment it was computed from. If another process saved a
    newer version of the label meanwhile (and this write landed after that version's own
    index), the recorded fragment is no longer the newest one: the index is then ignored and
    built again from the voxels readers actually get, never used for another version's voxels.
    """
    meta = volume.metadata
    index = ForegroundIndex.from_metadata(meta)
    if index is not None and FRAGMENT_KEY not in meta:
        return index  # written with the voxels (ingest, a label save): always theirs
    at = volume.newest_fragment_timestamp()
    if index is not None and int(meta[FRAGMENT_KEY]) == at:
        return index
    if at is None:  # nothing written yet: the fill value everywhere
        data = volume.to_numpy()
    else:
        with tiledb.open(volume.uri, "r", timestamp=at, ctx=ctx_for_threads()) as arr:
            data = arr.query(attrs=(arr.schema.attr(0).name,))[tuple(slice(0, n) for n in arr.schema.shape)]
            data = data[arr.schema.attr(0).name] if isinstance(data, dict) else data
    index = ForegroundIndex.compute(data, max_per_class)
    entries = index.to_metadata(fragment_ts=at)
    if persist:
        try:
            with tiledb.open(volume.uri, "w", ctx=ctx_for_threads()) as arr:
                for key, value in entries.items():
                    arr.meta[key] = value
            forget_array(volume.uri)
        except tiledb.TileDBError:
            pass  # read-only store: keep the index in memory for this process
    volume.remember_metadata(entries)
    return index


def index_collection(collection: Any, progress: bool = True) -> int:
    """Build (and store) the foreground index of every label volume lacking one.

    Returns the number of volumes indexed now. Used by ``radiobundles index-foreground``
    for stores written before the index existed.
    """
    from tqdm.auto import tqdm

    done = 0
    for vol in tqdm(list(collection), desc=f"index {collection.name}", unit="vol", disable=not progress):
        if ForegroundIndex.from_metadata(vol.metadata) is None:
            ensure_foreground_index(vol)
            done += 1
    return done
