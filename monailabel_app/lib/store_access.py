"""Images and versioned labels of one store, as the datastore needs them.

* images: the subjects of one collection (``CT`` by default); an image id is a subject id;
* labels: one collection per MONAI Label tag, ``seg`` for ``final`` (ground truth already in
  the store counts as final) and ``seg_<tag>`` for any other tag (``seg_original``); one label
  array per subject, each save a new version (see :mod:`radiobject_adapter.store.label_versions`).

Listings are cached for ``listing_ttl`` seconds and refreshed after this process writes;
ids are checked before they reach the store, so ``../x`` or an unknown id never touches it.

Example:
    >>> access = StoreAccess("/data/ct_store")
    >>> access.image_ids()[:2], access.label_uri("case_000", "final")
"""

from __future__ import annotations

import hashlib
import re
import threading
import time

import numpy as np

from monailabel_app.lib.errors import ImageNotFound, InvalidRequest, LabelNotFound
from radiobject_adapter import RadiObject, Volume
from radiobject_adapter.store.label_versions import LabelVersion, list_versions, read_version
from radiobject_adapter.store.labels import check_label_grid, find_label, write_label
from radiobject_adapter.store.layout import Tiling

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

    def save(self, image_id: str, tag: str, data: np.ndarray, record: dict) -> int:
        """Store ``data`` as a new version of the image's ``tag`` label; returns the version.

        Saves are serialised in this process (one lock), so versions are strictly ordered.
        """
        collection = self.collection_for(tag)
        image = Volume(self.image_uri(image_id))
        # the array has no affine of its own: it is stored on the image's grid, so only its shape can differ
        check_label_grid(data.shape, image.affine, image.shape, image.affine, where=f" for {image_id!r}")
        with self._lock:
            return self._write(image_id, collection, image, data, record, self.label_uri(image_id, tag))

    def restore(self, image_id: str, tag: str, version: int, record: dict) -> int:
        """Write an earlier version again as the newest one; nothing is removed."""
        with self._lock:
            uri = self.require_label_uri(image_id, tag)
            known = [v.version for v in list_versions(uri, tag)]
            if version not in known:
                raise LabelNotFound(f"{tag!r} label of {image_id!r} has no version {version}; versions: {known}")
            data = read_version(uri, version)
            image = Volume(self.image_uri(image_id))
            return self._write(image_id, self.collection_for(tag), image, data, record, uri)

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
            if find_label(self.radi, collection, image_id) is None:
                return None
            return self._listing(collection, fresh=True).get(image_id)

    def _write(
        self, image_id: str, collection: str, image: Volume, data: np.ndarray, record: dict, uri: str | None
    ) -> int:
        """One version through the data layer's label writer: the next version of the label at
        ``uri``, or its first (a new array on the image's tiling, with the image's NIfTI facts,
        whose record is written with its voxels before it becomes visible)."""
        shared = {k: str(image.metadata[k]) for k in _SHARED_META if k in image.metadata}
        written = write_label(
            self.uri,
            collection,
            image_id,
            data,
            image.affine,
            uri=uri,
            record=record,
            meta=shared,
            source_path=f"monailabel:{collection}",
            tiling=Tiling("isotropic", tuple(image.tile_shape[:3])),
        )
        if written.created:
            with self._lock:
                hit = self._listings.get(collection)
                if hit is not None:
                    hit[1][image_id] = written.uri
        return written.version
