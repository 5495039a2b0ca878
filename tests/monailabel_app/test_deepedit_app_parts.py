"""The app's parts for the click-guided bundle, without a server: which bundles ``all`` serves, the
workspace copy of ``ct_deepedit_3d``, and the infer task MONAI Label builds for it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from monailabel.interfaces.tasks.infer_v2 import InferType

from monailabel_app.lib.bundle import find_bundle, prepare_bundle, servable_bundles
from monailabel_app.lib.infer import ThreadSafeBundleInferTask
from monailabel_app.main import is_deepedit
from radiobundles.resources import bundle_scripts

MODEL = "ct_deepedit_3d"


def test_all_serves_the_monailabel_bundles_automatic_first(tmp_path):
    served = servable_bundles(str(tmp_path / "app"))
    assert served[:2] == ("ct_segmentation_3d", MODEL)
    assert "mri_classification_3d" not in served  # no supported_apps monailabel: not a MONAI Label model
    assert [is_deepedit(n) for n in served] == [False, True]


def test_the_workspace_copy_carries_the_bundles_scripts_and_the_stores_classes(tmp_path):
    classes = ["background", "Liver", "spleen", "kidney"]
    path = prepare_bundle(find_bundle(MODEL, str(tmp_path)), str(tmp_path / "ws"), classes)
    assert os.path.isfile(os.path.join(path, "scripts", "transforms.py"))  # configs reference scripts.*
    assert os.path.isfile(os.path.join(path, "models", "model.pt"))
    meta = json.loads(Path(path, "configs", "metadata.json").read_text())
    assert meta["network_data_format"]["outputs"]["pred"]["channel_def"] == {str(i): n for i, n in enumerate(classes)}

    task = ThreadSafeBundleInferTask(path, {}, type=InferType.DEEPEDIT, load_strict=True)
    assert task.is_valid()
    info = task.info()
    # what Slicer needs for its multi-label point tools: type deepedit and the labels, background included
    assert info["type"] == InferType.DEEPEDIT
    assert info["labels"] == {"background": 0, "liver": 1, "spleen": 2, "kidney": 3}
    assert task.bundle_config.config["use_click"] is True  # MONAI Label lets it take clicks
    network = task.bundle_config.get_parsed_content("network_def")
    assert network.model[0].conv.unit0.conv.in_channels == 1 + len(classes)  # CT + one click channel per class
    # parsed here, outside MONAI Label's calls (which import the bundle's `scripts` afresh each time):
    # another bundle's task may have left its own `scripts` imported
    with bundle_scripts(path):
        assert task.bundle_config.get_parsed_content("label_names") == info["labels"]  # clicks arrive under these
