"""A whole 3D Slicer session replayed against the real server, call for call.

The calls, parameters and defaults are those of the MONAILabel Slicer module
(``plugins/slicer/MONAILabel/MONAILabel.py`` and ``MONAILabelLib/client.py``, MONAI Label 0.8.5
and current; ``monailabel.client`` is the same client class) and of the MONAILabelReviewer
module (``MonaiServerREST.py``), in the order an annotator's session makes them; every response
is read the way the plugin reads it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from urllib.parse import quote_plus

import nibabel as nib
import nrrd
import numpy as np
import pytest
import requests
from monailabel.client import MONAILabelClient

from radiobject_adapter import RadiObject

MODEL = "ct_segmentation_3d"
# the server command of the README; epistemic scoring (MC-dropout passes over every unlabelled
# image at start-up and after each training) is off here: the plugin's calls do not use it, and
# it would compete with the session for the CPU (test_server_store.py covers it)
CONF = {"models": MODEL, "epistemic": "false"}
DICOM_NAME = "3: CT ABDOMEN W/CONTRAST"
CLIENT_ID = "radiologist1"


def params_from_config(info: dict, section: str, name: str, **edited) -> dict:
    """``getParamsFromConfig``: the /info/ config of ``name`` with every list reduced to its first
    item; ``edited`` are cells the annotator typed into the options table (typed like the offer)."""
    section = {"infer": "models", "train": "trainers", "activelearning": "strategies"}.get(section, section)
    config = info.get(section, {}).get(name, {}).get("config", {})
    for key, value in edited.items():
        assert key in config, f"Slicer only shows what /info/ offers; {key!r} is not offered: {sorted(config)}"
        assert type(value) is type(config[key]), (key, value, config[key])
    return {k: v[0] if isinstance(v, list) else v for k, v in {**config, **edited}.items()}


def slicer_train_stats(info: dict) -> tuple[int, int, float, dict]:
    """``monitorTraining``: (epochs shown done, total, accuracy bar value, the stats)."""
    stats = info.get("train_stats")
    stats = next(iter(stats.values())) if stats else {}
    current = 0 if stats.get("total_time") else stats.get("epoch", 1)
    return current, stats.get("total_epochs", 1), stats.get("best_metric", 0), stats


def original_label(client: MONAILabelClient, image_id: str) -> str | None:
    """What ``onNextSampleButton`` does with MONAILabel/originalLabel on (the default)."""
    try:
        label_info = client.datastore()["objects"][image_id]["labels"]["original"]["info"]
    except KeyError:
        return None  # "Original label not found ..."
    assert isinstance(label_info.get("params", {}).get("label_names", {}), dict)
    return client.download_label(image_id, "original")


def write_segmentation_nrrd(path: str, label: np.ndarray, ras_affine: np.ndarray) -> str:
    """A segmentation as Slicer's ``saveNode`` writes it: ``.seg.nrrd`` layout, LPS space, one layer."""
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ ras_affine
    header = {
        "space": "left-posterior-superior",
        "space origin": lps[:3, 3],
        "space directions": [[np.nan] * 3, *[list(c) for c in lps[:3, :3].T]],
        "kinds": ["list", "domain", "domain", "domain"],
        "encoding": "gzip",
        "Segment0_Name": "structure_1",
        "Segment0_LabelValue": "1",
        "Segment0_Layer": "0",
    }
    nrrd.write(path, np.asfortranarray(label[np.newaxis]), header, index_order="F")
    return path


def poll_training(client: MONAILabelClient, until, timeout: float = 600.0) -> list[tuple[str, tuple]]:
    """``monitorTraining`` every half second: ``[(status, slicer_train_stats)]`` until ``until(status)``."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.train_status(False)
        seen.append((status.get("status"), slicer_train_stats(client.info())))
        if until(status):
            return seen
        time.sleep(0.5)
    raise AssertionError(f"training did not reach the expected state: {seen[-3:]}")


@pytest.fixture(scope="module")
def session_server(tmp_path_factory, label_server_factory, label_project_maker):
    proj = label_project_maker(str(tmp_path_factory.mktemp("slicer_session")))
    server = label_server_factory(proj.store, {**CONF, "workspace": os.path.join(proj.root, "workspace")})
    return server, proj


@pytest.mark.slow
@pytest.mark.timeout(1500)  # two trainings and eight infers: ~3 min idle, several times that on a busy machine
def test_a_slicer_session_from_connect_to_reviewer(session_server, tmp_path):
    server, proj = session_server
    url = server.url
    client = MONAILabelClient(url, tmpdir=str(tmp_path), client_id=CLIENT_ID)

    # connect: auth probe, /info/ (fetchInfo), is a training running (updateGUIFromParameterNode)
    assert client.auth_enabled() is False
    info = client.info()
    assert not info.get("config")  # else Slicer asks to "upgrade the monai server"
    assert MODEL in info["models"] and MODEL in info["trainers"]
    assert slicer_train_stats(info)[2] == 0  # no training yet: an empty accuracy bar, no error
    assert client.train_status(check_if_running=True) is False
    train_config = info["trainers"][MODEL]["config"]
    assert train_config["run_id"] == "" and train_config["model_filename"][0] == "model.pt"

    # next sample, downloaded and checked against its checksum (SampleData.downloadFromURL)
    strategy = "first"
    sample = client.next_sample(strategy, params_from_config(info, "activelearning", strategy))
    image_id = sample["id"]
    assert image_id == "case_002"
    download = requests.get(f"{url}/datastore/image?image={quote_plus(image_id)}", timeout=60)
    assert download.status_code == 200
    algo, digest = sample["checksum"].split(":")
    assert algo == "SHA256" and hashlib.sha256(download.content).hexdigest() == digest
    assert os.path.exists(sample["path"])  # a Slicer on the server's machine loads it from there
    image_file = str(tmp_path / sample["name"])
    with open(image_file, "wb") as fh:
        fh.write(download.content)
    image = nib.load(image_file)
    assert original_label(client, image_id) is None  # nothing labelled yet

    # an image that came with ground truth shows it as its original label
    truth_file = original_label(client, "case_000")
    np.testing.assert_array_equal(
        np.asarray(nib.load(truth_file).dataobj), RadiObject(proj.store).seg["case_000"].to_numpy()
    )

    # Run (auto-segmentation), then Submit Label with what onSaveLabel sends
    result_file, result = client.infer(MODEL, image_id, params_from_config(info, "infer", MODEL))
    assert result["label_names"] == {"structure_1": 1, "structure_2": 2}
    pred = nib.load(result_file)
    assert pred.shape == image.shape
    np.testing.assert_allclose(pred.affine, image.affine, atol=1e-4)
    label_info = [{"name": "structure_1", "idx": 1}, {"name": "structure_2", "idx": 2}]
    saved = client.save_label(image_id, proj.held[image_id], params={"label_info": label_info, "model": MODEL})
    assert saved == {"image": image_id, "label": image_id}
    label = client.datastore()["objects"][image_id]["labels"]["final"]["info"]
    assert label["source"] == "annotator" and label["annotator"] == CLIENT_ID and label["client_id"] == CLIENT_ID
    assert label["label_info"] == label_info
    info = client.info()
    assert info["datastore"]["completed"] == 3

    # Train with the options table: Slicer's params, the annotator typed the small cells
    offered_patch = info["trainers"][MODEL]["config"]["patch_size"]  # one edge, or "x,y,z" text if not cubic
    patch = 32 if isinstance(offered_patch, int) else "32,32,32"
    small = {"max_epochs": 2, "patch_size": patch, "batch_size": 1, "patches_per_volume": 1, "num_workers": 0}
    params = params_from_config(info, "train", MODEL, **small)
    assert params["run_id"] == "" and params["model_filename"] == "model.pt"
    checksum_before = requests.get(f"{url}/model/info/{MODEL}", timeout=30).json()["checksum"]
    started = int(time.time())
    task = client.train_start(MODEL, params)
    assert task["status"] in ("SUBMITTED", "RUNNING")
    seen = poll_training(client, until=lambda s: s.get("status") not in ("SUBMITTED", "RUNNING"))
    status = client.train_status(False)
    assert status["status"] == "DONE", "\n".join(status.get("details", []))[-4000:]
    running = [s for st, s in seen if st == "RUNNING" and s[3].get("start_ts", 0) >= started]
    assert running, seen  # progress of this run reached Slicer while it ran
    assert all(total == 2 for _cur, total, _acc, _s in running)
    assert all(0 <= cur <= 2 and 0 <= acc <= 1 for cur, _total, acc, _s in running)
    done = slicer_train_stats(client.info())[3]  # the finished run's figures stay
    assert done["epoch"] == 2 and done["total_epochs"] == 2 and done["total_time"]
    assert done["start_ts"] >= started and 0 <= done["best_metric"] <= 1
    assert "val_mean_dice" in done["eval"]["metrics"]
    assert requests.get(f"{url}/model/info/{MODEL}", timeout=30).json()["checksum"] != checksum_before

    # Run with the new model
    result_file_2, _ = client.infer(MODEL, image_id, params_from_config(client.info(), "infer", MODEL))
    assert nib.load(result_file_2).shape == image.shape

    # after a first training Slicer offers the checkpoints, model.pt first; train again and Stop
    info = client.info()
    assert info["trainers"][MODEL]["config"]["model_filename"][:3] == ["model.pt", "best.pt", "last.pt"]
    params = params_from_config(info, "train", MODEL, **{**small, "max_epochs": 50})
    assert params["model_filename"] == "model.pt"
    second = int(time.time())
    client.train_start(MODEL, params)
    poll_training(
        client,
        until=lambda s: (
            s.get("status") == "RUNNING" and slicer_train_stats(client.info())[3].get("start_ts", 0) >= second
        ),
    )
    stopped = client.train_stop()
    assert stopped["status"] == "STOPPED" and stopped["start_ts"] and stopped["end_ts"]
    assert stopped.get("result") or stopped["details"]  # onStopTraining shows details[-1] without a result
    poll_training(client, until=lambda s: s.get("status") != "RUNNING", timeout=120)
    assert client.train_status(check_if_running=True) is False
    after_stop = slicer_train_stats(client.info())[3]
    assert after_stop["total_epochs"] == 50 and "total_time" not in after_stop  # the stopped run's figures

    # a local volume, opened twice (onUploadImage: PUT /datastore/?image=<node name>), then Run
    local = proj.images["case_004"]
    assert client.upload_image(local, "CT local")["image"] == "CT local"
    assert client.upload_image(local, "CT local")["image"] == "CT local"  # reopened: same image, no error
    assert RadiObject(proj.store).CT.subject_ids.count("CT local") == 1
    local_label, _ = client.infer(MODEL, "CT local", params_from_config(info, "infer", MODEL))
    client.save_label("CT local", local_label, params={"label_info": label_info, "model": MODEL})
    # another patient's series under the same node name: a new image, the earlier label stays
    other = proj.images["case_005"]
    assert client.upload_image(other, "CT local")["image"] == "CT local (2)"
    other_label, _ = client.infer(MODEL, "CT local", params_from_config(info, "infer", MODEL))
    assert nib.load(other_label).shape == nib.load(other).shape
    assert client.save_label("CT local", other_label, params={"label_info": label_info, "model": MODEL}) == {
        "image": "CT local",
        "label": "CT local (2)",
    }
    seg = RadiObject(proj.store).seg
    np.testing.assert_array_equal(seg["CT local"].to_numpy(), np.asarray(nib.load(local_label).dataobj))
    np.testing.assert_array_equal(seg["CT local (2)"].to_numpy(), np.asarray(nib.load(other_label).dataobj))

    # a DICOM series loaded in Slicer: the node name is its series description
    dicom_image = proj.images["case_003"]
    assert client.upload_image(dicom_image, DICOM_NAME)["image"] == DICOM_NAME
    dicom_pred, _ = client.infer(MODEL, DICOM_NAME, params_from_config(info, "infer", MODEL))
    saved = client.save_label(DICOM_NAME, dicom_pred, params={"label_info": label_info, "model": MODEL})
    assert saved["label"] == DICOM_NAME
    assert DICOM_NAME in client.datastore()["objects"]

    # the Reviewer module: datastore listing, segmentation download, a new version saved as .nrrd
    listing = requests.get(f"{url}/datastore/?output=all", timeout=30).json()
    assert "final" in listing["objects"][DICOM_NAME]["labels"]
    reviewed_id = "case_000"
    got = requests.get(f"{url}/datastore/label?label={quote_plus(reviewed_id)}&tag=final", timeout=30)
    assert got.status_code == 200
    affine = nib.load(proj.images[reviewed_id]).affine
    reviewed = np.asarray(RadiObject(proj.store).seg[reviewed_id].to_numpy())
    reviewed[reviewed == 2] = 0
    nrrd_file = write_segmentation_nrrd(str(tmp_path / "edit.nrrd"), reviewed, affine)
    meta = {"segmentationMeta": {"status": "approved", "level": "easy", "approvedBy": "rad2", "comment": "ok"}}
    with open(nrrd_file, "rb") as fh:  # MonaiServerREST.saveLabel, image id not quoted, as it sends it
        put = requests.put(
            f"{url}/datastore/label?image={reviewed_id}&tag=version_1",
            data={"params": json.dumps(meta)},
            files={"label": (reviewed_id + ".nrrd", fh)},
            timeout=60,
        )
    assert put.status_code == 200, put.text
    np.testing.assert_array_equal(RadiObject(proj.store).collection("seg_version_1")[reviewed_id].to_numpy(), reviewed)
    # MonaiServerREST.updateLabelInfo: form field "params", url-encoded
    review = {"segmentationMeta": {**meta["segmentationMeta"], "editTime": 1}}
    upd = requests.put(
        f"{url}/datastore/updatelabelinfo?label={quote_plus(reviewed_id)}&tag={quote_plus('version_1')}",
        headers={"Content-Type": "application/x-www-form-urlencoded", "accept": "application/json"},
        data={"params": json.dumps(review)},
        timeout=30,
    )
    assert upd.status_code == 200, upd.text
    labels = requests.get(f"{url}/datastore/?output=all", timeout=30).json()["objects"][reviewed_id]["labels"]
    assert labels["version_1"]["info"]["segmentationMeta"] == review["segmentationMeta"]
    assert labels["original"]["info"]["source"] == "store"  # the ingested ground truth
    assert server.network_attempts() == []
