"""The real server (``monailabel start_server``) over a TileDB store, driven as 3D Slicer drives it."""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time

import nibabel as nib
import numpy as np
import pytest
import requests
from monailabel.client import MONAILabelClient

from radiobject_adapter import RadiObject
from radiobject_adapter.store.label_versions import fragment_timestamps, read_version
from radiobject_adapter.store.writer import StoreWriter

MODEL = "ct_segmentation_3d"


def _wait(predicate, timeout: float, what: str, server=None, interval: float = 2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    tail = server.log()[-4000:] if server is not None else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{tail}")


def _model_file(server) -> str:
    return os.path.join(server.conf["workspace"], "bundles", MODEL, "models", "model.pt")


def _store_snapshot(store: str) -> dict[tuple[str, str], list[int]]:
    """Every volume of every collection with its fragment timestamps."""
    radi = RadiObject(store)
    snap = {}
    for name in radi.collection_names:
        coll = radi.collection(name)
        for sid, vol in zip(coll.subject_ids, coll):
            snap[(name, sid)] = fragment_timestamps(vol.uri)
    return snap


@pytest.mark.slow
@pytest.mark.integration
def test_slicer_workflow_infer_save_train_infer_next_sample(store_server, tmp_path):
    """info -> next sample -> infer -> save label -> train one epoch -> infer with the new
    checkpoint -> next sample by model uncertainty, with MONAI Label's own client."""
    server, proj = store_server
    client = MONAILabelClient(server.url, tmpdir=str(tmp_path), client_id="ann1")

    info = client.info()
    assert MODEL in info["models"] and MODEL in info["trainers"]
    assert {"random", "first", "epistemic"} <= set(info["strategies"])
    assert "epistemic" in info["scoring"]
    assert info["labels"] == ["structure_1", "structure_2"]
    assert info["datastore"]["total"] == 6

    sample = client.next_sample("first", {})
    image_id = sample["id"]
    assert image_id == "case_002"  # first image without a final label
    download = requests.get(f"{server.url}/datastore/image", params={"image": image_id}, timeout=60)
    assert download.status_code == 200
    assert sample["checksum"] == "SHA256:" + hashlib.sha256(download.content).hexdigest()
    image_file = tmp_path / "image.nii.gz"
    image_file.write_bytes(download.content)
    image = nib.load(str(image_file))
    stored = RadiObject(proj.store).CT[image_id]
    assert image.shape == stored.shape
    np.testing.assert_allclose(image.affine, stored.affine, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(image.dataobj), stored.to_numpy())

    label_file, params = client.infer(MODEL, image_id, {})
    pred = nib.load(label_file)
    assert pred.shape == image.shape
    np.testing.assert_allclose(pred.affine, image.affine, atol=1e-4)  # on the grid Slicer shows
    assert set(np.unique(np.asarray(pred.dataobj))) <= {0, 1, 2}
    assert params["label_names"] == {"structure_1": 1, "structure_2": 2}

    saved = client.save_label(image_id, proj.held[image_id], params={"label_info": [{"name": "structure_1", "idx": 1}]})
    assert saved["label"] == image_id
    versions = requests.get(
        f"{server.url}/datastore/label/info", params={"label": image_id, "tag": "final"}, timeout=30
    ).json()["versions"]
    assert [v["annotator"] for v in versions] == ["ann1"]
    np.testing.assert_array_equal(
        RadiObject(proj.store).seg[image_id].to_numpy(), np.asarray(nib.load(proj.held[image_id]).dataobj)
    )
    train_items = requests.get(f"{server.url}/datastore/", params={"output": "train"}, timeout=30).json()
    assert {it["subject_id"] for it in train_items} >= {"case_000", "case_001", image_id}

    checksum_before = requests.get(f"{server.url}/model/info/{MODEL}", timeout=30).json()["checksum"]
    task = client.train_start(
        MODEL, {"max_epochs": 1, "patch_size": [32, 32, 32], "batch_size": 1, "patches_per_volume": 1, "num_workers": 0}
    )
    assert task["status"] in ("SUBMITTED", "RUNNING")
    status = _wait(
        lambda: (s := client.train_status()) and s["status"] not in ("SUBMITTED", "RUNNING") and s,
        timeout=400,
        what="training",
        server=server,
    )
    details = "\n".join(status["details"])
    assert status["status"] == "DONE", details
    assert "Epoch[1] Complete" in details  # progress reaches /train
    runs = os.path.join(server.conf["workspace"], "bundles", MODEL, "runs")
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(runs))  # TensorBoard tracking
    assert requests.get(f"{server.url}/model/info/{MODEL}", timeout=30).json()["checksum"] != checksum_before

    label_file_2, _ = client.infer(MODEL, image_id, {})
    assert nib.load(label_file_2).shape == image.shape
    reloads = [  # logged by the server's own infer task (not a scoring subprocess relayed in the log)
        line
        for line in server.log().splitlines()
        if f"] [{server.proc.pid}] [MainThread] [WARNING] (monailabel.tasks.infer.basic_infer" in line
        and "Reload model from cache" in line
    ]
    assert len(reloads) == 1, reloads  # the infer task picked up the new checkpoint

    # training asks for fresh uncertainty scores: every unlabelled image is re-scored with the new model
    model_ts = int(os.stat(_model_file(server)).st_mtime)

    def rescored():
        objects = client.datastore()["objects"]
        unlabelled = {k: v["image"]["info"] for k, v in objects.items() if "final" not in v["labels"]}
        if unlabelled and all(i.get("epistemic_ts") == model_ts for i in unlabelled.values()):
            return {k: i["epistemic_entropy"] for k, i in unlabelled.items()}
        return None

    scores = _wait(rescored, timeout=400, what="scores from the trained model", server=server)
    assert image_id not in scores
    nxt = client.next_sample("epistemic", {})
    assert nxt["id"] == max(scores, key=scores.get)  # the least certain image comes next
    assert server.network_attempts() == []  # nothing left this machine: no weights, no model zoo


@pytest.mark.slow
@pytest.mark.integration
def test_a_failed_training_says_why_in_train_status_and_train_stats(store_server, tmp_path):
    """A label holding a class the network cannot output: /train/ ends in ERROR and what 3D Slicer
    polls (the status's last detail line, /info/ train_stats) names the label and the classes,
    not the tail of a traceback. The image's good label is saved back afterwards."""
    server, proj = store_server
    client = MONAILabelClient(server.url, tmpdir=str(tmp_path), client_id="ann1")
    # declared as the server already names them (an undeclared store's classes would follow its labels)
    StoreWriter(proj.store).declare_label_classes("seg", ["background", *client.info()["labels"]])
    image_id = "case_002"
    good = nib.load(proj.held[image_id])
    bad = np.asarray(good.dataobj).astype(np.uint8)
    bad[:3, :3, :3] = 7  # the store's labels hold classes 0..2: the network has 3 outputs
    bad_file = tmp_path / "bad.nii.gz"
    nib.save(nib.Nifti1Image(bad, good.affine), str(bad_file))
    client.save_label(image_id, str(bad_file), params={})
    try:
        client.train_start(MODEL, {"max_epochs": 1, "patch_size": [32, 32, 32], "num_workers": 0})
        status = _wait(
            lambda: (s := client.train_status()) and s["status"] not in ("SUBMITTED", "RUNNING") and s,
            timeout=600,
            what="the failing training",
            server=server,
        )
        last = status["details"][-1]
        assert status["status"] == "ERROR", status["details"]
        assert f"seg/{image_id} holds class [7]" in last and "network outputs 3 classes" in last, status["details"]
        assert last.startswith("monailabel_app.lib.errors.TrainingFailed: training of 'ct_segmentation_3d' failed")
        stats = client.info()["train_stats"][MODEL]
        assert "holds class [7]" in stats["error"] and stats["total_time"]
        assert "Traceback" in server.log()  # the full traceback is still in the server's log
    finally:
        client.save_label(image_id, proj.held[image_id], params={})
    assert int(RadiObject(proj.store).seg[image_id].to_numpy().max()) <= 2


def _label_with_cube(shape, corner: int, value: int) -> np.ndarray:
    label = np.zeros(shape, np.uint8)
    label[corner : corner + 6, 2:8, 2:8] = value
    return label


@pytest.mark.integration
def test_concurrent_saves_are_all_kept_and_the_latest_is_served(store_server, tmp_path):
    """Eight annotators save a label for the same image at once: eight versions, none lost."""
    server, proj = store_server
    image_id = "case_005"
    image = nib.load(proj.images[image_id])
    files = {}
    for i in range(8):
        path = str(tmp_path / f"label_{i}.nii.gz")
        nib.save(nib.Nifti1Image(_label_with_cube(image.shape, 2 + i, 1 + i % 2), image.affine), path)
        files[f"ann{i}"] = path
    barrier = threading.Barrier(len(files))
    errors: list[BaseException] = []

    def save(annotator: str) -> None:
        try:
            client = MONAILabelClient(server.url, tmpdir=str(tmp_path), client_id=annotator)
            barrier.wait(timeout=30)
            client.save_label(image_id, files[annotator], tag="final")
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=save, args=(a,)) for a in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors

    info = requests.get(f"{server.url}/datastore/label/info", params={"label": image_id, "tag": "final"}, timeout=30)
    versions = info.json()["versions"]
    assert len(versions) == 8
    assert sorted(v["annotator"] for v in versions) == sorted(files)
    stamps = [v["version"] for v in versions]
    assert stamps == sorted(stamps) and len(set(stamps)) == 8

    uri = RadiObject(proj.store).seg.uri_of(image_id)
    for v in versions:  # each version holds exactly what its annotator sent
        np.testing.assert_array_equal(
            read_version(uri, v["version"]), np.asarray(nib.load(files[v["annotator"]]).dataobj)
        )

    client = MONAILabelClient(server.url, tmpdir=str(tmp_path), client_id="reviewer")
    served = np.asarray(nib.load(client.download_label(image_id, "final")).dataobj)
    np.testing.assert_array_equal(served, np.asarray(nib.load(files[versions[-1]["annotator"]]).dataobj))

    # a reviewer brings back the first version: written again as the newest, the others stay
    first = versions[0]
    restored = requests.put(
        f"{server.url}/datastore/label/info",
        params={"label": image_id, "tag": "final"},
        data={"info": json.dumps({"restore_version": first["version"]})},
        timeout=30,
    )
    assert restored.status_code == 200, restored.text
    after = requests.get(f"{server.url}/datastore/label/info", params={"label": image_id, "tag": "final"}).json()
    assert len(after["versions"]) == 9 and after["versions"][-1]["info"] == {"restored_from": first["version"]}
    served = np.asarray(nib.load(client.download_label(image_id, "final")).dataobj)
    np.testing.assert_array_equal(served, np.asarray(nib.load(files[first["annotator"]]).dataobj))


@pytest.mark.integration
def test_bad_requests_get_clear_4xx_and_change_nothing(store_server, tmp_path):
    server, proj = store_server
    url = server.url
    image_id = "case_004"
    image = nib.load(proj.images[image_id])
    good_label = np.asarray(nib.load(proj.held[image_id]).dataobj)

    def upload(name: str, data: bytes):
        return {"label": (name, data, "application/octet-stream")}

    def nifti_bytes(array, affine=image.affine) -> bytes:
        return nib.Nifti1Image(array, affine).to_bytes()

    wrong_shape = nifti_bytes(good_label[:-2])
    fractional = nifti_bytes(good_label.astype(np.float32) + 0.5)
    shifted = image.affine.copy()
    shifted[0, 3] += 5.0
    gz_path = tmp_path / "good.nii.gz"
    nib.save(nib.Nifti1Image(good_label, image.affine), str(gz_path))
    truncated = gz_path.read_bytes()[:200]
    before = _store_snapshot(proj.store)

    cases = [
        ("get", "/datastore/image", {"image": "no_such_case"}, None, 404, "unknown image id"),
        ("post", f"/infer/{MODEL}", {"image": "no_such_case"}, None, 404, "unknown image id"),
        (
            "put",
            "/datastore/label",
            {"image": "no_such_case"},
            upload("l.nii.gz", nifti_bytes(good_label)),
            404,
            "unknown image id",
        ),
        ("get", "/datastore/image", {"image": "../../etc/passwd"}, None, 400, "invalid image id"),
        ("post", f"/infer/{MODEL}", {"image": "/etc/passwd"}, None, 400, "invalid image id"),
        (
            "put",
            "/datastore/label",
            {"image": f"../{image_id}"},
            upload("l.nii.gz", nifti_bytes(good_label)),
            400,
            "invalid image id",
        ),
        ("put", "/datastore/label", {"image": image_id}, upload("l.nii.gz", wrong_shape), 422, "label shape"),
        (
            "put",
            "/datastore/label",
            {"image": image_id},
            upload("l.nii.gz", nifti_bytes(good_label, shifted)),
            422,
            "affine",
        ),
        ("put", "/datastore/label", {"image": image_id}, upload("l.nii.gz", fractional), 422, "non-integer"),
        (
            "put",
            "/datastore/label",
            {"image": image_id},
            upload("l.nii.gz", os.urandom(4096)),
            400,
            "not a readable NIfTI",
        ),
        ("put", "/datastore/label", {"image": image_id}, upload("l.nii.gz", truncated), 400, "corrupt or truncated"),
        ("put", "/datastore/label", {"image": image_id}, upload("l.nii.gz", b""), 400, "empty"),
        (
            "put",
            "/datastore/label",
            {"image": image_id, "tag": "../x"},
            upload("l.nii.gz", nifti_bytes(good_label)),
            400,
            "invalid label tag",
        ),
        ("delete", "/datastore/label", {"id": "case_000", "tag": "final"}, None, 405, "never deleted"),
        ("delete", "/datastore/image", {"id": "case_000"}, None, 405, "never removed"),
    ]
    for method, path, query, files, status, message in cases:
        response = requests.request(method, url + path, params=query, files=files, timeout=60)
        assert response.status_code == status, (method, path, query, response.status_code, response.text)
        assert re.search(message, response.json()["detail"], re.IGNORECASE), response.text

    assert _store_snapshot(proj.store) == before
    assert requests.get(f"{url}/datastore/label/info", params={"label": image_id, "tag": "final"}).status_code == 404


@pytest.mark.integration
def test_infer_can_keep_its_prediction_as_the_original_label(store_server, tmp_path):
    """``save_label`` in the infer request stores the prediction under tag ``original``, versioned."""
    server, _proj = store_server
    client = MONAILabelClient(server.url, tmpdir=str(tmp_path), client_id="ann2")
    client.infer(MODEL, "case_003", {"save_label": True, "label_tag": "original"})
    info = requests.get(f"{server.url}/datastore/label/info", params={"label": "case_003", "tag": "original"}).json()
    assert [v["source"] for v in info["versions"]] == ["inference"]
    objects = client.datastore()["objects"]
    assert objects["case_003"]["labels"]["original"]["info"]["params"]["label_names"] == {
        "structure_1": 1,
        "structure_2": 2,
    }  # where 3D Slicer looks for the names of an original label
    assert "final" not in objects["case_003"]["labels"]  # still waiting for an annotator
