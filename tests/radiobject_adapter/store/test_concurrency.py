"""Several writers and readers on one store at once: nothing lost, nothing doubled or partial."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nibabel as nib
import numpy as np
import tiledb

from radiobject_adapter import RadiObject
from radiobject_adapter.synthetic import make_ct_dataset

INGEST = textwrap.dedent(
    """
    import sys
    from radiobject_adapter import ingest_niftis
    report = ingest_niftis(sys.argv[1], {"CT": sys.argv[2], "seg": sys.argv[3]}, progress=False, tile_extent=16)
    assert report.ok, report.summary()
    """
)

READER = textwrap.dedent(
    """
    import sys, time, json
    import numpy as np, nibabel as nib
    from radiobject_adapter import RadiObject
    store, sources = sys.argv[1], json.loads(sys.argv[2])
    checked, deadline = 0, time.monotonic() + float(sys.argv[3])
    while time.monotonic() < deadline:
        try:
            radi = RadiObject(store)
        except Exception:
            continue  # store not created yet
        if "CT" not in radi.collection_names:
            continue
        for sid in radi.CT.subject_ids:
            data = radi.CT[sid].to_numpy()
            ref = np.asanyarray(nib.load(sources[sid]).dataobj)
            assert np.array_equal(data, ref), f"partial or wrong volume for {sid}"
            checked += 1
    print("checked", checked)
    """
)


def _split_dataset(tmp_path: Path, n_groups: int, per_group: int):
    ds = make_ct_dataset(
        str(tmp_path / "all"), n_subjects=n_groups * per_group, shape_range=((24, 32), (24, 32), (16, 20)), seed=9
    )
    groups = []
    for g in range(n_groups):
        img, lbl = tmp_path / f"g{g}" / "img", tmp_path / f"g{g}" / "lbl"
        img.mkdir(parents=True)
        lbl.mkdir(parents=True)
        for i in range(g * per_group, (g + 1) * per_group):
            shutil.copy(ds.images[i], img)
            shutil.copy(ds.labels[i], lbl)
        groups.append((str(img), str(lbl)))
    return ds, groups


def test_four_writers_at_once_store_every_subject_exactly_once(tmp_path: Path) -> None:
    ds, groups = _split_dataset(tmp_path, n_groups=4, per_group=3)
    store = str(tmp_path / "store")
    procs = [subprocess.Popen([sys.executable, "-c", INGEST, store, img, lbl]) for img, lbl in groups]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0, 0]
    radi = RadiObject(store)
    for name, files in (("CT", ds.images), ("seg", ds.labels)):
        col = radi.collection(name)
        assert col.subject_ids == ds.subject_ids  # each once
        assert sorted(col.obs["obs_subject_id"]) == ds.subject_ids
        for sid, path in zip(ds.subject_ids, files):
            np.testing.assert_array_equal(col[sid].to_numpy(), np.asanyarray(nib.load(path).dataobj))
        with tiledb.Group(f"{store}/collections/{name}/volumes") as grp:
            assert len({m.name for m in grp}) == len(grp) == len(ds.subject_ids)
    assert radi.metadata["subject_count"] == len(ds.subject_ids)


def test_readers_never_see_a_partial_volume_while_a_writer_appends(tmp_path: Path) -> None:
    import json

    ds, groups = _split_dataset(tmp_path, n_groups=2, per_group=4)
    store = str(tmp_path / "store")
    subprocess.run([sys.executable, "-c", INGEST, store, *groups[0]], check=True, timeout=300)
    sources = json.dumps(dict(zip(ds.subject_ids, ds.images)))
    readers = [
        subprocess.Popen([sys.executable, "-c", READER, store, sources, "8"], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    writer = subprocess.run([sys.executable, "-c", INGEST, store, *groups[1]], timeout=300)
    outputs = [r.communicate(timeout=120)[0] for r in readers]
    assert writer.returncode == 0
    assert [r.returncode for r in readers] == [0, 0, 0]
    assert all(int(o.split()[-1]) > 0 for o in outputs)
    assert RadiObject(store).CT.subject_ids == ds.subject_ids
