"""Synthetic datasets: picking a few subjects' files for a small store."""

from __future__ import annotations

from pathlib import Path

from radiobject_adapter.synthetic import SyntheticDataset


def test_first_gives_the_lowest_subject_ids_with_their_own_image_and_label() -> None:
    ds = SyntheticDataset("r", ["c.nii", "a.nii", "b.nii"], ["c_l.nii", "a_l.nii", "b_l.nii"], ["c", "a", "b"], "t")
    assert ds.first(2) == {"CT": ["a.nii", "b.nii"], "seg": ["a_l.nii", "b_l.nii"]}
    assert ds.first(5, image="T1", label="mask") == {
        "T1": ["a.nii", "b.nii", "c.nii"],
        "mask": ["a_l.nii", "b_l.nii", "c_l.nii"],
    }


def test_first_of_a_made_dataset_pairs_each_subjects_files(synthetic_ct: SyntheticDataset) -> None:
    picked = synthetic_ct.first(3)
    ids = sorted(synthetic_ct.subject_ids)[:3]
    for kind in ("CT", "seg"):  # file names start with the subject id (case_000_0000.nii.gz)
        assert len(picked[kind]) == 3
        assert all(Path(p).name.startswith(sid) for p, sid in zip(picked[kind], ids))
