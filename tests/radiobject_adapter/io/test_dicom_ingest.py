"""DICOM folders into a store through `radiobundles ingest`: rules, subjects, tags, resume, bad series."""

from __future__ import annotations

import os

import numpy as np
import pytest

from radiobject_adapter import RadiObject
from radiobject_adapter.cli import main
from radiobject_adapter.io.dicom_ingest import SeriesRule, ingest_dicoms
from radiobject_adapter.testing.dicom import write_dicom_series

pydicom = pytest.importorskip("pydicom")

RULES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "configs", "dicom_rules.json")


def _aff(z: float = 2.0) -> np.ndarray:
    aff = np.diag([0.8, 0.8, z, 1.0])
    aff[:3, 3] = [-20.0, -30.0, 10.0]
    return aff


@pytest.fixture
def dicom_tree(tmp_path):
    """Two patients, each a CT and a T1 MR series, shuffled files, one folder tree."""
    root = tmp_path / "dicom"
    vols = {}
    for i, pid in enumerate(["P01", "P02"]):
        ct = np.random.default_rng(i).integers(-1000, 1500, (12, 10, 6)).astype(np.int16)
        mr = np.random.default_rng(10 + i).integers(0, 900, (10, 10, 5)).astype(np.int16)
        write_dicom_series(root / pid / "ct", ct, _aff(), patient_id=pid, shuffle=True, seed=i)
        write_dicom_series(
            root / pid / "mr", mr, _aff(3.0), patient_id=pid, modality="MR", series_description="T1 MPRAGE", intercept=0
        )
        vols[pid] = (ct, mr)
    return root, vols


def test_cli_ingests_dicom_folders_by_rules_with_tags(tmp_path, dicom_tree):
    root, vols = dicom_tree
    store = str(tmp_path / "store")
    argv = ["ingest", store, "-c", f"CT={root}", "-c", f"T1w={root}", "--dicom-rules", RULES, "--no-progress"]
    assert main(argv) == 0
    radi = RadiObject(store)
    assert sorted(radi.collection_names) == ["CT", "T1w"]
    for pid, (ct, mr) in vols.items():
        ct_vol = radi.collection("CT").get(pid)
        np.testing.assert_array_equal(ct_vol.to_numpy(), ct)
        assert ct_vol.dtype == np.int16
        np.testing.assert_allclose(ct_vol.affine, _aff(), atol=1e-5)
        np.testing.assert_array_equal(radi.collection("T1w").get(pid).to_numpy(), mr)
        assert ct_vol.metadata["dicom_modality"] == "CT"
    table = radi.obs_meta.set_index("obs_subject_id")
    assert table.loc["P01", "patient_sex"] == "O" and table.loc["P01", "study_date"] == "20260101"
    assert table.loc["P02", "modality"] == "CT; MR"
    # a second run resumes: nothing written twice
    assert main(argv) == 0
    assert len(RadiObject(store).collection("CT")) == 2


def test_identifying_tags_can_be_left_out(tmp_path, dicom_tree):
    root, _ = dicom_tree
    store = str(tmp_path / "store")
    report = ingest_dicoms(
        store, {"CT": root}, rules=[SeriesRule("CT", modality="CT")], identifying_tags=False, progress=False
    )
    assert report.ok and sorted(report.written["CT"]) == ["P01", "P02"]
    skipped = [w for w in report.warnings if "matches no DICOM rule" in w]
    assert len(skipped) == 2 and all("MR #1 'T1 MPRAGE'" in w for w in skipped)  # reported, not silently dropped
    columns = set(RadiObject(store).obs_meta.columns)
    assert "study_date" not in columns and "patient_age" in columns


def test_two_series_for_one_collection_is_an_error_and_writes_nothing(tmp_path, dicom_tree):
    root, _ = dicom_tree
    store = tmp_path / "store"
    assert main(["ingest", str(store), "-c", f"CT={root}", "--no-progress"]) == 2
    assert not store.exists()


def test_bad_series_rejects_its_subject_only(tmp_path, dicom_tree, capsys):
    root, _ = dicom_tree
    os.remove(root / "P02" / "mr" / "IM0002.dcm")  # a slice in the middle: a gap
    store = str(tmp_path / "store")
    argv = ["ingest", store, "-c", f"CT={root}", "-c", f"T1w={root}", "--dicom-rules", RULES, "--no-progress"]
    assert main(argv) == 3
    out = capsys.readouterr().out
    assert "REJECTED P02" in out and "missing slice" in out
    radi = RadiObject(store)
    # P02's good CT is not written either: a subject is written whole or not at all
    assert radi.collection("CT").get("P02") is None and radi.collection("CT").get("P01") is not None


def test_subject_from_study_uid_or_path_pattern(tmp_path, dicom_tree):
    root, _ = dicom_tree
    rules = [SeriesRule("CT", modality="CT")]
    by_study = ingest_dicoms(
        str(tmp_path / "a"), {"CT": root}, rules=rules, subject_tag="StudyInstanceUID", progress=False
    )
    assert all(sid.startswith("1.2.") for sid in by_study.written["CT"])
    by_path = ingest_dicoms(
        str(tmp_path / "b"), {"CT": root}, rules=rules, subject_pattern=r"dicom/(?P<subject>P\d+)/", progress=False
    )
    assert sorted(by_path.written["CT"]) == ["P01", "P02"]


def test_dicom_and_nifti_collections_are_not_mixed(tmp_path, dicom_tree, synthetic_ct):
    root, _ = dicom_tree
    store = tmp_path / "store"
    assert main(["ingest", str(store), "-c", f"CT={root}", "-c", f"seg={synthetic_ct.labels_dir}"]) == 2
    assert not store.exists()


def test_from_dicoms_opens_the_store_or_lists_rejected_series(tmp_path, dicom_tree):
    from radiobject_adapter.io.ingest import IngestError

    root, vols = dicom_tree
    radi = RadiObject.from_dicoms(str(tmp_path / "a"), {"CT": root}, rules=RULES, progress=False)
    np.testing.assert_array_equal(radi.collection("CT").get("P01").to_numpy(), vols["P01"][0])
    by_z = sorted((root / "P02" / "ct").iterdir(), key=lambda f: float(pydicom.dcmread(f).ImagePositionPatient[2]))
    os.remove(by_z[2])  # a middle slice by position (the files are shuffled)
    with pytest.raises(IngestError, match=r"REJECTED P02: DICOM series .* missing slice"):
        RadiObject.from_dicoms(str(tmp_path / "b"), {"CT": root}, rules=RULES, progress=False)
