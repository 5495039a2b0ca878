"""Pairing target and condition images by name; unpaired names are reported, never dropped silently."""

from __future__ import annotations

import logging

import pytest

from bundles.paired_latent_diffusion_2d.scripts.pairing import UnpairedImagesError, open_source, pair_sources
from bundles.paired_latent_diffusion_2d.scripts.synthetic import make_paired_tifs


def test_pairs_match_by_file_name(paired_tifs):
    report = pair_sources(open_source(paired_tifs.root, "edente"), open_source(paired_tifs.root, "dente"))
    assert report.complete and report.names == paired_tifs.names
    name, target, condition = report.pairs[3]
    assert target.endswith("edente/img_003.tif") and condition.endswith("dente/img_003.tif") and name == "img_003"


def test_count_mismatch_is_an_error_naming_the_unpaired_files(tmp_path):
    ds = make_paired_tifs(
        str(tmp_path), n_pairs=3, shape=(8, 8), only_target=["img_x"], only_condition=["img_y", "img_z"]
    )
    with pytest.raises(UnpairedImagesError) as err:
        pair_sources(open_source(ds.root, "edente"), open_source(ds.root, "dente"))
    message = str(err.value)
    assert "4 images" in message and "5 images" in message and "3 pairs" in message
    assert "1 only in" in message and "['img_x']" in message
    assert "2 only in" in message and "['img_y', 'img_z']" in message
    assert "keep_intersection=True" in message


def test_keep_intersection_keeps_matched_pairs_and_logs_the_rest(tmp_path, caplog):
    ds = make_paired_tifs(str(tmp_path), n_pairs=3, shape=(8, 8), only_condition=["img_y"])
    with caplog.at_level(logging.WARNING, logger=pair_sources.__module__):
        report = pair_sources(open_source(ds.root, "edente"), open_source(ds.root, "dente"), keep_intersection=True)
    assert report.names == ds.names and report.only_condition == ["img_y"]
    assert "img_y" in caplog.text and "keeping the 3 matched pairs" in caplog.text


def test_same_name_with_tif_and_tiff_is_an_error(tmp_path):
    ds = make_paired_tifs(str(tmp_path), n_pairs=1, shape=(8, 8))
    (tmp_path / "dente" / "img_000.tiff").write_bytes((tmp_path / "dente" / "img_000.tif").read_bytes())
    with pytest.raises(ValueError, match="same name 'img_000'"):
        _ = open_source(ds.root, "dente").items


def test_missing_folder_error_lists_what_is_there(paired_tifs):
    with pytest.raises(FileNotFoundError, match=r"sub-folders there: \['dente', 'edente'\]"):
        open_source(paired_tifs.root, "toothless")


def test_store_collections_pair_like_folders(paired_tifs, paired_store):
    report = pair_sources(open_source(paired_store, "edente"), open_source(paired_store, "dente"))
    assert report.names == paired_tifs.names
    assert report.pairs[0][1].endswith("::edente/img_000")
    with pytest.raises(FileNotFoundError, match="collections"):
        open_source(paired_store, "toothless")
