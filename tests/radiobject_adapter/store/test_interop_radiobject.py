"""Stores written by radiobject 0.1.1 open here, and ours open in radiobject, the right volume
behind each subject both ways (radiobject itself is a test-only dependency)."""

from __future__ import annotations

import random
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from radiobject_adapter import RadiObject, Volume

radiobject = pytest.importorskip("radiobject")


def _source(path: str) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj)


def test_store_written_by_radiobject_reads_right_volume_per_subject(synthetic_ct, tmp_path: Path) -> None:
    # Hand radiobject the subjects in shuffled order: it numbers volumes in input order while
    # its obs rows are sorted, which is exactly where positional lookups go wrong.
    order = list(range(len(synthetic_ct.subject_ids)))
    random.Random(1).shuffle(order)
    pairs = [(synthetic_ct.images[i], synthetic_ct.subject_ids[i]) for i in order]
    uri = str(tmp_path / "theirs")
    radiobject.RadiObject.from_niftis(uri, images={"CT": pairs}, reorient=False)

    ours = RadiObject(uri)
    assert ours.format_version == 1
    # the trap is armed: the first member array is not the first subject in sorted order
    assert Volume(f"{uri}/collections/CT/volumes/0").obs_id != ours.CT.iloc[0].obs_id
    assert ours.CT.subject_ids == sorted(synthetic_ct.subject_ids)
    for sid, path in zip(synthetic_ct.subject_ids, synthetic_ct.images):
        vol = ours.CT[sid]
        np.testing.assert_array_equal(vol.to_numpy(), _source(path))
        np.testing.assert_allclose(vol.affine, nib.load(path).affine, atol=1e-6)
    # and position i means the i-th subject in sorted order, never the i-th written
    assert ours.CT.iloc[0].subject_id in (None, sorted(synthetic_ct.subject_ids)[0])
    np.testing.assert_array_equal(ours.CT.iloc[0].to_numpy(), _source(synthetic_ct.images[0]))


def test_store_written_here_reads_right_volume_per_subject_in_radiobject(ct_store: str, synthetic_ct) -> None:
    theirs = radiobject.RadiObject(ct_store)
    assert set(theirs.collection_names) == {"CT", "seg"}
    ct = theirs.collection("CT")
    assert len(ct) == len(synthetic_ct.subject_ids)
    for sid, img_path, lbl_path in zip(synthetic_ct.subject_ids, synthetic_ct.images, synthetic_ct.labels):
        np.testing.assert_array_equal(ct.loc[f"{sid}_CT"].to_numpy(), _source(img_path))
        np.testing.assert_array_equal(theirs.collection("seg").loc[f"{sid}_seg"].to_numpy(), _source(lbl_path))
    for i, sid in enumerate(synthetic_ct.subject_ids):  # positional access agrees too
        np.testing.assert_array_equal(ct.iloc[i].to_numpy(), _source(synthetic_ct.images[i]))
        assert ct.iloc[i].obs_id == f"{sid}_CT"
    meta = theirs.obs_meta.read()
    assert {"diagnosis", "age"} <= set(meta.columns)
