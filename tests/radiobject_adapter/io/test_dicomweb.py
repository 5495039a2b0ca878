"""Orthanc (DICOMweb) as a source: pull chosen series, resume, ingest; SEG stored back (STOW-RS)."""

from __future__ import annotations

import os

import numpy as np
import pydicom
import pytest

from radiobject_adapter import RadiObject
from radiobject_adapter.cli import main
from radiobject_adapter.io.dicom_seg import write_dicom_seg
from radiobject_adapter.io.dicomweb import _client, find_series, store_instances
from radiobject_adapter.testing.dicom import write_dicom_series
from radiobject_adapter.testing.orthanc import orthanc_available, orthanc_server

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not orthanc_available(), reason="Orthanc not installed (apt-get install orthanc orthanc-dicomweb)"
    ),
]


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    """Orthanc holding two CT patients and one MR series, sent with STOW-RS."""
    root = tmp_path_factory.mktemp("dicomweb_src")
    aff = np.diag([0.9, 0.9, 2.0, 1.0])
    files = []
    for i, pid in enumerate(["W01", "W02"]):
        vol = np.random.default_rng(i).integers(-1000, 1000, (10, 8, 5)).astype(np.int16)
        files += write_dicom_series(root / pid / "ct", vol, aff, patient_id=pid, shuffle=True)
    mr = np.random.default_rng(9).integers(0, 500, (8, 8, 4)).astype(np.int16)
    files += write_dicom_series(root / "W01" / "mr", mr, aff, patient_id="W01", modality="MR", intercept=0)
    with orthanc_server() as srv:
        store_instances(srv.dicomweb_url, [pydicom.dcmread(f) for f in files])
        yield srv, root


def _argv(store, url, download, *extra):
    return [
        "ingest",
        str(store),
        "-c",
        "CT",
        "--dicomweb",
        url,
        "--download-dir",
        str(download),
        "--no-progress",
        *extra,
    ]


def test_pull_by_query_ingests_only_matching_series_and_resumes(orthanc, tmp_path):
    srv, _ = orthanc
    store, download = tmp_path / "store", tmp_path / "dl"
    assert main(_argv(store, srv.dicomweb_url, download, "--query", "Modality=CT")) == 0
    radi = RadiObject(str(store))
    assert {v.metadata["obs_subject_id"] for v in radi.collection("CT")} == {"W01", "W02"}
    pulled = sorted(str(p) for p in download.rglob("*.dcm"))
    assert len(pulled) == 10  # 2 x 5 CT slices, no MR
    # an interrupted pull: one file lost, one left half-written
    os.remove(pulled[0])
    (download / "stray.dcm.part").write_bytes(b"\0" * 10)
    before = {p: os.stat(p).st_mtime_ns for p in pulled[1:]}
    assert main(_argv(store, srv.dicomweb_url, download, "--query", "Modality=CT")) == 0
    assert os.path.isfile(pulled[0])
    assert {p: os.stat(p).st_mtime_ns for p in pulled[1:]} == before  # nothing fetched twice
    assert len(RadiObject(str(store)).collection("CT")) == 2


def test_pull_by_study_uid(orthanc, tmp_path):
    srv, root = orthanc
    study = str(pydicom.dcmread(next((root / "W02" / "ct").iterdir())).StudyInstanceUID)
    assert find_series(srv.dicomweb_url, study_uids=[study])
    assert main(_argv(tmp_path / "store", srv.dicomweb_url, tmp_path / "dl", "--study", study)) == 0
    assert [v.metadata["obs_subject_id"] for v in RadiObject(str(tmp_path / "store")).collection("CT")] == ["W02"]


def test_unknown_study_and_unreachable_server_are_clear_errors(orthanc, tmp_path, capsys):
    srv, _ = orthanc
    assert main(_argv(tmp_path / "s", srv.dicomweb_url, tmp_path / "dl", "--study", "1.2.3.4")) == 2
    assert "study 1.2.3.4 is not on" in capsys.readouterr().err
    assert main(_argv(tmp_path / "s", "http://127.0.0.1:9/dicom-web", tmp_path / "dl", "--query", "Modality=CT")) == 2
    assert "failed" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_seg_is_stored_back_with_stow(orthanc, tmp_path):
    srv, _ = orthanc
    store = tmp_path / "store"
    assert main(_argv(store, srv.dicomweb_url, tmp_path / "dl", "--query", "Modality=CT")) == 0
    vol = RadiObject(str(store)).collection("CT").get("W01")
    lab = np.zeros(vol.shape, np.uint8)
    lab[2:6, 2:6, 1:4] = 1
    seg = write_dicom_seg(lab, vol.metadata, tmp_path / "seg.dcm", ["background", "lesion"])
    store_instances(srv.dicomweb_url, [seg])
    hits = _client(srv.dicomweb_url).search_for_series(search_filters={"Modality": "SEG"})
    assert [h["0020000E"]["Value"][0] for h in hits] == [seg.SeriesInstanceUID]
