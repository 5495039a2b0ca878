"""Label maps as DICOM SEG objects (highdicom) on the grid of the DICOM series they came from.

A volume ingested from DICOM keeps, per slice, its source file and SOP Instance UID (array
metadata ``dicom_files`` / ``dicom_sop_instance_uids``, see :mod:`.dicom`), so a prediction on
that volume's grid maps back to the source images slice for slice: frame ``k`` of the SEG
references the image of slice ``k``. One segment per class present in the names (class 0 is
background and has none); colours are stored as DICOM CIELab.

Example:
    >>> ds = write_dicom_seg(label, vol.metadata, "pred_seg.dcm", {1: "liver", 2: "tumour"})
    >>> segread("pred_seg.dcm")  # highdicom reads it back
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["DEFAULT_COLOURS", "read_dicom_seg_labels", "rgb_to_dicom_lab", "source_datasets", "write_dicom_seg"]

# distinct colours per class 1, 2, ... (class 0, background, has no segment)
DEFAULT_COLOURS = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180))


def rgb_to_dicom_lab(rgb: Sequence[int]) -> list[int]:
    """sRGB (0-255) to DICOM's scaled CIELab (D65): L 0..100 and a/b -128..127 onto 0..65535."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ lin
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    lab = np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])
    scaled = [lab[0] * 65535 / 100, (lab[1] + 128) * 65535 / 255, (lab[2] + 128) * 65535 / 255]
    return [int(np.clip(round(v), 0, 65535)) for v in scaled]


def source_datasets(metadata: Mapping[str, Any]) -> tuple[list[Any], list[str]]:
    """The source images (headers, one per file) and, per slice, the SOP Instance UID it came from.

    Raises:
        ValueError: the volume was not ingested from DICOM, or its source files are gone.
    """
    import pydicom

    if "dicom_files" not in metadata:
        raise ValueError(
            "the image was not ingested from DICOM (no dicom_files metadata); DICOM SEG output needs a "
            "DICOM source: ingest the series with `radiobundles ingest store -c CT=<dicom folder>`"
        )
    files = json.loads(str(metadata["dicom_files"]))
    uids = json.loads(str(metadata["dicom_sop_instance_uids"]))
    missing = sorted({f for f in files if not os.path.isfile(f)})
    if missing:
        raise ValueError(f"source DICOM files are gone ({len(missing)}, e.g. {missing[0]}); SEG needs them")
    datasets = [pydicom.dcmread(f, stop_before_pixels=True) for f in dict.fromkeys(files)]
    return datasets, uids


def write_dicom_seg(
    label: np.ndarray,
    metadata: Mapping[str, Any],
    path: str | os.PathLike,
    class_names: Mapping[int, str] | Sequence[str],
    colours: Mapping[int, Sequence[int]] | None = None,
    algorithm: str = "radiobundles",
    algorithm_version: str = "0",
    series_description: str = "Segmentation",
) -> Any:
    """Write ``label`` (``(X, Y, Z)`` integer classes on the source grid) as a DICOM SEG file.

    Args:
        label: class map on the grid of the ingested DICOM volume (same shape).
        metadata: that volume's array metadata (``Volume.metadata``).
        path: output file.
        class_names: names per class index (list or ``{index: name}``); index 0 is background.
        colours: RGB per class (default :data:`DEFAULT_COLOURS`).
        algorithm / algorithm_version: recorded in each segment's algorithm identification.

    Returns:
        The written ``highdicom.seg.Segmentation`` dataset.

    Raises:
        ValueError: shape or class mismatch, or no DICOM source (see :func:`source_datasets`).
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    label = np.asarray(label)
    names = dict(enumerate(class_names)) if not isinstance(class_names, Mapping) else dict(class_names)
    names = {int(k): str(v) for k, v in names.items() if int(k) != 0}
    present = {int(v) for v in np.unique(label)} - {0}
    unnamed = sorted(present - set(names))
    if unnamed:
        raise ValueError(f"label holds classes {unnamed} that have no name; pass names for every class")
    sources, uids = source_datasets(metadata)
    if label.ndim != 3 or label.shape[2] != len(uids):
        raise ValueError(f"label shape {label.shape} does not match the source series ({len(uids)} slices)")
    rows, cols = int(sources[0].Rows), int(sources[0].Columns)
    if label.shape[:2] != (cols, rows):
        raise ValueError(f"label in-plane shape {label.shape[:2]} != source (Columns, Rows) {(cols, rows)}")
    numbers = sorted(names)
    # frames in source-image order, as highdicom pairs pixel_array[i] with source_images[i]
    by_uid = {str(ds.SOPInstanceUID): i for i, ds in enumerate(sources)}
    if len(sources) != len(uids):
        raise ValueError("multi-frame DICOM sources are not supported for SEG output yet; ingest a classic series")
    order = np.argsort([by_uid[u] for u in uids])
    frames = np.stack([label[:, :, k].T for k in order])  # (n_src, rows, cols)
    one_hot = np.stack([frames == n for n in numbers], axis=-1).astype(np.uint8)
    colour_of = {**dict(enumerate(DEFAULT_COLOURS, start=1)), **{int(k): v for k, v in (colours or {}).items()}}
    algo = hd.AlgorithmIdentificationSequence(
        name=algorithm, family=codes.cid7162.ArtificialIntelligence, version=algorithm_version
    )
    descriptions = []
    for i, n in enumerate(numbers, start=1):
        desc = hd.seg.SegmentDescription(
            segment_number=i,
            segment_label=names[n],
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algo,
            tracking_uid=hd.UID(),
            tracking_id=f"class {n}: {names[n]}",
        )
        desc.RecommendedDisplayCIELabValue = rgb_to_dicom_lab(colour_of.get(n, (128, 128, 128)))
        descriptions.append(desc)
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=one_hot,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=int(getattr(sources[0], "SeriesNumber", 0) or 0) + 1000,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="radiobundles",
        manufacturer_model_name=algorithm,
        software_versions=algorithm_version,
        device_serial_number="0",
        series_description=series_description,
        omit_empty_frames=False,
    )
    seg.save_as(os.fspath(path))
    return seg


def read_dicom_seg_labels(path: str | os.PathLike, sop_instance_uids: Sequence[str]) -> np.ndarray:
    """A SEG file back as an ``(X, Y, Z)`` class map on its source grid (slices in ``sop_instance_uids`` order).

    Class numbers are taken from each segment's tracking id (``class <n>: ...``) as written by
    :func:`write_dicom_seg`, else the segment number.
    """
    import highdicom as hd

    seg = hd.seg.segread(os.fspath(path))
    numbers = seg.get_segment_numbers()
    classes = []
    for n in numbers:
        tid = str(getattr(seg.get_segment_description(n), "TrackingID", ""))
        classes.append(int(tid.split(":")[0].split()[1]) if tid.startswith("class ") else n)
    masks = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=list(sop_instance_uids), segment_numbers=numbers, assert_missing_frames_are_empty=True
    )  # (slices, rows, cols, segments)
    out = np.zeros(masks.shape[:3], dtype=np.uint8)
    for j, c in enumerate(classes):
        out[masks[..., j] > 0] = c
    return out.transpose(2, 1, 0)
