"""The store on ``s3://`` against a real S3 server (moto, in a child process on 127.0.0.1).

Nothing inside radiobject_adapter is mocked: TileDB's own S3 client (AWS SDK for C++) talks
HTTP to moto's server. See :mod:`radiobject_adapter.testing.s3server` for why the server
runs out of process and why, with moto < 5, clients set ``AWS_REQUEST_CHECKSUM_CALCULATION``.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

pytest.importorskip("moto")
pytest.importorskip("boto3")

from monai.data import NibabelReader
from monai.transforms import LoadImage, LoadImaged

import radiobject_adapter.config as config_module
from radiobject_adapter import (
    RadiObject,
    S3Config,
    StoreNotFoundError,
    TileDBStats,
    configure,
    ingest_niftis,
)
from radiobject_adapter.config import current_settings, tiledb_config
from radiobject_adapter.synthetic import SyntheticDataset
from radiobject_adapter.testing import S3Server

pytestmark = [pytest.mark.timeout(60), pytest.mark.integration]

N_SUBJECTS = 3  # of the six in `synthetic_ct`: every S3 request is a loopback round trip


@pytest.fixture(scope="session")
def s3(s3_session: S3Server) -> S3Server:
    """moto's S3 server on a free loopback port (shared, tests/conftest.py); credentials
    (random) exported to env."""
    return s3_session


def _s3_config(srv: S3Server) -> S3Config:
    # credentials deliberately not passed: tiledb_config() takes them from the environment
    return S3Config(**srv.s3_config_kwargs(), connect_max_tries=2)


@pytest.fixture(autouse=True)
def _use_s3(s3: S3Server) -> None:
    """Every test here talks to the server, whatever another test configured before."""
    wanted = _s3_config(s3)
    if current_settings().s3 != wanted:
        configure(s3=wanted)


@pytest.fixture(scope="session")
def subjects(synthetic_ct: SyntheticDataset) -> list[str]:
    return sorted(synthetic_ct.subject_ids)[:N_SUBJECTS]


@pytest.fixture(scope="session")
def s3_store(s3: S3Server, synthetic_ct: SyntheticDataset, subjects: list[str]) -> str:
    """The first subjects of `synthetic_ct` (CT + seg + subject table) ingested into S3."""
    configure(s3=_s3_config(s3))
    uri = f"s3://{s3.bucket}/store"
    report = ingest_niftis(
        uri, synthetic_ct.first(len(subjects)), obs_meta=synthetic_ct.subject_table, tile_extent=16, progress=False
    )
    assert report.ok, report.summary()
    assert sorted(report.written["CT"]) == sorted(report.written["seg"]) == subjects
    return uri


def _nifti(synthetic_ct: SyntheticDataset, sid: str, label: bool = False) -> nib.Nifti1Image:
    paths = synthetic_ct.labels if label else synthetic_ct.images
    return nib.load(next(p for p in paths if Path(p).name.startswith(sid)))


def test_server_listens_on_loopback_and_has_the_bucket(s3: S3Server) -> None:
    assert s3.endpoint_url.startswith("http://127.0.0.1:")
    # started and answered (S3Server.start raises after start_timeout): counted, not timed
    assert s3.startup_seconds is not None and 1 <= s3.start_attempts <= 3
    assert s3.bucket in [b["Name"] for b in s3.boto3_client().list_buckets()["Buckets"]]
    assert s3.secret_access_key not in repr(s3) and s3.access_key_id not in repr(s3)


def test_store_opens_from_s3(s3_store: str, subjects: list[str]) -> None:
    radi = RadiObject(s3_store + "/")
    assert radi.uri == s3_store  # an s3 URI is kept as is, never made "absolute"
    assert radi.collection_names == ("CT", "seg")
    assert radi.subject_ids == subjects
    assert list(radi.obs_meta["obs_subject_id"]) == subjects
    assert set(radi.obs_meta.columns) >= {"obs_subject_id", "diagnosis", "age"}


def test_partial_reads_match_nibabel(s3_store: str, synthetic_ct: SyntheticDataset, subjects: list[str]) -> None:
    radi = RadiObject(s3_store)
    rng = np.random.default_rng(3)
    for sid in subjects:
        ref_img = _nifti(synthetic_ct, sid)
        ref = np.asarray(ref_img.dataobj)
        vol = radi.CT[sid]
        assert vol.shape == ref.shape and vol.dtype == np.int16
        np.testing.assert_allclose(vol.affine, ref_img.affine, atol=1e-5)
        start = [int(rng.integers(0, n - 16)) for n in ref.shape]
        box = tuple(slice(s, s + 16) for s in start)  # crosses tile borders (tiles are 16³)
        np.testing.assert_array_equal(vol[box], ref[box])
        z = ref.shape[2] // 2
        np.testing.assert_array_equal(vol.axial(z), ref[:, :, z])
        lbl = radi.seg[sid]
        np.testing.assert_array_equal(lbl[box], np.asarray(_nifti(synthetic_ct, sid, label=True).dataobj)[box])
    sid = subjects[0]
    np.testing.assert_array_equal(radi.CT[sid].to_numpy(), np.asarray(_nifti(synthetic_ct, sid).dataobj))


def test_patch_reads_take_one_query_each_without_retries(s3_store: str, subjects: list[str]) -> None:
    vol = RadiObject(s3_store).CT[subjects[0]]
    vol[0:16, 0:16, 0:16]  # open + first read
    with TileDBStats() as stats:
        for i in range(5):
            vol[i : i + 16, 0:16, 0:16]
    # a stalled read (curl's timeout) fails its query and is retried: counted, not timed
    assert stats.queries == 5, stats.queries
    assert stats.s3_slow_down_retries == 0, stats.counters


def test_loadimaged_reads_datalist_entries(s3_store: str, synthetic_ct: SyntheticDataset) -> None:
    radi = RadiObject(s3_store)
    items = radi.datalist(image="CT", label="seg")[:2]
    assert all(it["image"].startswith(f"{s3_store}::CT/") for it in items)
    load = LoadImaged(
        keys=["image", "label"], reader="radiobject_adapter.TileDBReader", expanduser=False, image_only=True
    )
    for item in items:
        out = load(item)
        src = _nifti(synthetic_ct, item["subject_id"])
        ref = LoadImage(reader=NibabelReader(), image_only=True)(src.get_filename())
        assert torch.equal(out["image"].as_tensor(), ref.as_tensor())
        np.testing.assert_array_equal(np.asarray(out["image"].affine), np.asarray(ref.affine))
        np.testing.assert_array_equal(
            out["label"].numpy(), np.asarray(_nifti(synthetic_ct, item["subject_id"], label=True).dataobj)
        )


class _Patches(torch.utils.data.Dataset):
    def __init__(self, address: str) -> None:
        self.address = address

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> torch.Tensor:
        from radiobject_adapter import resolve_volume

        return torch.from_numpy(resolve_volume(self.address)[i : i + 8, 0:8, 0:8].astype(np.int16))


def test_forked_dataloader_workers_read_from_s3(s3_store: str, subjects: list[str]) -> None:
    """Workers forked after the parent used TileDB's S3 client get their own context and read."""
    import multiprocessing

    address = RadiObject(s3_store).datalist(image="CT")[0]["image"]
    ds = _Patches(address)
    expected = [ds[i] for i in range(len(ds))]  # the parent's S3 client is live before the fork
    loader = torch.utils.data.DataLoader(
        ds, batch_size=None, num_workers=2, multiprocessing_context=multiprocessing.get_context("fork"), timeout=30
    )
    got = list(loader)
    assert all(torch.equal(a, b) for a, b in zip(got, expected)) and len(got) == len(expected)


def test_repr_hides_credentials(s3: S3Server) -> None:
    cfg = S3Config(**s3.s3_config_kwargs(with_credentials=True))
    for text in (repr(cfg), str(cfg), repr(current_settings())):
        assert s3.access_key_id not in text and s3.secret_access_key not in text
    configure(s3=cfg)
    try:
        assert s3.secret_access_key not in str(tiledb_config())  # TileDB masks the secret
        assert s3.secret_access_key not in repr(current_settings())
    finally:
        configure(s3=_s3_config(s3))


@pytest.mark.parametrize("where", ["missing store", "missing bucket", "server down"])
def test_failing_open_does_not_leak_credentials(s3: S3Server, where: str, monkeypatch) -> None:
    cfg = S3Config(**s3.s3_config_kwargs(with_credentials=True), connect_max_tries=1)
    uri = f"s3://{s3.bucket}/no-such-store"
    if where == "missing bucket":
        uri = "s3://no-such-bucket-radiobundles/store"
    if where == "server down":
        # a loopback port with nothing listening: connection refused at once
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        cfg = S3Config(
            endpoint_override=f"127.0.0.1:{port}",
            scheme="http",
            use_virtual_addressing=False,
            connect_max_tries=1,
            aws_access_key_id=s3.access_key_id,
            aws_secret_access_key=s3.secret_access_key,
        )
    configure(s3=cfg)
    backoffs: list[float] = []  # the waits between read retries, counted instead of timed
    monkeypatch.setattr(config_module.time, "sleep", backoffs.append)
    try:
        with pytest.raises(StoreNotFoundError) as info:
            RadiObject(uri)
    finally:
        monkeypatch.undo()
        configure(s3=_s3_config(s3))
    read = current_settings().read
    assert len(backoffs) <= read.retries  # a bounded number of tries, then the error
    assert sum(backoffs) <= read.retry_backoff_s * (2**read.retries - 1)
    chain, err = [], info.value
    while err is not None:
        chain.append(f"{type(err).__name__}: {err!s} {err!r}")
        err = err.__cause__ or err.__context__
    text = "\n".join(chain)
    assert uri in text
    assert s3.access_key_id not in text and s3.secret_access_key not in text


def test_stored_objects_and_metadata_hold_no_credentials(s3: S3Server, s3_store: str) -> None:
    radi = RadiObject(s3_store)
    metas = [radi.metadata, *(radi.collection(n).metadata for n in radi.collection_names)]
    metas += [v.metadata for n in radi.collection_names for v in radi.collection(n)]
    text = repr(metas) + radi.obs_meta.to_csv() + radi.CT.obs.to_csv()
    assert "case_000" in text and "source_path" in text
    # every byte the store wrote, not only what our API shows
    client = s3.boto3_client()
    keys = [
        o["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix="store/")
        for o in page.get("Contents", [])
    ]
    assert len(keys) > 20
    secrets = (s3.access_key_id.encode(), s3.secret_access_key.encode())
    for key in keys:
        body = client.get_object(Bucket=s3.bucket, Key=key)["Body"].read()
        assert not any(s in body for s in secrets), key
    for s in secrets:
        assert s.decode() not in text
