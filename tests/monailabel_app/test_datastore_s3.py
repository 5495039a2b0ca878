"""TileDBDatastore (the MONAI Label datastore) over an ``s3://`` store.

The store lives in moto's S3 server (a child process on loopback, tests/conftest.py); TileDB's
own S3 client talks to it, nothing of ours is mocked. What must hold on S3 as on a local disk:
images listed from the store and converted to NIfTI in a **local** cache, labels saved as new
TileDB versions with their records, read back, restored, and the training datalist naming the
store on S3. The real server (``monailabel start_server --conf store s3://...``), a new process,
finds S3 through its environment (:mod:`radiobject_adapter.s3env`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import requests
from monailabel.client import MONAILabelClient

from monailabel_app.lib.conf import AppConf, placeholder_root, store_from_studies
from monailabel_app.lib.datastore import TileDBDatastore
from monailabel_app.lib.errors import LabelNotFound
from radiobject_adapter import RadiObject, TileDBReader, ingest_niftis
from radiobject_adapter.store.label_versions import fragment_timestamps, read_version
from radiobject_adapter.synthetic import make_ct_dataset
from radiobject_adapter.testing import S3Server

pytestmark = pytest.mark.timeout(120)

N_SUBJECTS = 3
N_LABELLED = 1  # case_000 comes with ground truth; case_001 and case_002 are left to annotate


class S3Project:
    """A store on S3 with ``N_SUBJECTS`` CT images, ground truth for the first ``N_LABELLED``, the
    withheld labels of the others (what an annotator would draw) and the source images (local)."""

    def __init__(self, root: Path, srv: S3Server, prefix: str) -> None:
        ds = make_ct_dataset(
            str(root / "nifti"), n_subjects=N_SUBJECTS, shape_range=((32, 36), (32, 36), (20, 24)), seed=5
        )
        held_dir = root / "held"
        held_dir.mkdir()
        self.held: dict[str, str] = {}
        for sid, path in list(zip(ds.subject_ids, ds.labels))[N_LABELLED:]:
            self.held[sid] = shutil.move(path, str(held_dir / os.path.basename(path)))
        self.images = dict(zip(ds.subject_ids, ds.images))
        self.store = f"s3://{srv.bucket}/{prefix}"
        report = ingest_niftis(self.store, {"CT": ds.images_dir, "seg": ds.labels_dir}, tile_extent=16, progress=False)
        assert report.ok, report.summary()

    def held_label(self, image_id: str) -> np.ndarray:
        return np.asarray(nib.load(self.held[image_id]).dataobj)

    def upload(self, image_id: str, array: np.ndarray, path: Path) -> str:
        nib.save(nib.Nifti1Image(array, nib.load(self.images[image_id]).affine), str(path))
        return str(path)


@pytest.fixture(scope="module")
def project(point_at_s3: Callable[[], S3Server], tmp_path_factory: pytest.TempPathFactory) -> S3Project:
    return S3Project(tmp_path_factory.mktemp("s3_label_project"), point_at_s3(), "monailabel/store")


@pytest.fixture(autouse=True)
def _s3(use_s3: S3Server) -> None:
    """Every test here talks to the server, whatever another test configured before."""


@pytest.mark.integration
def test_datastore_lists_serves_versions_and_restores_labels_on_s3(project: S3Project, tmp_path: Path) -> None:
    """list -> image as NIfTI (local cache) -> save two versions -> list -> read back -> restore -> datalist."""
    workspace = tmp_path / "workspace"
    ds = TileDBDatastore(project.store, str(workspace))
    assert ds.uri == project.store and ds.name() == "store"
    assert ds.list_images() == ["case_000", "case_001", "case_002"]
    assert ds.get_labeled_images() == ["case_000"]
    assert ds.get_unlabeled_images() == ["case_001", "case_002"]
    assert ds.status() == {"total": 3, "completed": 1, "label_tags": {"final": 1}}

    # images: converted from S3 into the local workspace cache, once per version
    path = ds.get_image_uri("case_001")
    assert os.path.isfile(path) and Path(path).is_relative_to(workspace)
    stored = RadiObject(project.store).CT["case_001"]
    img = nib.load(path)
    np.testing.assert_array_equal(np.asarray(img.dataobj), stored.to_numpy())
    np.testing.assert_allclose(img.affine, stored.affine, atol=1e-5)
    assert ds.get_image_uri("case_001") == path
    assert ds.get_image_info("case_001")["checksum"].startswith("SHA256:")
    assert ds.get_image("case_001").read() == Path(path).read_bytes()

    # labels: every save a new version on S3, with its annotator
    def save(image_id: str, array: np.ndarray, tag: str = "final", **info: str) -> str:
        upload = project.upload(image_id, array, tmp_path / f"upload-{image_id}-{tag}.nii.gz")
        return ds.save_label(image_id, upload, tag, info)

    label = project.held_label("case_001")
    assert save("case_001", label, client_id="ann1") == "case_001"
    save("case_001", np.zeros_like(label), client_id="ann2")
    versions = ds.list_label_versions("case_001", "final")
    assert [v["annotator"] for v in versions] == ["ann1", "ann2"]
    assert versions[0]["version"] < versions[1]["version"]
    uri = RadiObject(project.store).seg.uri_of("case_001")
    assert uri.startswith(f"{project.store}/")
    assert fragment_timestamps(uri) == [v["version"] for v in versions]
    np.testing.assert_array_equal(read_version(uri, versions[0]["version"]), label)
    served = ds.get_label_uri("case_001", "final")
    assert Path(served).is_relative_to(workspace)
    assert not np.asarray(nib.load(served).dataobj).any()  # the latest version is served
    assert ds.get_label_info("case_001", "final")["annotator"] == "ann2"

    # restore: the first version written again as the newest, nothing removed
    ds.update_label_info("case_001", "final", {"restore_version": versions[0]["version"], "client_id": "reviewer"})
    after = ds.list_label_versions("case_001", "final")
    assert len(after) == 3 and after[-1]["source"] == "restore"
    assert after[-1]["info"] == {"restored_from": versions[0]["version"]}
    np.testing.assert_array_equal(np.asarray(nib.load(ds.get_label_uri("case_001", "final")).dataobj), label)
    with pytest.raises(LabelNotFound):
        ds.restore_label_version("case_001", "final", 12345)

    # training datalist: store addresses on S3, read by the bundle's reader
    items = {it["subject_id"]: it for it in ds.datalist()}
    assert sorted(items) == ["case_000", "case_001"]
    assert items["case_001"]["label"] == f"{project.store}::seg/case_001"
    data, _meta = TileDBReader().get_data(TileDBReader().read(items["case_001"]["label"]))
    np.testing.assert_array_equal(data, label)

    # another tag: its own collection on S3; a second datastore (as another process builds it) sees it all
    save("case_002", project.held_label("case_002"), tag="original", model="ct")
    other = TileDBDatastore(project.store, str(tmp_path / "other_workspace"))
    assert other.get_labels_by_image_id("case_002") == {"original": "case_002"}
    assert [v["annotator"] for v in other.list_label_versions("case_001", "final")] == ["ann1", "ann2", "reviewer"]
    assert json.dumps(other.json())  # what GET /datastore returns serialises


@pytest.fixture(scope="module")
def s3_label_server(
    project: S3Project,
    s3_session: S3Server,
    label_server_factory: Callable[[str, dict[str, str]], Any],  # tests/monailabel_app/conftest.py
    tmp_path_factory: pytest.TempPathFactory,
) -> Any:
    """``monailabel start_server --studies s3://...``: a new process that finds S3 through its
    environment only (exported here as an operator would, and only while the server starts)."""
    workspace = str(tmp_path_factory.mktemp("s3_server_workspace"))
    with pytest.MonkeyPatch.context() as mp:
        for key, value in s3_session.process_env.items():
            mp.setenv(key, value)
        conf = {"models": "ct_segmentation_3d", "workspace": workspace, "epistemic": "false"}
        return label_server_factory(project.store, conf)


@pytest.mark.integration
def test_real_server_over_an_s3_store(project: S3Project, s3_label_server: Any, tmp_path: Path) -> None:
    """Info, image download, infer, label save and its versions, datalist over HTTP."""
    server = s3_label_server
    assert not os.path.exists(os.path.join(server.workdir, "s3:"))  # MONAI Label's placeholder folder is gone
    client = MONAILabelClient(server.url, tmpdir=str(tmp_path), client_id="ann1")

    info = client.info()
    assert info["datastore"]["total"] == N_SUBJECTS
    assert client.datastore()["store"] == project.store

    image_id = "case_002"  # no final label yet
    download = requests.get(f"{server.url}/datastore/image", params={"image": image_id}, timeout=60)
    assert download.status_code == 200
    image_file = tmp_path / "image.nii.gz"
    image_file.write_bytes(download.content)
    stored = RadiObject(project.store).CT[image_id]
    np.testing.assert_array_equal(np.asarray(nib.load(str(image_file)).dataobj), stored.to_numpy())
    assert Path(server.conf["workspace"], "cache").is_dir()  # converted into the local cache

    label_file, _params = client.infer("ct_segmentation_3d", image_id, {})
    assert nib.load(label_file).shape == stored.shape

    saved = client.save_label(image_id, project.held[image_id])
    assert saved["label"] == image_id
    versions = requests.get(
        f"{server.url}/datastore/label/info", params={"label": image_id, "tag": "final"}, timeout=30
    ).json()["versions"]
    assert [v["annotator"] for v in versions] == ["ann1"]
    np.testing.assert_array_equal(RadiObject(project.store).seg[image_id].to_numpy(), project.held_label(image_id))
    train_items = requests.get(f"{server.url}/datastore/", params={"output": "train"}, timeout=30).json()
    assert {it["subject_id"] for it in train_items} >= {"case_000", image_id}
    assert all(it["image"].startswith(f"{project.store}::CT/") for it in train_items)
    assert server.network_attempts() == []  # S3 on loopback only: nothing left this machine


@pytest.mark.slow
@pytest.mark.integration
def test_server_trains_on_the_s3_labels(s3_label_server: Any, tmp_path: Path) -> None:
    """``/train``: MONAI Label's training subprocess (inheriting the server's environment) reads
    the labelled images from S3 and writes a checkpoint."""
    server = s3_label_server
    client = MONAILabelClient(server.url, tmpdir=str(tmp_path), client_id="ann1")
    model = Path(server.conf["workspace"], "bundles", "ct_segmentation_3d", "models", "model.pt")
    before = model.stat().st_mtime_ns if model.exists() else None
    options = {"max_epochs": 1, "patch_size": [32, 32, 32], "batch_size": 1, "patches_per_volume": 1}
    task = client.train_start("ct_segmentation_3d", {**options, "num_workers": 0})
    assert task["status"] in ("SUBMITTED", "RUNNING")
    deadline = time.monotonic() + 240
    status = client.train_status()
    while status["status"] in ("SUBMITTED", "RUNNING") and time.monotonic() < deadline:
        time.sleep(2)
        status = client.train_status()
    details = "\n".join(status.get("details") or [])
    assert status["status"] == "DONE", details + server.log()[-4000:]
    assert "Epoch[1] Complete" in details
    assert model.is_file() and model.stat().st_mtime_ns != before
    assert server.network_attempts() == []


def test_studies_folded_by_monai_label_become_the_store_uri_again(tmp_path: Path) -> None:
    """MONAI Label realpaths ``--studies s3://b/k`` to ``<cwd>/s3:/b/k`` (an empty folder it made)."""
    folded = tmp_path / "s3:" / "bucket" / "ct_store"
    assert store_from_studies(str(folded)) == "s3://bucket/ct_store"  # not created yet
    folded.mkdir(parents=True)
    assert store_from_studies(str(folded)) == "s3://bucket/ct_store"
    assert placeholder_root(str(folded)) == str(tmp_path / "s3:")
    assert store_from_studies("s3://bucket/ct_store") == "s3://bucket/ct_store"
    assert placeholder_root("s3://bucket/ct_store") is None
    assert store_from_studies(str(tmp_path / "local_store")) == str(tmp_path / "local_store")
    (folded / "a_real_file.nii.gz").write_bytes(b"x")  # a real local folder that happens to be named so
    assert store_from_studies(str(folded)) == str(folded) and placeholder_root(str(folded)) is None
    conf = AppConf.from_conf(str(tmp_path / "app"), str(tmp_path / "s3:" / "b" / "s"), {})
    assert conf.store == "s3://b/s" and conf.workspace.startswith(str(tmp_path / "app"))
