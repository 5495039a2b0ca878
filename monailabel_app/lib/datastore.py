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
import re
import tempfile
import threading
import zipfile
from typing import Any

import numpy as np
from monailabel.interfaces.datastore import Datastore

from monailabel_app.lib.cache import NiftiCache
from monailabel_app.lib.errors import InvalidRequest, NotAllowed
from monailabel_app.lib.image_info import ImageInfoStore
from monailabel_app.lib.store_access import FINAL_TAG, StoreAccess, check_image_id, check_tag, file_name
from monailabel_app.lib.uploads import read_label_upload, read_volume_upload
from radiobject_adapter import RadiObject, Volume
from radiobject_adapter.config import forget_array
from radiobject_adapter.store.label_versions import fragment_timestamps
from radiobject_adapter.store.layout import make_obs_id
from radiobject_adapter.store.writer import StoreWriter

__all__ = ["ORIGINAL_TAG", "TileDBDatastore"]

_EXT = ".nii.gz"
ORIGINAL_TAG = "original"
_UPLOAD_KEY = "upload/{client}/{name}"  # image info entry: the image a client last uploaded under a name
_COPY = re.compile(r"^(?P<name>.*) \((?P<n>\d+)\)$")


def _source(info: dict[str, Any]) -> str:
    """Who made a label: ``inference`` only when the app's ``/infer`` saved its prediction
    (it says so); a label sent through ``PUT /datastore/label`` is an annotator's, even though
    3D Slicer always puts the selected ``model`` in the save params."""
    return str(info.get("source") or "annotator")


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
    def _as_nifti(self, kind: str, uri: str, name: str, version: int | None = None) -> str:
        version = max(fragment_timestamps(uri)) if version is None else version

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
        return self._as_nifti("images", uri, file_name(image_id, _EXT))

    def get_image(self, image_id: str, params=None) -> Any:
        return io.BytesIO(pathlib.Path(self.get_image_uri(image_id)).read_bytes())

    def get_image_info(self, image_id: str) -> dict[str, Any]:
        uri = self.access.image_uri(image_id)
        version = max(fragment_timestamps(uri))
        name = file_name(image_id, _EXT)
        info: dict[str, Any] = {"name": name, "ts": version // 1000, **self.infos.get(image_id)}
        cached = self.cache.lookup("images", uri, version, name)
        if cached:  # Slicer checks downloads against this; only known once the file exists
            info["path"] = cached
            checksum = self.cache.checksum(cached)
            if checksum:
                info["checksum"] = checksum
        return info

    def update_image_info(self, image_id: str, info: dict[str, Any]) -> None:
        self.access.image_uri(image_id)
        self.infos.update(image_id, info)

    # -- uploads (3D Slicer's local volumes) ----------------------------------------------
    def _same_image(self, image_id: str, data: np.ndarray, affine: np.ndarray) -> bool:
        vol = Volume(self.access.image_uri(image_id))
        if tuple(vol.shape) != tuple(data.shape) or not np.allclose(vol.affine, affine, atol=1e-4):
            return False
        return bool(np.array_equal(vol.to_numpy(), data))

    def _uploads_named(self, name: str) -> list[str]:
        """``name`` and the ``name (2)``, ``name (3)``... that later uploads under it became."""
        out = []
        for sid in self.access.image_ids():
            match = _COPY.match(sid)
            if sid == name or (match and match.group("name") == name):
                out.append(sid)
        return out

    def resolve_upload(self, image_id: str, client_id: str | None) -> str:
        """The image ``client_id`` last uploaded as ``image_id`` (3D Slicer names images by their
        node name), else ``image_id`` itself."""
        key = _UPLOAD_KEY.format(client=client_id or "", name=image_id)
        target = self.infos.get(key).get("image")
        return target if isinstance(target, str) and target in self._uploads_named(image_id) else image_id

    def add_image(self, image_id: str, image_filename: str, image_info: dict[str, Any]) -> str:
        """Ingest an uploaded image (NIfTI or NRRD) as a subject of the image collection.

        3D Slicer uploads a local volume under its node name each time it is opened: the same
        voxels and grid under a known name are that image again (nothing written); other
        voxels under a known name become a new image ``<name> (2)``, ``(3)``..., so nothing
        stored (image or label) changes. Later requests from the same client naming
        ``image_id`` (infer, label saves) reach the image of its last upload
        (:meth:`resolve_upload`). Returns the id of the image.
        """
        image_id = check_image_id(image_id)
        info = dict(image_info or {})
        vol = read_volume_upload(image_filename)
        existing = self._uploads_named(image_id)
        target = next((sid for sid in existing if self._same_image(sid, vol.data, vol.affine)), None)
        if target is None:
            target = image_id
            n = 2
            while target in existing:
                target = f"{image_id} ({n})"
                n += 1
            check_image_id(target)
            collection = self.access.image_collection
            writer = StoreWriter(self.uri)
            try:
                writer.write_volume(
                    collection,
                    target,
                    make_obs_id(target, collection),
                    vol.data,
                    vol.affine,
                    meta={**vol.array_metadata(), "source_path": f"monailabel:upload:{image_id}"},
                    obs_row=vol.obs_row(collection),
                )
                writer.update_counters([collection])
            finally:
                writer.close()
            self.access.refresh()
        client = info.get("client_id") or info.get("user")
        self.infos.update(_UPLOAD_KEY.format(client=client or "", name=image_id), {"image": target})
        if info:
            self.infos.update(target, info)
        return target

    def remove_image(self, image_id: str) -> None:
        raise NotAllowed("images are never removed from the store through MONAI Label; remove them with TileDB tools")

    # -- labels -------------------------------------------------------------------------
    def _tag(self, tag: str | None) -> str:
        return check_tag(tag or FINAL_TAG)

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        """Check the upload against its image, then store it as a new version; returns the label id."""
        tag = self._tag(label_tag)
        info = dict(label_info or {})
        image_id = self.resolve_upload(check_image_id(image_id), info.get("client_id"))
        image = Volume(self.access.image_uri(image_id))
        existing = self.access.label_uri(image_id, tag)
        dtype = Volume(existing).dtype if existing else None
        data = read_label_upload(label_filename, image.shape, image.affine, dtype, self.affine_atol, image_id)
        record = {"tag": tag, "annotator": _annotator(info), "source": _source(info), "info": info}
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

    def _original_from_final(self, label_id: str, tag: str) -> bool:
        """True when tag ``original`` is asked for and the image has none but has a ``final``
        label: its first version (the ground truth ingested with the store, or the first save)
        is then the image's original label, as 3D Slicer and the Reviewer look for it."""
        return (
            tag == ORIGINAL_TAG
            and self.access.label_uri(label_id, ORIGINAL_TAG) is None
            and self.access.label_uri(label_id, FINAL_TAG) is not None
        )

    def get_label_uri(self, label_id: str, label_tag: str) -> str:
        tag = self._tag(label_tag)
        name = file_name(label_id, _EXT)
        if self._original_from_final(label_id, tag):
            uri = self.access.require_label_uri(label_id, FINAL_TAG)
            first = self.access.versions(label_id, FINAL_TAG)[0].version
            return self._as_nifti("labels-original-of-final", uri, name, version=first)
        uri = self.access.require_label_uri(label_id, tag)
        return self._as_nifti(f"labels-{tag}", uri, name)

    def get_label(self, label_id: str, label_tag: str, params=None) -> Any:
        return io.BytesIO(pathlib.Path(self.get_label_uri(label_id, label_tag)).read_bytes())

    def get_labels_by_image_id(self, image_id: str) -> dict[str, str]:
        self.access.image_uri(image_id)
        return {tag: image_id for tag in self.access.tags() if self.access.label_uri(image_id, tag)}

    def get_label_by_image_id(self, image_id: str, tag: str) -> str:
        return self.get_labels_by_image_id(image_id).get(self._tag(tag), "")

    def _label_info(self, label_id: str, tag: str, with_versions: bool) -> dict[str, Any]:
        of_final = self._original_from_final(label_id, tag)
        versions = self.access.versions(label_id, FINAL_TAG if of_final else tag)
        if not versions:
            self.access.require_label_uri(label_id, tag)  # raises the 404
        shown = versions[0] if of_final else versions[-1]
        info = {
            **shown.info,
            "name": file_name(label_id, _EXT),
            "ts": shown.version // 1000,
            "version": shown.version,
            "annotator": shown.annotator,
            "time": shown.time,
            "source": shown.source,
            **self.infos.get(f"label/{tag}/{label_id}"),
        }
        if of_final:
            info["of_tag"] = FINAL_TAG  # the first version of the final label
        if with_versions:
            info["versions"] = [v.to_json() for v in (versions[:1] if of_final else versions)]
        return info

    def get_label_info(self, label_id: str, label_tag: str) -> dict[str, Any]:
        return self._label_info(label_id, self._tag(label_tag), with_versions=True)

    def update_label_info(self, label_id: str, label_tag: str, info: dict[str, Any]) -> None:
        """Keep extra label info; ``{"restore_version": v}`` restores version ``v`` as the newest.

        The Reviewer module sends its review (``segmentationMeta``: status, level, comment...)
        this way (``PUT /datastore/updatelabelinfo``); it is shown in the label's info.
        """
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
            self.access.require_label_uri(label_id, FINAL_TAG if self._original_from_final(label_id, tag) else tag)
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
        """``{"image", "label", "subject_id"}``: store addresses of every image with a ``final`` label
        (its latest version), from the store's own datalist builder."""
        a = self.access
        radi, labels = RadiObject(self.uri), a.collection_for(FINAL_TAG)
        if labels not in radi.collection_names:  # no label saved yet
            return []
        return radi.datalist(image=a.image_collection, label=labels)

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
        """``GET /datastore/?output=all``: every image with its labels by tag, each label's info
        with all its ``versions``; an image with a ``final`` label but no ``original`` one also
        lists ``original`` (the final label's first version, see :meth:`_original_from_final`)."""
        objects = {}
        tags = self.access.tags()
        labelled = {tag: set(self.access.labelled_ids(tag)) for tag in tags}
        for image_id in self.list_images():
            labels = {
                tag: {"ext": _EXT, "info": self._label_info(image_id, tag, with_versions=True)}
                for tag in tags
                if image_id in labelled[tag]
            }
            if FINAL_TAG in labels and ORIGINAL_TAG not in labels:
                labels[ORIGINAL_TAG] = {"ext": _EXT, "info": self._label_info(image_id, ORIGINAL_TAG, True)}
            objects[image_id] = {"image": {"ext": _EXT, "info": self.get_image_info(image_id)}, "labels": labels}
        return {"name": self.name(), "description": self.description(), "store": self.uri, "objects": objects}
