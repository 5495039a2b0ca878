"""A plain NIfTI folder as ``--studies``: MONAI Label's own local datastore, same bundle."""

from __future__ import annotations

import os
import shutil

import nibabel as nib
import numpy as np
import pytest
import requests
from monailabel.client import MONAILabelClient
from monailabel.datastore.local import LocalDatastore

from monailabel_app.lib.bundle import find_bundle, prepare_bundle
from monailabel_app.lib.train import StoreBundleTrainTask

MODEL = "ct_segmentation_3d"


@pytest.fixture
def nifti_studies(project, tmp_path) -> str:
    """MONAI Label's folder layout: images at the top, final labels in ``labels/final``."""
    studies = tmp_path / "studies"
    (studies / "labels" / "final").mkdir(parents=True)
    for sid, path in project.images.items():
        shutil.copy(path, studies / f"{sid}.nii.gz")
    labels = os.path.join(project.root, "nifti", "labelsTr")
    for name in os.listdir(labels):
        shutil.copy(os.path.join(labels, name), studies / "labels" / "final" / name)
    return str(studies)


@pytest.mark.integration
def test_nifti_folder_serves_infer_and_saves_labels(nifti_studies, label_server_factory, tmp_path):
    server = label_server_factory(
        nifti_studies, {"models": MODEL, "workspace": str(tmp_path / "workspace"), "epistemic": "false"}
    )
    client = MONAILabelClient(server.url, tmpdir=str(tmp_path), client_id="ann1")
    info = client.info()
    assert info["datastore"]["total"] == 6 and info["datastore"]["completed"] == 2
    assert set(info["strategies"]) == {"random", "first"}

    sample = client.next_sample("first", {})
    assert sample["id"] == "case_002"
    os.makedirs(os.path.join(server.workdir, "case_002"))  # a folder named like the image where the server runs
    label_file, _ = client.infer(MODEL, sample["id"], {})
    image = nib.load(os.path.join(nifti_studies, "case_002.nii.gz"))
    pred = nib.load(label_file)
    assert pred.shape == image.shape
    np.testing.assert_allclose(pred.affine, image.affine, atol=1e-4)

    client.save_label(sample["id"], label_file, params={})
    assert os.path.isfile(os.path.join(nifti_studies, "labels", "final", "case_002.nii.gz"))
    train = requests.get(f"{server.url}/datastore/", params={"output": "train"}, timeout=30).json()
    assert len(train) == 3 and all(os.path.isfile(it["image"]) for it in train)

    for image_id, status in (("../case_000", 400), ("/etc/passwd", 400), ("no_such_case", 404)):
        response = requests.post(f"{server.url}/infer/{MODEL}", params={"image": image_id}, timeout=60)
        assert response.status_code == status, response.text
    assert server.network_attempts() == []


@pytest.mark.slow
def test_bundle_trains_from_the_local_datastore_datalist_with_mlflow(nifti_studies, tmp_path):
    """MONAI Label's NIfTI datalist (file paths) through the same bundle training path, tracked in MLflow."""
    bundle = prepare_bundle(find_bundle(MODEL, app_dir=str(tmp_path)), str(tmp_path / "bundles"))
    model = os.path.join(bundle, "models", "model.pt")
    before = os.stat(model).st_mtime_ns
    datastore = LocalDatastore(nifti_studies, extensions=("*.nii.gz",), auto_reload=False)
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    task = StoreBundleTrainTask(bundle, {}, tracking_uri=tracking_uri)
    request = {
        "model": MODEL,
        "device": "cpu",
        "max_epochs": 1,
        "patch_size": [32, 32, 32],
        "batch_size": 1,
        "patches_per_volume": 1,
        "num_workers": 0,
        "cache_rate": 0.0,
        "tracking": "mlflow",  # as chosen in Slicer's training options; no URI given
    }
    task(request, datastore)
    assert os.stat(model).st_mtime_ns != before

    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    runs = mlflow.search_runs(search_all_experiments=True)
    assert len(runs) == 1 and runs["metrics.train_loss"].notna().all()
