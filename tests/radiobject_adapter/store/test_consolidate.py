"""``radiobundles consolidate`` merges the many small files of tables and groups, and keeps
every label version readable by time travel (with its record and foreground index)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import tiledb

from monailabel_app.lib.store_access import StoreAccess
from radiobject_adapter import RadiObject, Volume
from radiobject_adapter.cli import main
from radiobject_adapter.config import reset_caches
from radiobject_adapter.io.ingest import ingest_niftis
from radiobject_adapter.store.check import check_store
from radiobject_adapter.store.label_versions import list_versions, read_version
from radiobject_adapter.store.lease import WriterLease


def _store(tmp_path: Path) -> tuple[str, dict[int, np.ndarray], str]:
    rng = np.random.default_rng(0)
    (tmp_path / "ct").mkdir()
    for i in range(4):
        data = rng.integers(-50, 50, size=(8, 8, 8), dtype=np.int16)
        nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "ct" / f"case_{i}.nii.gz"))
    store = str(tmp_path / "store")
    ingest_niftis(store, {"CT": str(tmp_path / "ct")}, progress=False)
    access = StoreAccess(store, "CT", "seg")
    saved = {}
    for v in range(3):
        data = rng.integers(0, 3, size=(8, 8, 8), dtype=np.uint8)
        saved[access.save("case_0", "final", data, {"annotator": f"ann{v}", "info": {"v": v}})] = data
    return store, saved, access.label_uri("case_0")


def _fragments(uri: str) -> int:
    return len(tiledb.array_fragments(uri))


def test_consolidate_merges_obs_fragments_and_keeps_every_label_version(tmp_path: Path) -> None:
    store, saved, label = _store(tmp_path)
    obs = f"{store}/collections/CT/obs"
    assert _fragments(obs) == 4  # one per ingested volume
    label_fragments = _fragments(label)
    assert main(["consolidate", store, "--no-progress"]) == 0
    reset_caches()
    assert _fragments(obs) == 1
    assert _fragments(label) == label_fragments  # versions are never merged
    assert RadiObject(store).CT.subject_ids == [f"case_{i}" for i in range(4)]
    versions = list_versions(label)
    assert [v.version for v in versions] == sorted(saved)
    assert [v.annotator for v in versions] == ["ann0", "ann1", "ann2"]  # records kept
    for ts, data in saved.items():  # time travel: each version's voxels and its own index
        np.testing.assert_array_equal(read_version(label, ts), data)
        old = Volume(label, timestamp=ts)
        np.testing.assert_array_equal(old.to_numpy(), data)
        counts = {int(c): int(n) for c, n in enumerate(np.bincount(data.ravel())) if n}
        assert {int(k): v for k, v in json.loads(old.metadata["foreground_counts"]).items()} == counts
    np.testing.assert_array_equal(RadiObject(store).seg["case_0"].to_numpy(), saved[max(saved)])
    assert check_store(store).exit_code == 0


def test_consolidate_refuses_while_another_writer_is_alive(tmp_path: Path) -> None:
    store, _, _ = _store(tmp_path)
    lease = WriterLease(store, tiledb.VFS())
    lease.refresh()
    try:
        assert main(["consolidate", store, "--no-progress"]) == 2
    finally:
        lease.release()
    assert _fragments(f"{store}/collections/CT/obs") == 4
