"""Bundles take their classes from the store, and refuse labels the network cannot output."""

from __future__ import annotations

from pathlib import Path

import pytest
from monai.bundle import ConfigParser

from radiobject_adapter import ingest_niftis
from radiobject_adapter.synthetic import make_ct_dataset
from radiobundles.datalists import make_datalist
from radiobundles.labels import class_names_for

CONFIGS = Path(__file__).resolve().parents[2] / "bundles" / "ct_segmentation_3d" / "configs"
NAMES = ["background", "liver", "tumour", "cyst"]


@pytest.fixture(scope="module")
def four_class_store(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("four")
    ds = make_ct_dataset(str(root / "nifti"), n_subjects=4, shape_range=((16, 20), (16, 20), (8, 10)), n_classes=3)
    store = str(root / "store")
    report = ingest_niftis(
        store, {"CT": ds.images_dir, "seg": ds.labels_dir}, label_classes=",".join(NAMES), progress=False
    )
    assert report.ok, report.summary()
    return store


def _bundle(config: str, **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / config))
    parser.update(overrides)
    return parser


@pytest.mark.parametrize("config", ["train.json", "inference.json"])
def test_bundle_takes_class_names_from_the_store(four_class_store: str, config: str) -> None:
    parser = _bundle(config, dataset_dir=four_class_store)
    assert parser.get_parsed_content("class_names") == NAMES
    assert parser.get_parsed_content("num_classes") == 4
    assert parser.get_parsed_content("network_def#out_channels") == 4


def test_class_names_given_on_the_command_line_win(four_class_store: str) -> None:
    parser = _bundle("train.json", dataset_dir=four_class_store, class_names=["bg", "a", "b", "c"])
    assert parser.get_parsed_content("num_classes") == 4
    assert parser.get_parsed_content("class_names") == ["bg", "a", "b", "c"]


def test_a_folder_or_missing_path_keeps_the_configured_default(tmp_path: Path) -> None:
    assert class_names_for(str(tmp_path / "nowhere"), "seg", ["background", "x"]) == ["background", "x"]
    assert class_names_for(str(tmp_path), "seg", ["background", "x"]) == ["background", "x"]


def test_too_few_class_names_for_the_labels_is_one_clear_error(four_class_store: str) -> None:
    parser = _bundle("train.json", dataset_dir=four_class_store, class_names=["background", "liver", "tumour"])
    with pytest.raises(Exception) as caught:
        parser.get_parsed_content("train#datalist")
    text = "".join(str(e) for e in (caught.value, caught.value.__cause__) if e is not None)
    assert "holds class [3] but the network outputs 3 classes" in text
    assert "the store's label classes are ['background', 'liver', 'tumour', 'cyst']" in text


def test_datalist_check_passes_when_every_class_has_an_output(four_class_store: str) -> None:
    assert len(make_datalist(four_class_store, split="labelled", class_names=NAMES)) == 4
    with pytest.raises(ValueError, match="holds class"):
        make_datalist(four_class_store, split="labelled", class_names=NAMES[:2])
