"""ModelMetadataWriter: the ``metadata.json`` beside the weights names the classes the run trains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine
from monai.bundle import ckpt_export

from radiobundles.training import ModelMetadataWriter, metadata_for_classes

BUNDLE_CONFIGS = Path(__file__).resolve().parents[3] / "bundles" / "ct_segmentation_3d" / "configs"
META = BUNDLE_CONFIGS / "metadata.json"
DEMO_CLASSES = ["background", "structure_1", "structure_2", "structure_3"]


def test_metadata_for_classes_sets_channels_and_names_and_leaves_the_bundle_file_alone():
    meta = json.loads(META.read_text())
    out = metadata_for_classes(meta, DEMO_CLASSES)
    pred = out["network_data_format"]["outputs"]["pred"]
    assert pred["num_channels"] == 4
    assert pred["channel_def"] == {"0": "background", "1": "structure_1", "2": "structure_2", "3": "structure_3"}
    assert "4 channels" in out["pred_classes"]
    assert meta["network_data_format"]["outputs"]["pred"]["num_channels"] == 3  # the input is not changed
    assert out["network_data_format"]["inputs"] == meta["network_data_format"]["inputs"]


def test_metadata_for_classes_refuses_no_classes_or_a_missing_output():
    meta = json.loads(META.read_text())
    with pytest.raises(ValueError, match="class_names is empty"):
        metadata_for_classes(meta, [])
    with pytest.raises(ValueError, match=r"outputs\.seg"):
        metadata_for_classes(meta, DEMO_CLASSES, output="seg")


def test_writer_writes_the_file_when_training_starts_and_export_embeds_it(tmp_path):
    models = tmp_path / "models"
    engine = Engine(lambda e, b: None)
    ModelMetadataWriter(str(META), DEMO_CLASSES, str(models)).attach(engine)
    assert not (models / "metadata.json").exists()
    engine.run(range(1), max_epochs=1)
    written = json.loads((models / "metadata.json").read_text())
    assert written["network_data_format"]["outputs"]["pred"]["num_channels"] == 4
    # the bundle runner's metadata dict (@_meta_) works as well; none at all warns and writes nothing
    other = tmp_path / "other"
    ModelMetadataWriter(json.loads(META.read_text()), DEMO_CLASSES[:2], str(other))._write(engine)
    assert (
        json.loads((other / "metadata.json").read_text())["network_data_format"]["outputs"]["pred"]["num_channels"] == 2
    )
    ModelMetadataWriter({}, DEMO_CLASSES, str(tmp_path / "none"))._write(engine)
    assert not (tmp_path / "none").exists()
    # what the README's export does with it: a 4-class network, exported with this metadata
    tiny = {"network_def#channels": [4, 8], "network_def#strides": [2], "network_def#num_res_units": 0}
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(BUNDLE_CONFIGS / "inference.json"))
    parser.update({**tiny, "class_names": DEMO_CLASSES})
    torch.save(parser.get_parsed_content("network_def").state_dict(), models / "model.pt")
    ts = models / "model.ts"
    ckpt_export(
        net_id="network_def",
        filepath=str(ts),
        ckpt_file=str(models / "model.pt"),
        meta_file=str(models / "metadata.json"),
        config_file=str(BUNDLE_CONFIGS / "inference.json"),
        class_names=DEMO_CLASSES,
        **tiny,
    )
    extra = {"metadata.json": ""}
    net = torch.jit.load(str(ts), _extra_files=extra)
    embedded = json.loads(extra["metadata.json"])
    assert embedded["network_data_format"]["outputs"]["pred"]["num_channels"] == 4
    assert net(torch.zeros(1, 1, 16, 16, 16)).shape[1] == 4
