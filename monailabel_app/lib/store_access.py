"""Images and versioned labels of one store, as the datastore needs them.

* images: the subjects of one collection (``CT`` by default); an image id is a subject id;
* labels: one collection per MONAI Label tag, ``seg`` for ``final`` (ground truth already in
  the store counts as final) and ``seg_<tag>`` for any other tag (``seg_original``); one label
  array per subject, each save a new version (see :mod:`.versions`).

Listings are cached for ``listing_ttl`` seconds and refreshed after this process writes;
ids are checked before they reach the store, so ``../x`` or an unknown id never touches it.

Example:
    >>> access = StoreAccess("/data/ct_store")
    >>> access.image_ids()[:2], access.label_uri("case_000", "final")
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
import time
from collections.abc import Iterator

import numpy as np
import tiledb

from monailabel_app.lib.errors import ImageNotFound, InvalidRequest, LabelNotFound
from monailabel_app.lib.versions import (
    LabelVersion,
    list_versions,
    next_timestamp,
    read_version,
    record_metadata,
    write_version,
)
from radiobject_adapter import RadiObject, Volume
from radiobject_adapter.config import ctx_for_threads
from radiobject_adapter.store.foreground import ForegroundIndex
from radiobject_adapter.store.layout import Tiling, affine_to_json, make_obs_id, obs_row
from radiobject_adapter.store.lease import WriterLease
from radiobject_adapter.store.writer import StoreWriter

__all__ = ["FINAL_TAG", "StoreAccess", "check_image_id", "check_tag", "file_name"]

FINAL_TAG = "final"
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
# NIfTI facts of the image that its labels share (so a label converts back to the same header)
_SHARED_META = ("nifti_sform_code", "nifti_qform_code", "nifti_xyzt_units", "orientation_axcodes", "orientation_source")


def check_image_id(image_id: object) -> str:
    """``image_id`` if it can be a subject id; raises :class:`InvalidRequest` (HTTP 400) otherwise.

    Any name 3D Slicer gives a volume node is an id, ``/`` included (DICOM series descriptions
    such as ``3: CT ABDOMEN W/CONTRAST``): ids name subjects, never files (arrays are stored
    under numbered members, cached files under a sanitised name, :func:`file_name`). What could
    pass for a path out of the store is refused: a leading ``/``, a ``..`` segment, ``\\`` and
    control characters.
    """
    if (
        not isinstance(image_id, str)
        or not image_id.strip()
        or len(image_id) > 255
        or image_id.startswith("/")
        or "\\" in image_id
        or ".." in image_id.split("/")
        or any(ord(c) < 32 for c in image_id)
    ):
        raise InvalidRequest(
            f"invalid image id {image_id!r}: an image id is a subject id of the store (any name, '/' included), "
            "without a leading '/', '..' segments, '\\' or control characters"
        )
    return image_id


def file_name(image_id: str, ext: str = ".nii.gz") -> str:
    """A file name for an image id, safe on every client (Slicer saves downloads under it).

    Example:
        >>> file_name("3: CT ABDOMEN W/CONTRAST")
        '3_ CT ABDOMEN W_CONTRAST-a024976a.nii.gz'
    """
    safe = re.sub(r"[^A-Za-z0-9 ._()+,=-]", "_", image_id).strip(" .") or "image"
    if safe != image_id:  # two ids that sanitise alike still get two names
        safe = f"{safe}-{hashlib.sha1(image_id.encode()).hexdigest()[:8]}"
    return f"{safe}{ext}"


def check_tag(tag: object) -> str:
    """A label tag: letters, digits, ``_`` and ``-`` (at most 64)."""
    if not isinstance(tag, str) or not _TAG.match(tag):
        raise InvalidRequest(f"invalid label tag {tag!r}: use letters, digits, '_' or '-', e.g. 'final' or 'original'")
    return tag


class StoreAccess:
    """Image listing and versioned label writes over one store.

    Args:
        uri: the store.
        image_collection: collection whose subjects are the images.
        label_collection: collection of ``final`` labels; other tags use ``<label_collection>_<tag>``.
        listing_ttl: seconds a collection listing is trusted before it is read again.
    """

    def __init__(
        self, uri: str, image_collection: str = "CT", label_collection: str = "seg", listing_ttl: float = 5.0
    ) -> None:
        self.radi = RadiObject(uri)
        self.uri = self.radi.uri
        if image_collection not in self.radi.collection_names:
            raise ValueError(
                f"store {self.uri!r} has no image collection {image_collection!r} (collections: "
                f"{list(self.radi.collection_names)}); pass --conf image_collection <name>"
            )
        self.image_collection = image_collection
        self.label_collection = label_collection
        self.listing_ttl = listing_ttl
        self._listings: dict[str, tuple[float, dict[str, str]]] = {}
        self._lock = threading.RLock()
        self._lease: WriterLease | None = None

    # -- listings -----------------------------------------------------------------------
    def _listing(self, collection: str, fresh: bool = False) -> dict[str, str]:
        """``subject id -> array URI`` of a collection (empty if the collection does not exist)."""
        with self._lock:
            hit = self._listings.get(collection)
            if hit is not None and not fresh and time.monotonic() - hit[0] < self.listing_ttl:
                return hit[1]
            self.radi.refresh()
            listing: dict[str, str] = {}
            if collection in self.radi.collection_names:
                coll = self.radi.collection(collection)
                listing = dict(zip(coll.subject_ids, (vol.uri for vol in coll)))
            self._listings[collection] = (time.monotonic(), listing)
            return listing

    def refresh(self) -> None:
        with self._lock:
            self._listings.clear()

    def collection_for(self, tag: str) -> str:
        tag = check_tag(tag)
        return self.label_collection if tag == FINAL_TAG else f"{self.label_collection}_{tag}"

    def tags(self) -> list[str]:
        """Tags that have a label collection in the store (``final`` always listed first)."""
        with self._lock:
            self.radi.refresh()
            names = self.radi.collection_names
        prefix = f"{self.label_collection}_"
        others = [n[len(prefix) :] for n in names if n.startswith(prefix) and _TAG.match(n[len(prefix) :])]
        return [FINAL_TAG, *sorted(others)]

    def image_ids(self) -> list[str]:
        return sorted(self._listing(self.image_collection))

    def image_uri(self, image_id: object) -> str:
        """Array URI of an image; 400 for a malformed id, 404 for an unknown one."""
        image_id = check_image_id(image_id)
        listing = self._listing(self.image_collection)
        if image_id not in listing:
            listing = self._listing(self.image_collection, fresh=True)  # added since the last listing?
        if image_id not in listing:
            example = f", e.g. {min(listing)!r}" if listing else ""
            raise ImageNotFound(
                f"unknown image id {image_id!r}: collection {self.image_collection!r} of {self.uri!r} has no such "
                f"subject ({len(listing)} images{example})"
            )
        return listing[image_id]

    def labelled_ids(self, tag: str = FINAL_TAG) -> list[str]:
        images = self._listing(self.image_collection)
        return sorted(set(self._listing(self.collection_for(tag))) & set(images))

    def label_uri(self, image_id: str, tag: str = FINAL_TAG) -> str | None:
        """The label array of an image, or ``None``. Labels are never removed, so only a miss
        needs a fresh listing (another process may have created the label since)."""
        collection = self.collection_for(tag)
        return (
            self._listing(collection).get(image_id)
            or self._listing(collection, fresh=True).get(image_id)
            or self._recover_pending(image_id, collection)
        )

    def require_label_uri(self, image_id: str, tag: str = FINAL_TAG) -> str:
        self.image_uri(image_id)
        uri = self.label_uri(image_id, tag)
        if uri is None:
            raise LabelNotFound(f"image {image_id!r} has no {tag!r} label yet; save one first")
        return uri

    # -- versions -----------------------------------------------------------------------
    def versions(self, image_id: str, tag: str = FINAL_TAG) -> list[LabelVersion]:
        """Every saved version of the image's label with this tag, oldest first ([] if none)."""
        self.image_uri(image_id)
        uri = self.label_uri(image_id, tag)
        return list_versions(uri, tag) if uri else []

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold a writer lease while a version is written: a reader opening the store meanwhile
        (``RadiObject`` removes a killed writer's empty metadata files when no writer is
        alive) must not take this save's metadata file, empty for an instant, for one."""
        if self._lease is None:
            self._lease = WriterLease(self.uri, tiledb.VFS(ctx=ctx_for_threads()))
        self._lease.refresh()
        try:
            yield
        finally:
            self._lease.release()

    def save(self, image_id: str, tag: str, data: np.ndarray, record: dict) -> int:
        """Store ``data`` as a new version of the image's ``tag`` label; returns the version.

        Saves are serialised in this process (one lock), so versions are strictly ordered.
        """
        collection = self.collection_for(tag)
        image = Volume(self.image_uri(image_id))
        if tuple(data.shape) != tuple(image.shape):
            raise ValueError(f"label shape {data.shape} != image shape {image.shape} for {image_id!r}")
        with self._lock:
            uri = self.label_uri(image_id, tag)
            if uri is None:
                return self._create(image_id, collection, image, data, record)
            with self._writing():
                return write_version(uri, data, record, {"orientation_affine": affine_to_json(image.affine)})

    def restore(self, image_id: str, tag: str, version: int, record: dict) -> int:
        """Write an earlier version again as the newest one; nothing is removed."""
        with self._lock:
            uri = self.require_label_uri(image_id, tag)
            known = [v.version for v in list_versions(uri, tag)]
            if version not in known:
                raise LabelNotFound(f"{tag!r} label of {image_id!r} has no version {version}; versions: {known}")
            data = read_version(uri, version)
            image = Volume(self.image_uri(image_id))
            with self._writing():
                return write_version(uri, data, record, {"orientation_affine": affine_to_json(image.affine)})

    def read(self, image_id: str, tag: str, version: int | None = None) -> np.ndarray:
        """A label version (the latest when ``version`` is ``None``)."""
        uri = self.require_label_uri(image_id, tag)
        if version is None:
            version = list_versions(uri, tag)[-1].version
        try:
            return read_version(uri, int(version))
        except KeyError:
            raise LabelNotFound(f"{tag!r} label of {image_id!r} has no version {version}") from None

    def _recover_pending(self, image_id: str, collection: str) -> str | None:
        """The label array of a first save killed after registering it but before its
        ``obs`` row (hidden from listings; its voxels and record are whole): the row is
        written from the array's metadata and the array returned, so that save is listed
        and a new one becomes its next version instead of a second array."""
        with self._lock:
            if collection not in self.radi.collection_names:
                return None
            if make_obs_id(image_id, collection) not in self.radi.collection(collection).pending:
                return None
            writer = StoreWriter(self.uri)
            try:
                writer.existing_obs_ids(collection)  # writes the missing rows
                writer.update_counters([collection])
            finally:
                writer.close()
            return self._listing(collection, fresh=True).get(image_id)

    def _create(self, image_id: str, collection: str, image: Volume, data: np.ndarray, record: dict) -> int:
        """The first version of a label: a new array whose record is written with its voxels,
        before the array is registered (visible), so no process killed on the way leaves a
        visible label without its record."""
        affine = image.affine
        version = next_timestamp(0)
        shared = {k: str(image.metadata[k]) for k in _SHARED_META if k in image.metadata}
        writer = StoreWriter(self.uri, tiling=Tiling("isotropic", tuple(image.tile_shape[:3])))
        try:
            uri = writer.write_volume(
                collection,
                image_id,
                make_obs_id(image_id, collection),
                data,
                affine,
                meta={**shared, "source_path": f"monailabel:{collection}"},
                obs_row=obs_row(collection, data.shape, affine, f"monailabel:{collection}"),
                raw_meta={**ForegroundIndex.compute(data).to_metadata(), **record_metadata(version, record)},
                timestamp=version,
                counters=True,
            )
        finally:
            writer.close()
        with self._lock:
            hit = self._listings.get(collection)
            if hit is not None:
                hit[1][image_id] = uri
        return version
