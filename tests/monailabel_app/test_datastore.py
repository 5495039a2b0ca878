"""TileDBDatastore: images from the store, labels as TileDB versions, uploads checked first."""

from __future__ import annotations

import gzip
import os

import nibabel as nib
import numpy as np
import pytest
import tiledb

from monailabel_app.lib.datastore import TileDBDatastore
from monailabel_app.lib.errors import BadLabelUpload, ImageNotFound, InvalidRequest, LabelNotFound, NotAllowed
from monailabel_app.lib.image_info import ImageInfoStore
from radiobject_adapter import RadiObject, TileDBReader, Volume
from radiobject_adapter.store.foreground import ForegroundIndex
from radiobject_adapter.store.label_versions import fragment_timestamps


@pytest.fixture
def datastore(project, tmp_path) -> TileDBDatastore:
    return TileDBDatastore(project.store, str(tmp_path / "workspace"))


def _save(ds, project, image_id, array, tmp_path, name="label.nii.gz", tag="final", **info):
    affine = nib.load(project.images[image_id]).affine
    path = str(tmp_path / name)
    nib.save(nib.Nifti1Image(array, affine), path)
    return ds.save_label(image_id, path, tag, info)


def _held(project, image_id) -> np.ndarray:
    return np.asarray(nib.load(project.held[image_id]).dataobj)


def test_images_are_the_subjects_of_the_image_collection(datastore):
    assert datastore.list_images() == [f"case_{i:03d}" for i in range(6)]
    assert datastore.get_labeled_images() == ["case_000", "case_001"]
    assert datastore.get_unlabeled_images() == ["case_002", "case_003", "case_004", "case_005"]
    assert datastore.status() == {"total": 6, "completed": 2, "label_tags": {"final": 2}}


def test_image_download_is_the_stored_volume_and_follows_its_versions(datastore, project):
    path = datastore.get_image_uri("case_003")
    stored = RadiObject(project.store).CT["case_003"]
    img = nib.load(path)
    np.testing.assert_array_equal(np.asarray(img.dataobj), stored.to_numpy())
    np.testing.assert_allclose(img.affine, stored.affine, atol=1e-5)
    assert datastore.get_image_uri("case_003") == path  # converted once per version
    assert datastore.get_image_info("case_003")["checksum"].startswith("SHA256:")

    with tiledb.open(stored.uri, "w") as arr:  # the volume changes in the store
        arr[:] = np.zeros(stored.shape, stored.dtype)
    new_path = datastore.get_image_uri("case_003")
    assert new_path != path
    assert not np.asarray(nib.load(new_path).dataobj).any()


def test_every_save_is_a_new_version_with_annotator_and_time(datastore, project, tmp_path):
    label = _held(project, "case_002")
    _save(datastore, project, "case_002", label, tmp_path, client_id="ann1")
    _save(datastore, project, "case_002", np.zeros_like(label), tmp_path, client_id="ann2")
    versions = datastore.list_label_versions("case_002", "final")
    assert [v["annotator"] for v in versions] == ["ann1", "ann2"]
    assert versions[0]["version"] < versions[1]["version"]
    assert all(v["time"] and v["source"] == "annotator" for v in versions)

    uri = RadiObject(project.store).seg.uri_of("case_002")
    np.testing.assert_array_equal(Volume(uri, timestamp=versions[0]["version"]).to_numpy(), label)
    assert not np.asarray(nib.load(datastore.get_label_uri("case_002", "final")).dataobj).any()  # latest served
    assert datastore.get_label_info("case_002", "final")["annotator"] == "ann2"


def test_restore_writes_an_earlier_version_again_as_the_newest(datastore, project, tmp_path):
    label = _held(project, "case_002")
    _save(datastore, project, "case_002", label, tmp_path, client_id="ann1")
    _save(datastore, project, "case_002", np.zeros_like(label), tmp_path, client_id="ann2")
    first = datastore.list_label_versions("case_002", "final")[0]["version"]
    datastore.update_label_info("case_002", "final", {"restore_version": first, "client_id": "reviewer"})
    versions = datastore.list_label_versions("case_002", "final")
    assert len(versions) == 3
    assert versions[-1]["source"] == "restore" and versions[-1]["info"] == {"restored_from": first}
    np.testing.assert_array_equal(np.asarray(nib.load(datastore.get_label_uri("case_002", "final")).dataobj), label)
    with pytest.raises(LabelNotFound, match="no version 12345"):
        datastore.restore_label_version("case_002", "final", 12345)


def test_ground_truth_from_ingest_is_the_first_final_version(datastore):
    versions = datastore.list_label_versions("case_000", "final")
    assert len(versions) == 1 and versions[0]["source"] == "store"
    assert datastore.list_label_versions("case_004", "final") == []


def test_saved_labels_feed_the_training_datalist(datastore, project, tmp_path):
    label = _held(project, "case_002")
    _save(datastore, project, "case_002", label, tmp_path)
    items = {it["subject_id"]: it for it in datastore.datalist()}
    assert sorted(items) == ["case_000", "case_001", "case_002"]
    assert items["case_002"]["label"] == f"{RadiObject(project.store).uri}::seg/case_002"
    data, _meta = TileDBReader().get_data(TileDBReader().read(items["case_002"]["label"]))
    np.testing.assert_array_equal(data, label)
    # the sampler's foreground index follows the latest version
    index = ForegroundIndex.from_metadata(Volume(RadiObject(project.store).seg.uri_of("case_002")).metadata)
    assert index.counts == {int(c): int(n) for c, n in zip(*np.unique(label, return_counts=True))}


def test_other_tags_go_to_their_own_collection(datastore, project, tmp_path):
    _save(
        datastore,
        project,
        "case_003",
        _held(project, "case_003"),
        tmp_path,
        tag="original",
        model="ct",
        source="inference",
    )  # as the app's /infer saves a prediction
    assert "seg_original" in RadiObject(project.store).collection_names
    assert datastore.get_labels_by_image_id("case_003") == {"original": "case_003"}
    assert "case_003" in datastore.get_unlabeled_images()  # only final labels count as labelled
    assert datastore.list_label_versions("case_003", "original")[0]["source"] == "inference"


def _nifti(array, affine) -> bytes:
    return nib.Nifti1Image(array, affine).to_bytes()


@pytest.mark.parametrize(
    "make_upload, error, message",
    [
        (lambda lab, aff: _nifti(lab[:-1], aff), BadLabelUpload, r"label shape \("),
        (lambda lab, aff: _nifti(lab, aff @ np.diag([1.0, 1.0, 1.2, 1.0])), BadLabelUpload, "affine differs"),
        (lambda lab, aff: _nifti(lab.astype(np.float32) / 2 + 0.25, aff), BadLabelUpload, "non-integer"),
        (lambda lab, aff: _nifti(lab.astype(np.int16) - 1, aff), BadLabelUpload, "negative"),
        (lambda lab, aff: _nifti(lab.astype(np.int16) * 300, aff), BadLabelUpload, "more than the stored labels' type"),
        (lambda lab, aff: b"", InvalidRequest, "empty"),
        (lambda lab, aff: b"NRRD0004\n" + bytes(100), InvalidRequest, "NRRD"),
        (lambda lab, aff: os.urandom(2048), InvalidRequest, "not a readable NIfTI"),
        (lambda lab, aff: gzip.compress(_nifti(lab, aff))[:300], InvalidRequest, "corrupt or truncated"),
        (lambda lab, aff: _nifti(lab, aff)[:-500], InvalidRequest, "truncated|not a readable"),
    ],
    ids=["shape", "affine", "fraction", "negative", "too-large", "empty", "nrrd", "garbage", "cut-gzip", "cut-nifti"],
)
def test_bad_uploads_are_refused_before_anything_is_written(datastore, project, tmp_path, make_upload, error, message):
    image_id = "case_000"  # has ground truth (uint8): a refused upload must leave it as it is
    uri = RadiObject(project.store).seg.uri_of(image_id)
    before = fragment_timestamps(uri)
    label = np.asarray(Volume(uri).to_numpy())
    path = tmp_path / "upload.nii.gz"
    path.write_bytes(make_upload(label, nib.load(project.images[image_id]).affine))
    with pytest.raises(error, match=message) as caught:
        datastore.save_label(image_id, str(path), "final", {})
    assert 400 <= caught.value.status_code < 500
    assert fragment_timestamps(uri) == before
    assert datastore.list_label_versions(image_id, "final")[-1]["source"] == "store"


@pytest.mark.parametrize("image_id", ["../case_000", "case_000/../../x", "..", "a\\b", "", "x\x00y"])
def test_ids_that_could_leave_the_store_are_refused(datastore, image_id):
    with pytest.raises(InvalidRequest, match="invalid image id") as caught:
        datastore.get_image_uri(image_id)
    assert caught.value.status_code == 400


def test_unknown_ids_and_missing_labels_are_404(datastore):
    with pytest.raises(ImageNotFound, match=r"unknown image id 'case_999'.*e\.g\. 'case_000'") as caught:
        datastore.get_image_info("case_999")
    assert caught.value.status_code == 404
    with pytest.raises(LabelNotFound, match="no 'final' label"):
        datastore.get_label_uri("case_004", "final")


def test_images_and_labels_are_never_removed(datastore):
    with pytest.raises(NotAllowed):
        datastore.remove_label("case_000", "final")
    with pytest.raises(NotAllowed):
        datastore.remove_image("case_000")
    assert datastore.get_labeled_images() == ["case_000", "case_001"]


def test_uploaded_images_join_the_image_collection(datastore, project, tmp_path):
    image_id = datastore.add_image("new_case", project.images["case_001"], {"source": "slicer"})
    assert image_id == "new_case" and "new_case" in datastore.get_unlabeled_images()
    np.testing.assert_array_equal(
        RadiObject(project.store).CT["new_case"].to_numpy(), RadiObject(project.store).CT["case_001"].to_numpy()
    )
    # Slicer uploads a local volume again each time it is reopened: the same voxels are the same image
    before = fragment_timestamps(RadiObject(project.store).CT.uri_of("new_case"))
    assert datastore.add_image("new_case", project.images["case_001"], {}) == "new_case"
    assert fragment_timestamps(RadiObject(project.store).CT.uri_of("new_case")) == before


def test_scores_written_by_another_process_are_seen(project, tmp_path):
    workspace = str(tmp_path / "workspace")
    server = TileDBDatastore(project.store, workspace)
    scorer = TileDBDatastore(project.store, workspace)  # as MONAI Label's scoring subprocess builds it
    scorer.update_image_info("case_004", {"epistemic_entropy": 0.5, "epistemic_ts": 7})
    server.update_image_info("case_004", {"strategy": {"epistemic": {"ts": 1}}})
    info = server.get_image_info("case_004")
    assert info["epistemic_entropy"] == 0.5 and info["strategy"] == {"epistemic": {"ts": 1}}
    assert ImageInfoStore(os.path.join(workspace, "image_info.json")).get("case_004")["epistemic_ts"] == 7
