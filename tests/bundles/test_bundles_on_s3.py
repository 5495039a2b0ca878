"""The ``ct_segmentation_3d`` bundle on an ``s3://`` store: train, evaluate and infer as a user runs them.

Each step is the real command line (``python -m monai.bundle run ... --dataset_dir s3://...``) in a
new process. Such a process knows nothing of ``configure()`` calls in the test process: it finds
the S3 server through the environment (``AWS_ENDPOINT_URL_S3``, path-style addressing, AWS
credentials; :mod:`radiobject_adapter.s3env`), exactly as it would find MinIO or AWS. The server
is moto's (a child process on loopback, see tests/conftest.py); nothing of ours is mocked.
Checkpoints, logs and NIfTI predictions go to local folders; predictions also go back into the
store on S3 (``pred_collection``).
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from radiobject_adapter import RadiObject, ingest_niftis
from radiobject_adapter.synthetic import SyntheticDataset
from radiobject_adapter.testing import S3Server
from radiobundles.datalists import make_datalist
from radiobundles.resources import bundle_environ

pytestmark = [pytest.mark.timeout(300), pytest.mark.integration, pytest.mark.slow]

CONFIGS = Path(__file__).resolve().parents[2] / "bundles" / "ct_segmentation_3d" / "configs"
TRAIN, EVALUATE, INFERENCE = (str(CONFIGS / f"{n}.json") for n in ("train", "evaluate", "inference"))
N_SUBJECTS = 3  # every read is a loopback HTTP round trip: keep the store small
VAL_FRACTION = 0.34  # one validation subject of three

# as tests/bundles/test_ct_segmentation_3d.py: a network small enough for 16^3 patches
TINY = {
    "network_def#channels": [8, 16, 32],
    "network_def#strides": [2, 2],
    "network_def#num_res_units": 1,
    "patch_size": [16, 16, 16],
    "num_workers": 0,
    "sw_batch_size": 16,
    "sw_overlap": 0.25,
    "device": "cpu",
    "val_fraction": VAL_FRACTION,
}
# two forked DataLoader workers: each must open its own TileDB context with the S3 settings
TINY_TRAIN = {**TINY, "max_epochs": 1, "batch_size": 2, "patches_per_volume": 2, "num_workers": 2}


@pytest.fixture(scope="module")
def s3_store(point_at_s3: Callable[[], S3Server], synthetic_ct: SyntheticDataset) -> str:
    """The first subjects of ``synthetic_ct`` (CT + seg) ingested into the shared S3 bucket."""
    srv = point_at_s3()
    uri = f"s3://{srv.bucket}/bundles/ct_store"
    report = ingest_niftis(
        uri, synthetic_ct.first(N_SUBJECTS), obs_meta=synthetic_ct.subject_table, tile_extent=16, progress=False
    )
    assert report.ok, report.summary()
    return uri


def _bundle_run(
    config_file: str | list[str], store: str, srv: S3Server, overrides: dict
) -> subprocess.CompletedProcess:
    """``python -m monai.bundle run`` in a new process that reaches S3 through its environment only."""
    files = config_file if isinstance(config_file, str) else "[" + ",".join(f"'{f}'" for f in config_file) + "]"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", files, "--dataset_dir", store]
    for key, value in overrides.items():
        cmd += [f"--{key}", json.dumps(value) if isinstance(value, list) else str(value)]
    env = bundle_environ(CONFIGS.parent, {**os.environ, **srv.process_env, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"})
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc


def _store_requests(srv: S3Server, prefix: str) -> int:
    """Requests for objects under ``prefix`` that moto's server has logged so far."""
    assert srv.log_path is not None
    with open(srv.log_path, errors="replace") as fh:
        return sum(f"/{srv.bucket}/{prefix}" in line for line in fh)


def _scalar_tags(log_dir: Path) -> list[str]:
    files = glob.glob(str(log_dir / "events.out.tfevents.*"))
    assert len(files) == 1, files
    acc = EventAccumulator(files[0], size_guidance={"scalars": 0})
    acc.Reload()
    return acc.Tags()["scalars"]


def test_train_evaluate_and_infer_from_an_s3_store(s3_store: str, use_s3: S3Server, tmp_path: Path) -> None:
    """One tiny epoch, evaluation and inference, each a ``monai.bundle run`` process on ``s3://``."""
    outputs = {"bundle_root": str(tmp_path), "ckpt_dir": str(tmp_path / "models"), "log_dir": str(tmp_path / "runs")}
    validation = make_datalist(s3_store, split="validation", val_fraction=VAL_FRACTION)
    assert len(validation) == 1 and validation[0]["image"].startswith(f"{s3_store}::CT/")

    before = _store_requests(use_s3, "bundles/ct_store/")
    _bundle_run(TRAIN, s3_store, use_s3, {**TINY_TRAIN, **outputs, "output_dir": str(tmp_path / "eval")})
    assert _store_requests(use_s3, "bundles/ct_store/") > before  # the volumes came from S3
    assert (tmp_path / "models" / "model.pt").is_file()
    assert {"train_loss", "val_mean_dice"} <= set(_scalar_tags(tmp_path / "runs"))

    _bundle_run([TRAIN, EVALUATE], s3_store, use_s3, {**TINY, **outputs, "output_dir": str(tmp_path / "eval")})
    summary = json.loads((tmp_path / "eval" / "metrics_summary.json").read_text())
    assert summary["subjects"] == len(validation)

    predictions = tmp_path / "predictions"
    overrides = {**TINY, "split": "validation", "pred_collection": "pred", "output_dir": str(predictions)}
    _bundle_run(INFERENCE, s3_store, use_s3, {**overrides, "ckpt_dir": outputs["ckpt_dir"]})
    radi = RadiObject(s3_store)
    assert "pred" in radi.collection_names  # written back into the store on S3
    sids = [it["subject_id"] for it in validation]
    assert sorted(p.name for p in predictions.iterdir()) == [f"{s}_seg.nii.gz" for s in sids]
    for sid in sids:
        nifti = nib.load(predictions / f"{sid}_seg.nii.gz")
        assert nifti.shape == radi.CT[sid].shape
        np.testing.assert_allclose(nifti.affine, radi.CT[sid].affine, atol=1e-5)
        stored = radi.pred[sid].to_numpy()
        np.testing.assert_array_equal(np.asanyarray(nifti.dataobj), stored)
        assert set(np.unique(stored)) <= {0, 1, 2}
