"""Shared fixtures: small synthetic CT-like NIfTI datasets, stores made from them, an S3 server."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from radiobject_adapter import ingest_niftis
from radiobject_adapter.synthetic import SyntheticDataset, make_ct_dataset

if TYPE_CHECKING:
    from radiobject_adapter import S3Config
    from radiobject_adapter.testing import S3Server

os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="session")
def synthetic_ct(tmp_path_factory: pytest.TempPathFactory) -> SyntheticDataset:
    """Six subjects of varying shape and spacing, oblique affines, int16 CT + uint8 labels."""
    root = tmp_path_factory.mktemp("synthetic_ct")
    return make_ct_dataset(str(root), n_subjects=6, shape_range=((40, 56), (36, 52), (24, 36)), oblique=True, seed=7)


@pytest.fixture(scope="session")
def ct_store(synthetic_ct: SyntheticDataset, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store (isotropic 16³ tiles) with collections ``CT`` and ``seg`` and a subject table."""
    from radiobject_adapter import ingest_niftis

    uri = str(tmp_path_factory.mktemp("stores") / "ct_store")
    report = ingest_niftis(
        uri,
        {"CT": synthetic_ct.images_dir, "seg": synthetic_ct.labels_dir},
        obs_meta=synthetic_ct.subject_table,
        tile_extent=16,
        progress=False,
    )
    assert report.ok, report.summary()
    return uri


# -- S3 ---------------------------------------------------------------------------------------
S3_BUCKET = "radiobundles-tests"


@pytest.fixture(scope="session")
def s3_session() -> Iterator[S3Server]:
    """moto's S3 server (a child process on 127.0.0.1) shared by every S3 test of the session.

    One bucket; each test module writes under its own prefix. The server's credentials (random)
    are in ``os.environ`` while it runs, for TileDB's S3 client and forked workers; child
    processes (bundle runs, MONAI Label servers) also need :attr:`S3Server.process_env`.
    """
    pytest.importorskip("moto")
    pytest.importorskip("boto3")
    from radiobject_adapter import S3Config, configure
    from radiobject_adapter.testing import s3_server

    with s3_server(bucket=S3_BUCKET) as srv:
        yield srv
    configure(s3=S3Config())  # back to defaults for whatever runs after


def s3_config_for(srv: S3Server) -> S3Config:
    """Settings that point this process at ``srv`` (credentials from the environment)."""
    from radiobject_adapter import S3Config

    return S3Config(**srv.s3_config_kwargs(), connect_max_tries=2)


@pytest.fixture(scope="session")
def point_at_s3(s3_session: S3Server) -> Callable[[], S3Server]:
    """``point_at_s3()`` makes this process talk to the session's S3 server (whatever an earlier
    test configured) and returns the server; for fixtures of any scope."""
    from radiobject_adapter import configure
    from radiobject_adapter.config import current_settings

    def point() -> S3Server:
        wanted = s3_config_for(s3_session)
        if current_settings().s3 != wanted:
            configure(s3=wanted)
        return s3_session

    return point


@pytest.fixture
def use_s3(point_at_s3: Callable[[], S3Server]) -> S3Server:
    """This process talks to the session's S3 server during the test."""
    return point_at_s3()


# 4 subjects of 32x32x8 as NIfTI and their axial store: the slice bundle's scripts tests and the
# HPO / Ray Tune driver tests (built once per session)
@pytest.fixture(scope="session")
def tiny_nifti(tmp_path_factory: pytest.TempPathFactory) -> SyntheticDataset:
    root = tmp_path_factory.mktemp("slice2d_nifti")
    return make_ct_dataset(str(root), n_subjects=4, shape_range=((32, 32), (32, 32), (8, 8)), n_classes=1, seed=3)


@pytest.fixture(scope="session")
def tiny_axial_store(tiny_nifti: SyntheticDataset, tmp_path_factory: pytest.TempPathFactory) -> str:
    uri = str(tmp_path_factory.mktemp("slice2d_stores") / "axial")
    report = ingest_niftis(
        uri, {"CT": tiny_nifti.images_dir, "seg": tiny_nifti.labels_dir}, tiling="axial", progress=False
    )
    assert report.ok, report.summary()
    return uri
