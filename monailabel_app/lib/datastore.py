"""MONAI Label datastore over a radiobundles TileDB store.

Images are the subjects of the store's image collection and are served as NIfTI files
converted on demand (cached per volume version). Every label saved through
``PUT /datastore/label`` is checked against its image and written into the store as a new
version of the subject's label array (tag ``final`` -> collection ``seg``, other tags ->
``seg_<tag>``), with annotator and time; nothing is ever overwritten or deleted. The training
datalist names store volumes by address, so training reads the latest labels straight from
TileDB with label-driven patch sampling.

Over the REST API:

* ``GET /datastore/label/info?label=<id>&tag=final`` lists the versions (``versions``);
* ``PUT /datastore/label/info?label=<id>&tag=final`` with ``info={"restore_version": <v>}``
  writes version ``v`` again as the newest (an undo that loses nothing).

Example:
    >>> ds = TileDBDatastore("/data/ct_store", workspace="/app/workspace")
    >>> ds.save_label("case_000", "/tmp/upload.nii.gz", "final", {"client_id": "ann1"})
    >>> [v["annotator"] for v in ds.list_label_versions("case_000", "final")]
"""

from __future__ import annotations

import io
import os
import pathlib
import tempfile
import threading
import zipfile
from typing import Any

from monailabel.interfaces.datastore import Datastore

from monailabel_app.lib.cache import NiftiCache
from monailabel_app.lib.errors import Conflict, ImageNotFound, InvalidRequest, NotAllowed
from monailabel_app.lib.image_info import ImageInfoStore
from monailabel_app.lib.store_access import FINAL_TAG, StoreAccess, check_image_id, check_tag
from monailabel_app.lib.uploads import read_label_upload
from monailabel_app.lib.versions import fragment_timestamps
from radiobject_adapter import Volume
from radiobject_adapter.address import volume_address
from radiobject_adapter.config import forget_array
from radiobject_adapter.store.layout import make_obs_id
from radiobject_adapter.store.nifti import load_nifti
from radiobject_adapter.store.writer import StoreWriter

__all__ = ["TileDBDatastore"]

_EXT = ".nii.gz"


def _annotator(info: dict[str, Any]) -> str | None:
    for key in ("annotator", "user", "client_id"):
        if info.get(key):
            return str(info[key])
    return None


class TileDBDatastore(Datastore):
    """A MONAI Label ``Datastore`` whose images and labels live in a TileDB store.

    Args:
        store: store URI.
        workspace: writable folder of the app for this store (NIfTI cache, image info).
        image_collection / label_collection: collections of images and of ``final`` labels.
        affine_atol: largest difference (mm) between an uploaded label's affine and its image's.
        listing_ttl: seconds a collection listing is trusted (other processes may add volumes).
    """

    def __init__(
        self,
        store: str,
        workspace: str,
        image_collection: str = "CT",
        label_collection: str = "seg",
        affine_atol: float = 1e-3,
        listing_ttl: float = 5.0,
    ) -> None:
        self.access = StoreAccess(store, image_collection, label_collection, listing_ttl)
        self.uri = self.access.uri
        self.affine_atol = affine_atol
        self.cache = NiftiCache(os.path.join(workspace, "cache"))
        self.infos = ImageInfoStore(os.path.join(workspace, "image_info.json"))
        self._name = os.path.basename(self.uri.rstrip("/")) or self.uri
        self._description = f"TileDB store {self.uri} (images: {image_collection}, labels: {label_collection})"
        self._convert_lock = threading.Lock()

    # -- naming -------------------------------------------------------------------------
    def name(self) -> str:
        return self._name

    def set_name(self, name: str) -> None:
        self._name = name

    def description(self) -> str:
        return self._description

    def set_description(self, description: str) -> None:
        self._description = description

    # -- conversion -----------------------------------------------------------------------
    def _as_nifti(self, kind: str, uri: str, name: str) -> str:
        version = max(fragment_timestamps(uri))

        def convert(path: str) -> None:
            with self._convert_lock:  # one conversion at a time per process: handles are dropped after
                try:
                    Volume(uri, timestamp=version).to_nifti(path)
                finally:
                    forget_array(uri)

        return self.cache.get(kind, uri, version, name, convert)

    # -- images -------------------------------------------------------------------------
    def list_images(self) -> list[str]:
        return self.access.image_ids()

    def get_image_uri(self, image_id: str) -> str:
        uri = self.access.image_uri(image_id)
        return self._as_nifti("images", uri, f"{image_id}{_EXT}")

    def get_image(self, image_id: str, params=None) -> Any:
        return io.BytesIO(pathlib.Path(self.get_image_uri(image_id)).read_bytes())

    def get_image_info(self, image_id: str) -> dict[str, Any]:
        uri = self.access.image_uri(image_id)
        version = max(fragment_timestamps(uri))
        info: dict[str, Any] = {"name": f"{image_id}{_EXT}", "ts": version // 1000, **self.infos.get(image_id)}
        cached = self.cache.lookup("images", uri, version, f"{image_id}{_EXT}")
        if cached:  # Slicer checks downloads against this; only known once the file exists
            info["path"] = cached
            checksum = self.cache.checksum(cached)
            if checksum:
                info["checksum"] = checksum
        return info

    def update_image_info(self, image_id: str, info: dict[str, Any]) -> None:
        self.access.image_uri(image_id)
        self.infos.update(image_id, info)

    def add_image(self, image_id: str, image_filename: str, image_info: dict[str, Any]) -> str:
        """Ingest an uploaded NIfTI image as a new subject of the image collection."""
        image_id = check_image_id(image_id)
        try:
            self.access.image_uri(image_id)
        except ImageNotFound:
            pass
        else:
            raise Conflict(f"image {image_id!r} is already in the store; upload it under another id")
        try:
            vol = load_nifti(image_filename)
        except ValueError as err:
            raise InvalidRequest(f"the image upload is not a readable 3D NIfTI file: {err}") from None
        collection = self.access.image_collection
        writer = StoreWriter(self.uri)
        try:
            writer.write_volume(
                collection,
                image_id,
                make_obs_id(image_id, collection),
                vol.data,
                vol.affine,
                meta={**vol.array_metadata(), "source_path": f"monailabel:upload:{image_id}"},
                obs_row=vol.obs_row(collection),
            )
            writer.update_counters([collection])
        finally:
            writer.close()
        self.access.refresh()
        if image_info:
            self.infos.update(image_id, image_info)
        return image_id

    def remove_image(self, image_id: str) -> None:
        raise NotAllowed("images are never removed from the store through MONAI Label; remove them with TileDB tools")

    # -- labels -------------------------------------------------------------------------
    def _tag(self, tag: str | None) -> str:
        return check_tag(tag or FINAL_TAG)

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        """Check the upload against its image, then store it as a new version; returns the label id."""
        tag = self._tag(label_tag)
        image = Volume(self.access.image_uri(image_id))
        existing = self.access.label_uri(image_id, tag)
        dtype = Volume(existing).dtype if existing else None
        data = read_label_upload(label_filename, image.shape, image.affine, dtype, self.affine_atol, image_id)
        info = dict(label_info or {})
        record = {
            "tag": tag,
            "annotator": _annotator(info),
            "source": str(info.get("source") or ("inference" if "model" in info else "annotation")),
            "info": info,
        }
        self.access.save(image_id, tag, data, record)
        return image_id

    def list_label_versions(self, image_id: str, tag: str = FINAL_TAG) -> list[dict[str, Any]]:
        """Every saved version of the image's label (oldest first): version, annotator, time, source, info."""
        return [v.to_json() for v in self.access.versions(image_id, self._tag(tag))]

    def restore_label_version(self, image_id: str, tag: str, version: int, annotator: str | None = None) -> int:
        """Save version ``version`` again as the newest; returns the new version."""
        tag = self._tag(tag)
        record = {"tag": tag, "annotator": annotator, "source": "restore", "info": {"restored_from": int(version)}}
        return self.access.restore(image_id, tag, int(version), record)

    def get_label_uri(self, label_id: str, label_tag: str) -> str:
        uri = self.access.require_label_uri(label_id, self._tag(label_tag))
        return self._as_nifti(f"labels-{self._tag(label_tag)}", uri, f"{label_id}{_EXT}")

    def get_label(self, label_id: str, label_tag: str, params=None) -> Any:
        return io.BytesIO(pathlib.Path(self.get_label_uri(label_id, label_tag)).read_bytes())

    def get_labels_by_image_id(self, image_id: str) -> dict[str, str]:
        self.access.image_uri(image_id)
        return {tag: image_id for tag in self.access.tags() if self.access.label_uri(image_id, tag)}

    def get_label_by_image_id(self, image_id: str, tag: str) -> str:
        return self.get_labels_by_image_id(image_id).get(self._tag(tag), "")

    def _label_info(self, label_id: str, tag: str, with_versions: bool) -> dict[str, Any]:
        versions = self.access.versions(label_id, tag)
        if not versions:
            self.access.require_label_uri(label_id, tag)  # raises the 404
        latest = versions[-1]
        info = {
            **latest.info,
            "name": f"{label_id}{_EXT}",
            "ts": latest.version // 1000,
            "version": latest.version,
            "annotator": latest.annotator,
            "time": latest.time,
            "source": latest.source,
            **self.infos.get(f"label/{tag}/{label_id}"),
        }
        if with_versions:
            info["versions"] = [v.to_json() for v in versions]
        return info

    def get_label_info(self, label_id: str, label_tag: str) -> dict[str, Any]:
        return self._label_info(label_id, self._tag(label_tag), with_versions=True)

    def update_label_info(self, label_id: str, label_tag: str, info: dict[str, Any]) -> None:
        """Keep extra label info; ``{"restore_version": v}`` restores version ``v`` as the newest."""
        tag = self._tag(label_tag)
        info = dict(info or {})
        if "restore_version" in info:
            try:
                version = int(info.pop("restore_version"))
            except (TypeError, ValueError):
                raise InvalidRequest("restore_version must be a version number from the label's 'versions'") from None
            self.restore_label_version(label_id, tag, version, _annotator(info))
            return  # who restored is in the new version's record
        if info:
            self.access.require_label_uri(label_id, tag)
            self.infos.update(f"label/{tag}/{label_id}", info)

    def remove_label(self, label_id: str, label_tag: str) -> None:
        raise NotAllowed(
            "labels are versioned and never deleted; save a corrected label, or restore an earlier version "
            'with PUT /datastore/label/info and info={"restore_version": <version>}'
        )

    def get_labeled_images(self, label_tag: str | None = None, labels: list[str] | None = None) -> list[str]:
        return self.access.labelled_ids(self._tag(label_tag))

    def get_unlabeled_images(self, label_tag: str | None = None, labels: list[str] | None = None) -> list[str]:
        labelled = set(self.get_labeled_images(label_tag))
        return [i for i in self.list_images() if i not in labelled]

    # -- training -------------------------------------------------------------------------
    def datalist(self) -> list[dict[str, Any]]:
        """``{"image", "label"}`` store addresses of every image with a ``final`` label (latest version)."""
        a = self.access
        return [
            {
                "image": volume_address(self.uri, a.image_collection, sid),
                "label": volume_address(self.uri, a.label_collection, sid),
                "subject_id": sid,
            }
            for sid in a.labelled_ids(FINAL_TAG)
        ]

    def get_dataset_archive(self, limit_cases: int | None) -> str:
        """A ZIP of the labelled images and their latest ``final`` labels, as NIfTI."""
        ids = self.access.labelled_ids(FINAL_TAG)
        if not ids:
            raise InvalidRequest("no image has a final label yet; nothing to archive")
        ids = ids[:limit_cases] if limit_cases else ids
        fd, path = tempfile.mkstemp(suffix=".zip")
        os.close(fd)
        with zipfile.ZipFile(path, "w") as archive:
            for sid in ids:
                archive.write(self.get_image_uri(sid), arcname=f"image/{sid}{_EXT}")
                archive.write(self.get_label_uri(sid, FINAL_TAG), arcname=f"label/{sid}{_EXT}")
        return path

    # -- state ----------------------------------------------------------------------------
    def refresh(self) -> None:
        self.access.refresh()

    def status(self) -> dict[str, Any]:
        images = set(self.list_images())
        tags = {}
        for tag in self.access.tags():
            n = len(set(self.access.labelled_ids(tag)) & images)
            if n:
                tags[tag] = n
        return {"total": len(images), "completed": tags.get(FINAL_TAG, 0), "label_tags": tags}

    def json(self) -> dict[str, Any]:
        objects = {}
        tags = self.access.tags()
        labelled = {tag: set(self.access.labelled_ids(tag)) for tag in tags}
        for image_id in self.list_images():
            labels = {
                tag: {"ext": _EXT, "info": self._label_info(image_id, tag, with_versions=False)}
                for tag in tags
                if image_id in labelled[tag]
            }
            objects[image_id] = {"image": {"ext": _EXT, "info": self.get_image_info(image_id)}, "labels": labels}
        return {"name": self.name(), "description": self.description(), "store": self.uri, "objects": objects}
