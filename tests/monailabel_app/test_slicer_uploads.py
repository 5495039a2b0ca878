"""What 3D Slicer and its MONAILabelReviewer module upload, checked by the datastore (no server).

Re-opened local volumes, node names with ``/``, NRRD / ``.seg.nrrd`` labels in LPS space, who
made a label, and the ``original`` label Slicer looks for in ``/datastore/?output=all``.
"""

from __future__ import annotations

import os

import nibabel as nib
import nrrd
import numpy as np
import pytest

from monailabel_app.lib.datastore import TileDBDatastore
from monailabel_app.lib.errors import BadLabelUpload, InvalidRequest
from monailabel_app.lib.local_datastore import CheckedLocalDatastore
from monailabel_app.lib.uploads import nrrd_affine
from radiobject_adapter import RadiObject
from radiobject_adapter.store.label_versions import fragment_timestamps, read_version

DICOM_NAME = "3: CT ABDOMEN W/CONTRAST"


@pytest.fixture
def datastore(project, tmp_path):
    return TileDBDatastore(project.store, str(tmp_path / "workspace"))


def _held(project, image_id) -> np.ndarray:
    return np.asarray(nib.load(project.held[image_id]).dataobj)


def _nifti(path, array, affine) -> str:
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return str(path)


def write_slicer_nrrd(path, array: np.ndarray, ras_affine: np.ndarray, layered: bool = False) -> str:
    """An NRRD as 3D Slicer writes it: LPS space; ``layered`` adds the layer axis of a ``.seg.nrrd``."""
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ ras_affine
    directions = [list(col) for col in lps[:3, :3].T]
    header = {"space": "left-posterior-superior", "space origin": lps[:3, 3], "encoding": "gzip"}
    if layered:
        array = array[np.newaxis]
        header["space directions"] = [[np.nan] * 3, *directions]
        header["kinds"] = ["list", "domain", "domain", "domain"]
    else:
        header["space directions"] = directions
        header["kinds"] = ["domain", "domain", "domain"]
    nrrd.write(str(path), np.asfortranarray(array), header, index_order="F")
    return str(path)


def test_reopening_the_same_volume_is_the_same_image(datastore, project, tmp_path):
    image = nib.load(project.images["case_001"])
    first = _nifti(tmp_path / "a.nii.gz", np.asarray(image.dataobj), image.affine)
    again = _nifti(tmp_path / "b.nii", np.asarray(image.dataobj), image.affine)  # other bytes, same volume
    assert datastore.add_image("local", first, {"client_id": "ann1"}) == "local"
    uri = RadiObject(project.store).CT.uri_of("local")
    before = fragment_timestamps(uri)
    assert datastore.add_image("local", again, {"client_id": "ann1"}) == "local"
    assert fragment_timestamps(uri) == before
    assert RadiObject(project.store).CT.subject_ids.count("local") == 1


def test_other_voxels_under_a_known_name_become_a_new_image_and_keep_every_label(datastore, project, tmp_path):
    image = nib.load(project.images["case_002"])
    datastore.add_image("local", _nifti(tmp_path / "a.nii.gz", np.asarray(image.dataobj), image.affine), {})
    label = _held(project, "case_002")
    datastore.save_label("local", _nifti(tmp_path / "l.nii.gz", label, image.affine), "final", {"client_id": "ann1"})

    other = nib.load(project.images["case_003"])  # another patient whose series has the same name
    new_id = datastore.add_image(
        "local", _nifti(tmp_path / "b.nii.gz", np.asarray(other.dataobj), other.affine), {"client_id": "ann1"}
    )
    assert new_id == "local (2)"
    ct = RadiObject(project.store).CT
    np.testing.assert_array_equal(ct["local (2)"].to_numpy(), np.asarray(other.dataobj))
    np.testing.assert_array_equal(ct["local"].to_numpy(), np.asarray(image.dataobj))  # untouched
    # Slicer keeps naming the volume by its node name: its next save reaches the image it uploaded last
    assert datastore.resolve_upload("local", "ann1") == "local (2)"
    assert datastore.resolve_upload("local", "someone_else") == "local"
    other_label = _held(project, "case_003")
    saved = datastore.save_label(
        "local", _nifti(tmp_path / "l2.nii.gz", other_label, other.affine), "final", {"client_id": "ann1"}
    )
    assert saved == "local (2)"
    seg = RadiObject(project.store).seg
    np.testing.assert_array_equal(seg["local"].to_numpy(), label)  # the earlier label is still there
    np.testing.assert_array_equal(seg["local (2)"].to_numpy(), other_label)
    # the first upload again: found among the uploads under that name, nothing written
    assert datastore.add_image("local", project.images["case_002"], {"client_id": "ann1"}) == "local"


def test_dicom_node_names_with_slashes_are_image_ids(datastore, project, tmp_path):
    image = nib.load(project.images["case_004"])
    image_id = datastore.add_image(DICOM_NAME, project.images["case_004"], {})
    assert image_id == DICOM_NAME and DICOM_NAME in datastore.list_images()
    path = datastore.get_image_uri(DICOM_NAME)
    assert os.path.realpath(path).startswith(os.path.realpath(str(tmp_path / "workspace" / "cache")) + os.sep)
    assert "/" not in datastore.get_image_info(DICOM_NAME)["name"]
    label = _held(project, "case_004")
    datastore.save_label(DICOM_NAME, _nifti(tmp_path / "l.nii.gz", label, image.affine), "final", {})
    assert "/" not in os.path.basename(datastore.get_label_uri(DICOM_NAME, "final"))
    np.testing.assert_array_equal(np.asarray(nib.load(datastore.get_label_uri(DICOM_NAME, "final")).dataobj), label)
    for bad in ("/etc/passwd", "a/../../x", "../x", "x/.."):
        with pytest.raises(InvalidRequest, match="invalid image id"):
            datastore.add_image(bad, project.images["case_004"], {})


def test_a_saved_label_is_the_annotators_even_with_the_model_slicer_sends(datastore, project, tmp_path):
    image = nib.load(project.images["case_002"])
    path = _nifti(tmp_path / "l.nii.gz", _held(project, "case_002"), image.affine)
    datastore.save_label(
        "case_002", path, "final", {"label_info": [], "model": "ct_segmentation_3d", "client_id": "ann7"}
    )
    version = datastore.list_label_versions("case_002", "final")[-1]
    assert version["source"] == "annotator" and version["annotator"] == "ann7"
    assert version["info"]["model"] == "ct_segmentation_3d"


@pytest.mark.parametrize("layered", [False, True], ids=["nrrd", "seg.nrrd"])
def test_nrrd_labels_in_lps_are_read_on_the_image_grid(datastore, project, tmp_path, layered):
    image = nib.load(project.images["case_002"])
    label = _held(project, "case_002")
    path = write_slicer_nrrd(tmp_path / "label.nrrd", label, image.affine, layered=layered)
    affine, _axes = nrrd_affine(nrrd.read_header(path))
    np.testing.assert_allclose(affine, image.affine, atol=1e-6)  # LPS in the file, RAS compared
    datastore.save_label("case_002", path, "final", {"client_id": "reviewer"})
    uri = RadiObject(project.store).seg.uri_of("case_002")
    np.testing.assert_array_equal(read_version(uri, fragment_timestamps(uri)[-1]), label)


def test_nrrd_labels_get_the_same_grid_checks_as_nifti(datastore, project, tmp_path):
    image = nib.load(project.images["case_002"])
    label = _held(project, "case_002")
    shifted = image.affine.copy()
    shifted[0, 3] += 5.0
    before = RadiObject(project.store).collection_names
    with pytest.raises(BadLabelUpload, match="affine differs"):
        datastore.save_label("case_002", write_slicer_nrrd(tmp_path / "a.nrrd", label, shifted), "final", {})
    with pytest.raises(BadLabelUpload, match="shape"):
        datastore.save_label("case_002", write_slicer_nrrd(tmp_path / "b.nrrd", label[:-2], image.affine), "final", {})
    two_layers = tmp_path / "c.seg.nrrd"
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ image.affine
    header = {
        "space": "left-posterior-superior",
        "space origin": lps[:3, 3],
        "space directions": [[np.nan] * 3, *[list(c) for c in lps[:3, :3].T]],
        "kinds": ["list", "domain", "domain", "domain"],
    }
    nrrd.write(str(two_layers), np.stack([label, label]), header, index_order="F")
    with pytest.raises(BadLabelUpload, match="overlapping segments"):
        datastore.save_label("case_002", str(two_layers), "final", {})
    assert RadiObject(project.store).collection_names == before  # nothing written


def test_ground_truth_appears_as_the_original_label_slicer_looks_for(datastore, project, tmp_path):
    image = nib.load(project.images["case_000"])
    truth = np.asarray(RadiObject(project.store).seg["case_000"].to_numpy())
    corrected = np.zeros_like(truth)
    datastore.save_label(
        "case_000", _nifti(tmp_path / "l.nii.gz", corrected, image.affine), "final", {"client_id": "a"}
    )
    labels = datastore.json()["objects"]["case_000"]["labels"]
    assert [v["source"] for v in labels["final"]["info"]["versions"]] == ["store", "annotator"]
    original = labels["original"]["info"]
    assert original["of_tag"] == "final" and original["source"] == "store"
    np.testing.assert_array_equal(np.asarray(nib.load(datastore.get_label_uri("case_000", "original")).dataobj), truth)
    np.testing.assert_array_equal(np.asarray(nib.load(datastore.get_label_uri("case_000", "final")).dataobj), corrected)
    assert "original" not in datastore.json()["objects"]["case_002"]["labels"]  # nothing to show yet


def test_a_nifti_folder_refuses_ids_that_would_name_files_outside_it(project, tmp_path):
    studies = tmp_path / "studies"
    studies.mkdir()
    local = CheckedLocalDatastore(str(studies), extensions=("*.nii.gz",), auto_reload=False)
    assert local.add_image("case_001", project.images["case_001"], {}) == "case_001"
    for bad, message in (("../../escape", "invalid image id"), (DICOM_NAME, "rename the volume")):
        with pytest.raises(InvalidRequest, match=message) as caught:
            local.add_image(bad, project.images["case_001"], {})
        assert caught.value.status_code == 400
    with pytest.raises(InvalidRequest, match="invalid label tag"):
        local.save_label("case_001", project.images["case_001"], "../x", {})
    assert not os.path.exists(tmp_path.parent / "escape.nii.gz")  # where ../../escape would have gone
