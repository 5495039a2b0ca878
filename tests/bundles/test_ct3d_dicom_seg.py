"""ct_segmentation_3d inference on a store ingested from DICOM writes DICOM SEG (and STOWs it to Orthanc)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from monai.bundle import ConfigWorkflow

from radiobject_adapter import RadiObject
from radiobject_adapter.cli import main
from radiobject_adapter.io.dicom_seg import read_dicom_seg_labels
from radiobject_adapter.testing.dicom import write_dicom_series
from radiobject_adapter.testing.orthanc import orthanc_available, orthanc_server
from radiobundles.resources import bundle_scripts

pytest.importorskip("highdicom")
pytestmark = pytest.mark.slow

CONFIGS = Path(__file__).resolve().parents[2] / "bundles" / "ct_segmentation_3d" / "configs"
TINY = {
    "network_def#channels": [8, 16, 32],
    "network_def#strides": [2, 2],
    "network_def#num_res_units": 1,
    "patch_size": [16, 16, 16],
    "num_workers": 0,
    "sw_batch_size": 16,
    "device": "cpu",
}


@pytest.fixture(scope="module", autouse=True)
def scripts():
    """The bundle's own ``scripts`` package: what its configs' ``scripts.…`` name in this process."""
    with bundle_scripts(CONFIGS.parent) as package:
        yield package


@pytest.fixture(scope="module")
def dicom_store(synthetic_ct, tmp_path_factory):
    """Two synthetic CTs written as oblique DICOM series (shuffled), ingested with the CLI; a random-weight model."""
    root = tmp_path_factory.mktemp("ct3d_dicom")
    for sid, image in list(zip(synthetic_ct.subject_ids, synthetic_ct.images, strict=True))[:2]:
        img = nib.load(image)
        hu = np.asanyarray(img.dataobj).astype(np.int16)
        write_dicom_series(root / "dcm" / sid, hu, img.affine, patient_id=sid, shuffle=True)
    assert main(["ingest", str(root / "store"), "-c", f"CT={root / 'dcm'}", "--no-progress"]) == 0
    wf = ConfigWorkflow(config_file=str(CONFIGS / "inference.json"), meta_file=str(CONFIGS / "metadata.json"), **TINY)
    wf.initialize()
    torch.manual_seed(0)
    (root / "models").mkdir()
    torch.save(wf.parser.get_parsed_content("network_def").state_dict(), root / "models" / "model.pt")
    return root


def _infer(root: Path, **overrides) -> None:
    wf = ConfigWorkflow(
        config_file=str(CONFIGS / "inference.json"),
        meta_file=str(CONFIGS / "metadata.json"),
        logging_file=False,
        bundle_root=str(CONFIGS.parent),  # bundle_root is "." (zoo convention); SEG names come from its metadata.json
        dataset_dir=str(root / "store"),
        ckpt_dir=str(root / "models"),
        output_dir=str(root / "nifti_pred"),
        **TINY,
        **overrides,
    )
    wf.initialize()
    try:
        wf.run()
    finally:
        wf.finalize()


def test_inference_writes_dicom_seg_equal_to_the_nifti_prediction(dicom_store):
    _infer(dicom_store, dicom_seg_dir=str(dicom_store / "seg"))
    radi = RadiObject(str(dicom_store / "store"))
    for volume in radi.collection("CT"):
        sid = volume.metadata["obs_subject_id"]
        pred = np.asanyarray(nib.load(dicom_store / "nifti_pred" / f"{sid}_seg.nii.gz").dataobj)
        uids = json.loads(volume.metadata["dicom_sop_instance_uids"])
        back = read_dicom_seg_labels(dicom_store / "seg" / f"{sid}_seg.dcm", uids)
        np.testing.assert_array_equal(back, pred)
        seg = pydicom.dcmread(dicom_store / "seg" / f"{sid}_seg.dcm")
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == volume.metadata["dicom_series_instance_uid"]
        assert [s.SegmentLabel for s in seg.SegmentSequence] == ["structure_1", "structure_2"]  # metadata.json


@pytest.mark.skipif(not orthanc_available(), reason="Orthanc not installed (apt-get install orthanc orthanc-dicomweb)")
def test_inference_stores_the_seg_in_orthanc(dicom_store):
    from radiobject_adapter.io.dicomweb import _client

    with orthanc_server() as srv:
        _infer(dicom_store, dicom_seg_dir=str(dicom_store / "seg_stow"), dicom_seg_stow=srv.dicomweb_url)
        hits = _client(srv.dicomweb_url).search_for_series(search_filters={"Modality": "SEG"})
    assert len(hits) == 2
