"""Predictions as DICOM SEG: a post-processing transform for images ingested from DICOM.

:class:`SaveDicomSegd` turns each predicted label map into a DICOM SEG file that references
the source series (read from the store volume's ``dicom_*`` metadata), with segment names
from the bundle's ``metadata.json`` (``network_data_format.outputs.pred.channel_def``) and
optional colours, and optionally stores it on a DICOMweb server (STOW-RS).

Enable it in ``ct_segmentation_3d`` inference with ``--dicom_seg_dir <folder>`` (and
``--dicom_seg_stow http://127.0.0.1:8042/dicom-web`` to send it to Orthanc).

Example:
    >>> SaveDicomSegd(keys="pred", output_dir="seg_out", metadata_file="configs/metadata.json")({"pred": pred})
"""

from __future__ import annotations

import json
import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from monai.config import KeysCollection
from monai.transforms import MapTransform

from radiobject_adapter.address import is_volume_address, parse_address
from radiobundles.ct3d.visualize import label_map
from radiobundles.readers import subject_id_of

from .metrics import class_name_list

__all__ = ["SaveDicomSegd", "bundle_class_names"]


def bundle_class_names(metadata_file: str | os.PathLike, output: str = "pred") -> dict[int, str]:
    """``{class index: name}`` from a bundle's ``metadata.json`` (``channel_def`` of ``output``)."""
    with open(metadata_file) as fh:
        meta = json.load(fh)
    channel_def = meta["network_data_format"]["outputs"][output].get("channel_def", {})
    return {int(k): str(v) for k, v in channel_def.items()}


class SaveDicomSegd(MapTransform):
    """Write each prediction as ``<output_dir>/<subject>_seg.dcm`` (DICOM SEG) and optionally STOW it.

    Args:
        keys: prediction keys (``[C, X, Y, Z]`` or ``[1, X, Y, Z]``) on the image grid.
        output_dir: folder for the SEG files.
        metadata_file: bundle ``metadata.json`` giving class names (``class_names`` wins).
        class_names: ``{index: name}`` or a list; index 0 (background) gets no segment.
        colours: ``{index: [r, g, b]}`` (default: a fixed palette).
        stow_url: DICOMweb base URL to store each SEG to (STOW-RS), e.g. Orthanc's ``/dicom-web``.
        algorithm / algorithm_version: recorded in the SEG's algorithm identification.
    """

    def __init__(
        self,
        keys: KeysCollection = "pred",
        output_dir: str = "dicom_seg",
        metadata_file: str | None = None,
        class_names: Mapping[int, str] | Sequence[str] | None = None,
        colours: Mapping[int, Sequence[int]] | None = None,
        stow_url: str | None = None,
        algorithm: str = "ct_segmentation_3d",
        algorithm_version: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if class_names is None and metadata_file is None:
            raise ValueError("give class_names or the bundle's metadata_file to name the segments")
        self.class_names = class_names if class_names is not None else bundle_class_names(metadata_file)
        if algorithm_version is None and metadata_file is not None:
            with open(metadata_file) as fh:
                algorithm_version = str(json.load(fh).get("version", "0"))
        self.output_dir = output_dir
        self.colours = colours
        self.stow_url = stow_url
        self.algorithm = algorithm
        self.algorithm_version = algorithm_version or "0"
        self.written: list[str] = []

    def _source_metadata(self, meta: Mapping[str, Any]) -> dict[str, Any]:
        from radiobject_adapter import RadiObject

        source = str(meta.get("filename_or_obj", ""))
        if not is_volume_address(source):
            raise ValueError(
                f"{source!r} was not read from a store; DICOM SEG output needs images ingested from DICOM "
                "(radiobundles ingest store -c CT=<dicom folder>)"
            )
        address = parse_address(source)
        volume = RadiObject(address.store).collection(address.collection).get(address.key)
        if volume is None:
            raise ValueError(f"{source!r}: no such volume in the store")
        return volume.metadata

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        from radiobject_adapter.io.dicom_seg import write_dicom_seg

        d = dict(data)
        os.makedirs(self.output_dir, exist_ok=True)
        for key in self.key_iterator(d):
            pred = d[key]
            meta = getattr(pred, "meta", None) or {}
            path = os.path.join(self.output_dir, f"{subject_id_of(meta, fallback='image')}_seg.dcm")
            label = label_map(pred)
            # a class the bundle metadata does not name still gets a segment ("class_<i>"): never dropped
            names = class_name_list(self.class_names, max(int(label.max(initial=0)) + 1, len(self.class_names)))
            seg = write_dicom_seg(
                label,
                self._source_metadata(meta),
                path,
                names,
                colours=self.colours,
                algorithm=self.algorithm,
                algorithm_version=self.algorithm_version,
            )
            self.written.append(path)
            if self.stow_url:
                from radiobject_adapter.io.dicomweb import store_instances

                store_instances(self.stow_url, [seg])
        return d
