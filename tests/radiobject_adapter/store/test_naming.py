from __future__ import annotations

import pytest

from radiobject_adapter.store.naming import discover_files, match_subject, subject_id_from_path


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("imagesTr/case_001_0000.nii.gz", "case_001"),
        ("labelsTr/case_001.nii.gz", "case_001"),
        ("/x/sub-07_T1w.nii", "sub-07_T1w"),
        ("img_001.tif", "img_001"),
        ("case_2024.nii.gz", "case"),  # documented: one trailing _NNNN is a channel suffix
    ],
)
def test_default_rule_pairs_nnunet_image_and_label_names(path: str, expected: str) -> None:
    assert subject_id_from_path(path) == expected


def test_pattern_overrides_rule_with_named_group() -> None:
    assert subject_id_from_path("sub-07_T1w.nii.gz", r"sub-(?P<subject>\d+)") == "07"
    assert subject_id_from_path("sub-07_T1w.nii.gz", r"sub-(\d+)") == "07"


def test_pattern_that_does_not_match_names_the_file() -> None:
    with pytest.raises(ValueError, match="does not match file name 'scan'"):
        subject_id_from_path("scan.nii.gz", r"sub-(\d+)")


def test_discover_accepts_glob_folder_listfile_and_list(tmp_path) -> None:
    for name in ("a_0000.nii.gz", "b_0000.nii.gz", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    folder = discover_files(str(tmp_path))
    assert [p.rsplit("/", 1)[1] for p in folder] == ["a_0000.nii.gz", "b_0000.nii.gz"]
    assert discover_files(str(tmp_path / "*_0000.nii.gz")) == folder
    listing = tmp_path / "files.lst"
    listing.write_text("a_0000.nii.gz\n# comment\nb_0000.nii.gz\n")
    assert discover_files(str(listing)) == folder
    assert discover_files(folder) == folder


def test_discover_reports_missing_inputs(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file"):
        discover_files(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="matched no image files"):
        discover_files(str(tmp_path))


def test_list_file_naming_missing_files_is_refused(tmp_path) -> None:
    listing = tmp_path / "files.txt"
    listing.write_text("gone_0000.nii.gz\n")
    with pytest.raises(FileNotFoundError, match="names 1 missing file"):
        discover_files(str(listing))


def test_one_pattern_rule_for_file_names_tifs_and_dicom_paths() -> None:
    assert match_subject(r"sub-(?P<subject>\d+)", "/dicom/sub-07/ses-1/IM0001") == "07"  # named group
    assert match_subject(r"case_(\d+)_(\d+)", "case_12_3") == "12"  # else the first group
    assert match_subject(r"case_\d+", "x_case_12_y") == "case_12"  # else the whole match
    assert match_subject(r"sub-\d+", "case_12") is None
    assert subject_id_from_path("dente/img_0001.tif", channel_suffix=False) == "img_0001"
    assert subject_id_from_path("dente/img_0001.tif") == "img"  # nnU-Net's rule would cut it
