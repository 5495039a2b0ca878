"""S3 reads under injected faults: 503 bursts, dropped and hung connections, outages.

Setup: moto's S3 server (child process, :mod:`radiobject_adapter.testing.s3server`) behind a
fault-injecting TCP proxy (child process, :mod:`tests.harness.faultproxy`);
TileDB's own S3 client (AWS SDK for C++ over curl) talks to the proxy. Nothing in
radiobject_adapter is mocked. Every fault test checks the proxy's counters, so a test that
passes has really been served the faults it claims.

Two retry layers are exercised (measured with libtiledb 2.30 / TileDB-Py 0.36.1):

* **The AWS SDK inside libtiledb** retries one HTTP request: dropped/reset connections,
  5xx (``InternalError``, ``ServiceUnavailable``) and stalled responses up to
  ``vfs.s3.connect_max_tries`` *retries*, waiting 0, then ``2**k * connect_scale_factor`` ms
  (k = 1, 2, ...): 0.75 s in all with the defaults (5, 25 ms). An error the SDK reads as
  ``SlowDown`` (503 SlowDown with its XML body, or 429) is retried apart from that budget,
  up to 100 times, 1.25-1.75 s apart.
* **``Volume.read_box``** retries a query that failed anyway (``ReadConfig.retries``,
  ``retry_backoff_s * 2**attempt``), reopening the array, then raises ``VolumeReadError``.

The S3 client does not keep connections alive against moto (one request per connection),
so "the next n connections" of the proxy are the next n requests.

A summary of the faults served is printed at the end of the module (``pytest -s``).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch

pytest.importorskip("moto")
pytest.importorskip("boto3")

from radiobject_adapter import (
    RadiObject,
    ReadConfig,
    S3Config,
    TileDBStats,
    Volume,
    VolumeReadError,
    configure,
    ingest_niftis,
    resolve_volume,
)
from radiobject_adapter.config import current_settings, reset_caches
from radiobject_adapter.synthetic import SyntheticDataset
from radiobject_adapter.testing import S3Server, s3_server
from tests.harness.faultproxy import FaultProxy

pytestmark = [pytest.mark.timeout(120), pytest.mark.integration]

BUCKET = "radiobundles-s3-faults"
N_SUBJECTS = 2
SDK_RETRIES = 2  # vfs.s3.connect_max_tries: retries of one HTTP request inside the AWS SDK
READ = ReadConfig(retries=3, retry_backoff_s=0.1)  # Volume.read_box: 0.1 + 0.2 + 0.4 s of pauses
BOX = (slice(3, 27), slice(5, 29), slice(2, 18))  # 24 x 24 x 16 voxels: crosses 16^3 tiles

# faults served during reads that then returned correct data, and faults of a permanent
# outage (expected to fail); printed at the end of the module
TALLY: dict[str, int] = {"retried_ok": 0, "permanent": 0, "reads_ok": 0}


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def env() -> Iterator[tuple[S3Server, FaultProxy]]:
    """moto's server and the proxy in front of it, both child processes on 127.0.0.1."""
    with s3_server(bucket=BUCKET) as srv, FaultProxy(srv.port) as proxy:
        yield srv, proxy
        total = proxy.stats()
    configure(s3=S3Config(), read=ReadConfig())  # defaults for whatever runs next
    print(
        f"\n[s3-faults] faults served by the proxy: {total['faults']} "
        f"(status {total['status']}, dropped {total['dropped']}, stalled {total['stalled']}, "
        f"down {total['down']}); retried with correct data: {TALLY['retried_ok']}; "
        f"permanent-outage faults (expected errors): {TALLY['permanent']}; "
        f"reads checked: {TALLY['reads_ok']}"
    )


def _s3_config(srv: S3Server, proxy: FaultProxy, **overrides: Any) -> S3Config:
    kwargs: dict[str, Any] = {
        "endpoint_override": proxy.endpoint_override,
        "scheme": "http",
        "use_virtual_addressing": False,
        "region": srv.region,
        "connect_max_tries": SDK_RETRIES,
        "connect_timeout_ms": 1000,
        "request_timeout_ms": 2000,  # a stalled response is cut after 2 s (whole seconds)
    }
    kwargs.update(overrides)
    return S3Config(**kwargs)


@pytest.fixture(autouse=True)
def _through_proxy(env: tuple[S3Server, FaultProxy]) -> Iterator[FaultProxy]:
    """Each test starts with the proxy piping, our settings, and a new TileDB context (so no
    read-ahead cache of an earlier test can serve a read that should meet a fault)."""
    srv, proxy = env
    proxy.passthrough()
    wanted = _s3_config(srv, proxy)
    if current_settings().s3 != wanted or current_settings().read != READ:
        configure(s3=wanted, read=READ)
    reset_caches()
    yield proxy
    proxy.passthrough()


@pytest.fixture(scope="module")
def subjects(synthetic_ct: SyntheticDataset) -> list[str]:
    return sorted(synthetic_ct.subject_ids)[:N_SUBJECTS]


@pytest.fixture(scope="module")
def store(env: tuple[S3Server, FaultProxy], synthetic_ct: SyntheticDataset, subjects: list[str]) -> str:
    """CT of the first subjects ingested into S3 *through the proxy* (pass mode)."""
    srv, proxy = env
    configure(s3=_s3_config(srv, proxy), read=READ)
    uri = f"s3://{srv.bucket}/store"
    images = synthetic_ct.first(len(subjects))["CT"]
    before = proxy.stats()
    report = ingest_niftis(uri, {"CT": images}, obs_meta=synthetic_ct.subject_table, tile_extent=16, progress=False)
    assert report.ok, report.summary()
    after = proxy.stats()
    assert after["piped"] - before["piped"] > 20 and after["faults"] == before["faults"]
    return uri


@pytest.fixture(scope="module")
def reference(synthetic_ct: SyntheticDataset, subjects: list[str]) -> dict[str, np.ndarray]:
    return {
        sid: np.asarray(nib.load(next(p for p in synthetic_ct.images if Path(p).name.startswith(sid))).dataobj)
        for sid in subjects
    }


def _fresh_volume(store: str, sid: str) -> Volume:
    """A volume whose array is open (schema, fragment list) but whose tiles were never read."""
    vol = RadiObject(store).CT[sid]
    assert vol.shape[0] >= 27 and vol.shape[2] >= 18
    return vol


@contextlib.contextmanager
def _served(proxy: FaultProxy) -> Iterator[dict[str, Any]]:
    """Proxy counters served inside the block (filled in on exit), with the fault log."""
    before = proxy.stats()
    out: dict[str, Any] = {}
    yield out
    after = proxy.stats()
    for key in ("connections", "piped", "faults", "status", "dropped", "stalled", "down", "killed"):
        out[key] = after[key] - before[key]
    out["status_503"] = after.get("status_503", 0) - before.get("status_503", 0)
    out["log"] = after["fault_log"][-out["faults"] :] if out["faults"] else []
    out["left"] = after["fail_left"] + after["drop_left"] + after["stall_left"]


def _check_read(vol: Volume, ref: np.ndarray, box: tuple[slice, ...] = BOX) -> None:
    np.testing.assert_array_equal(vol[box], ref[box])
    TALLY["reads_ok"] += 1


# -- (a) 503 bursts -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("n", "status", "code"),
    [
        (2, 503, None),  # "503 Slow Down": the SDK's own unbounded SlowDown path
        (SDK_RETRIES + 3, 503, "ServiceUnavailable"),  # outlasts the SDK: Volume retries too
        (SDK_RETRIES + 3, 500, None),  # InternalError
    ],
    ids=["503-SlowDown", "503-ServiceUnavailable", "500-InternalError"],
)
def test_reads_during_a_5xx_burst_succeed_after_it(
    store: str,
    subjects: list[str],
    reference: dict[str, np.ndarray],
    _through_proxy: FaultProxy,
    n: int,
    status: int,
    code: str | None,
) -> None:
    proxy = _through_proxy
    vol = _fresh_volume(store, subjects[0])
    with _served(proxy) as served:
        proxy.fail_next(n, status=status, code=code)
        t0 = time.perf_counter()
        with TileDBStats() as stats:
            _check_read(vol, reference[subjects[0]])
        elapsed = time.perf_counter() - t0
    assert served["status"] == n and served["left"] == 0, served  # the whole burst was served
    if status == 503:
        assert served["status_503"] == n
    # ranged GETs of the volume, and (after a failed query) the listings of its reopening
    assert all(f["request"].split(" ")[1].startswith(f"/{BUCKET}") for f in served["log"]), served["log"]
    if n > SDK_RETRIES + 1:  # more faults than one request's SDK tries: read_box retried the query
        assert stats.queries >= 2, stats.queries
    assert stats.queries <= READ.retries + 1, stats.queries  # bounded: within read_box's retry budget
    TALLY["retried_ok"] += served["faults"]
    print(f"[{status} {code or ''} x{n}] read in {elapsed:.2f} s, {stats.queries} quer(y/ies), {served['log'][:2]}")


# -- (b) dropped connections --------------------------------------------------------------------
@pytest.mark.parametrize("reset", [True, False], ids=["RST", "FIN"])
def test_reads_after_dropped_connections_succeed(
    store: str, subjects: list[str], reference: dict[str, np.ndarray], _through_proxy: FaultProxy, reset: bool
) -> None:
    proxy = _through_proxy
    vol = _fresh_volume(store, subjects[1])
    n = SDK_RETRIES + 2  # more than one request may fail: Volume.read_box retries the query
    with _served(proxy) as served:
        proxy.drop_next(n, reset=reset)
        with TileDBStats() as stats:
            _check_read(vol, reference[subjects[1]])
    assert served["dropped"] == n and served["left"] == 0, served
    assert stats.queries <= READ.retries + 1, stats.queries  # bounded: within read_box's retry budget
    TALLY["retried_ok"] += served["faults"]


def test_a_hung_response_is_cut_by_request_timeout_and_retried(
    env: tuple[S3Server, FaultProxy], store: str, subjects: list[str], reference: dict[str, np.ndarray]
) -> None:
    """``request_timeout_ms`` is curl's low-speed limit (< 1 byte/s for that many *whole*
    seconds), not a total: a server that accepts and never answers costs that long a try."""
    srv, proxy = env
    configure(s3=_s3_config(srv, proxy, request_timeout_ms=1000), read=READ)
    vol = _fresh_volume(store, subjects[0])
    with _served(proxy) as served:
        proxy.stall_next(1, seconds=20)
        with TileDBStats() as stats:
            _check_read(vol, reference[subjects[0]])
    assert served["stalled"] == 1 and served["left"] == 0, served
    held = proxy.stats()["stall_seconds"][-1]  # how long the client waited on the 20 s stall
    assert 0.8 < held < 5, held
    assert stats.queries == 1, stats.queries  # the SDK's retry of that one request sufficed
    TALLY["retried_ok"] += served["faults"]


def test_an_outage_shorter_than_the_retry_budget_is_bridged(
    store: str, subjects: list[str], reference: dict[str, np.ndarray], _through_proxy: FaultProxy
) -> None:
    """Every connection is reset for 0.3 s (the proxy recovers by itself: a thread of this
    process could not, TileDB-Py holds the GIL); SDK and Volume retries wait it out."""
    proxy = _through_proxy
    vol = _fresh_volume(store, subjects[1])
    with _served(proxy) as served:
        proxy.down(seconds=0.3)
        t0 = time.perf_counter()
        with TileDBStats() as stats:
            _check_read(vol, reference[subjects[1]])
        elapsed = time.perf_counter() - t0
    assert served["down"] >= 1 and proxy.stats()["mode"] == "pass", served
    assert stats.queries <= READ.retries + 1, stats.queries  # bounded: within read_box's retry budget
    TALLY["retried_ok"] += served["faults"]
    print(f"[outage 0.3 s] read in {elapsed:.2f} s after {served['down']} refused requests, {stats.queries} queries")


# -- (c) permanent outage, (d) recovery ---------------------------------------------------------
def _error_text(err: BaseException) -> str:
    chain: list[str] = []
    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        chain.append(f"{type(cur).__name__}: {cur!s} {cur!r} {cur.args!r}")
        cur = cur.__cause__ or cur.__context__
    return "\n".join(chain)


def test_permanent_outage_raises_an_error_naming_uri_and_cause(
    env: tuple[S3Server, FaultProxy], store: str, subjects: list[str]
) -> None:
    srv, proxy = env
    # explicit credentials this time: the likeliest way for them to reach an error message
    configure(
        s3=_s3_config(srv, proxy, aws_access_key_id=srv.access_key_id, aws_secret_access_key=srv.secret_access_key),
        read=READ,
    )
    vol = _fresh_volume(store, subjects[0])
    with _served(proxy) as served:
        proxy.down()
        t0 = time.perf_counter()
        with TileDBStats() as stats, pytest.raises(VolumeReadError) as info:
            vol[BOX]
        elapsed = time.perf_counter() - t0
    attempts = READ.retries + 1
    # every attempt of read_box made at least one request, each tried 1 + SDK_RETRIES times
    assert served["down"] >= attempts * (SDK_RETRIES + 1), served
    assert stats.queries == attempts, stats.queries  # bounded: gives up after its retry budget
    message = str(info.value)
    assert vol.uri in message and f"after {attempts} attempt(s)" in message, message
    assert "S3" in message and ("curl" in message or "Connection reset" in message), message  # the cause
    text = _error_text(info.value)
    assert srv.access_key_id not in text and srv.secret_access_key not in text
    assert srv.access_key_id not in repr(proxy.stats()["fault_log"])  # request lines only
    TALLY["permanent"] += served["faults"]
    print(
        f"[permanent outage] VolumeReadError after {elapsed:.2f} s, {served['down']} refused requests: {message[:160]}"
    )


def test_the_same_volume_reads_again_after_recovery(
    store: str, subjects: list[str], reference: dict[str, np.ndarray], _through_proxy: FaultProxy
) -> None:
    proxy = _through_proxy
    vol = _fresh_volume(store, subjects[1])
    _check_read(vol, reference[subjects[1]], (slice(0, 8), slice(0, 8), slice(0, 8)))
    with _served(proxy) as served:
        proxy.down()
        reset_caches()  # drop the read-ahead cache: the next read must reach the server
        with pytest.raises(VolumeReadError):
            vol[BOX]
        proxy.passthrough()
        _check_read(vol, reference[subjects[1]])  # same object, no reopening by the caller
        np.testing.assert_array_equal(vol.axial(5), reference[subjects[1]][:, :, 5])
    assert served["down"] > 0 and served["piped"] > 0, served
    TALLY["permanent"] += served["faults"]


# -- (e) statistics -----------------------------------------------------------------------------
def test_tiledb_stats_report_s3_requests_and_bytes(
    store: str, subjects: list[str], reference: dict[str, np.ndarray], _through_proxy: FaultProxy
) -> None:
    proxy = _through_proxy
    vol = _fresh_volume(store, subjects[0])
    with _served(proxy) as served, TileDBStats() as stats:
        _check_read(vol, reference[subjects[0]])
    assert served["piped"] > 0  # the read did reach the server
    assert stats.queries == 1
    assert stats.s3_requests > 0, stats.counters
    assert stats.s3_bytes > 0, stats.counters
    assert stats.s3_bytes >= vol[BOX].nbytes // 50  # compressed int16 tiles, not nothing
    print(f"[stats] {stats.summary()} s3_bytes={stats.s3_bytes}; HTTP requests seen by the proxy: {served['piped']}")


# -- (f) DataLoader workers ---------------------------------------------------------------------
class _Patches(torch.utils.data.Dataset):
    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses

    def __len__(self) -> int:
        return 4 * len(self.addresses)

    def __getitem__(self, i: int) -> torch.Tensor:
        vol = resolve_volume(self.addresses[i % len(self.addresses)])
        k = i // len(self.addresses)
        return torch.from_numpy(vol[4 * k : 4 * k + 16, 2:18, 1:17].astype(np.int16))


def test_dataloader_workers_complete_during_a_503_burst(
    store: str, subjects: list[str], reference: dict[str, np.ndarray], _through_proxy: FaultProxy
) -> None:
    """Every request gets 503 for 0.5 s from the first worker request on: longer than one
    request's SDK tries (0 + 50 ms), so the workers' own retries must bridge it, including
    while they open the store (``resolve_volume``) before their first patch."""
    proxy = _through_proxy
    addresses = [a["image"] for a in RadiObject(store).datalist(image="CT")]
    ds = _Patches(addresses)
    by_address = {a: reference[a.rsplit("/", 1)[1]] for a in addresses}
    expected = [
        torch.from_numpy(
            by_address[addresses[i % len(addresses)]][4 * (i // len(addresses)) :][:16, 2:18, 1:17].astype(np.int16)
        )
        for i in range(len(ds))
    ]
    loader = torch.utils.data.DataLoader(
        ds, batch_size=None, num_workers=2, multiprocessing_context=multiprocessing.get_context("fork"), timeout=60
    )
    with _served(proxy) as served:
        proxy.down(status=503, code="ServiceUnavailable", seconds=0.5, from_first_connection=True)
        t0 = time.perf_counter()
        got = list(loader)
        elapsed = time.perf_counter() - t0
    assert len(got) == len(expected) and all(torch.equal(a, b) for a, b in zip(got, expected))
    assert served["status_503"] > SDK_RETRIES + 1 and proxy.stats()["mode"] == "pass", served
    TALLY["retried_ok"] += served["faults"]
    TALLY["reads_ok"] += len(got)
    print(f"[dataloader] {len(got)} patches in {elapsed:.2f} s through {served['status_503']} injected 503s")
