"""MONAI Label's local datastore (a NIfTI folder as ``--studies``) with the app's id checks.

MONAI Label's ``LocalDatastore`` names files after image ids and label tags, so an upload named
``../../x`` would be written outside the studies folder. Here ids and tags get the same checks as
in a store, and an id with ``/`` (a DICOM series description such as ``3: CT ABDOMEN
W/CONTRAST``, which a store accepts) is refused with what to do, rather than failing with a
server error on a missing sub-folder.

Example:
    >>> ds = CheckedLocalDatastore("/data/nifti_studies", extensions=("*.nii.gz",))
    >>> ds.add_image("../x", "/tmp/upload.nii.gz", {})  # InvalidRequest (HTTP 400)
"""

from __future__ import annotations

from typing import Any

from monailabel.datastore.local import LocalDatastore

from monailabel_app.lib.errors import InvalidRequest
from monailabel_app.lib.store_access import FINAL_TAG, check_image_id, check_tag

__all__ = ["CheckedLocalDatastore"]


class CheckedLocalDatastore(LocalDatastore):
    """``LocalDatastore`` whose uploads and saves never name a file outside its folder."""

    def add_image(self, image_id: str, image_filename: str, image_info: dict[str, Any]) -> str:
        if image_id:  # MONAI Label takes the upload's file name when no id is given
            check_image_id(image_id)
            if "/" in image_id:
                raise InvalidRequest(
                    f"image id {image_id!r} has '/', which a NIfTI folder cannot hold as a file name; rename the "
                    "volume in 3D Slicer, or serve a store (radiobundles ingest) where any name works"
                )
        return super().add_image(image_id, image_filename, image_info)

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        check_image_id(image_id)
        check_tag(label_tag or FINAL_TAG)
        return super().save_label(image_id, label_filename, label_tag, label_info)
