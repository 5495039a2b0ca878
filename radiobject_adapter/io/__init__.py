"""Files in and out of a store: NIfTI, TIF, DICOM series, DICOMweb, DICOM SEG.

This package reads and writes files; the store's object model and writers are in
:mod:`radiobject_adapter.store`, which these modules use (never the other way round, except
``RadiObject.from_niftis`` & co. calling ingest on use).

* :mod:`.nifti`: one NIfTI file as voxels, RAS affine and header facts.
* :mod:`.ingest`: NIfTI files into a store (pairing, validation, resume); its report and errors.
* :mod:`.tif`: folders of TIF images into a store (2D paired data).

Modules are imported on use (pydicom, highdicom and dicomweb-client are the ``dicom`` extra):

* :mod:`.dicom`: find DICOM series in folders and load each as one volume (voxels + RAS affine).
* :mod:`.dicom_ingest`: DICOM series into a store through the same writer as NIfTI ingest.
* :mod:`.dicomweb`: pull studies/series from a DICOMweb server (QIDO/WADO) and store SEGs back (STOW).
* :mod:`.dicom_seg`: label maps as DICOM SEG objects referencing their source series.

Example:
    >>> from radiobject_adapter.io.dicom import load_dicom_series, scan_dicom
    >>> series = scan_dicom("dicom_folder/")
    >>> vol = load_dicom_series(next(iter(series.values())))
"""

from __future__ import annotations

__all__: list[str] = []
