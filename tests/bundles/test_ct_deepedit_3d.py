"""The ``ct_deepedit_3d`` bundle's own code: label names, click points, simulated clicks, Dice.

Fast tests (no training). Training, evaluation and the MONAI Label server with 3D Slicer's
DeepEdit calls are in ``tests/monailabel_app/test_slicer_deepedit.py`` (slow, one trained model).
"""

from __future__ import annotations

import importlib
import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "ct_deepedit_3d"


@pytest.fixture(scope="module")
def scripts() -> Iterator[types.SimpleNamespace]:
    """The bundle's ``scripts`` modules, imported from the bundle folder (and forgotten afterwards)."""
    saved = {k: sys.modules.pop(k) for k in list(sys.modules) if k == "scripts" or k.startswith("scripts.")}
    sys.path.insert(0, str(BUNDLE))
    try:
        mods = {n: importlib.import_module(f"scripts.{n}") for n in ("transforms", "clicks", "synthetic")}
    finally:
        sys.path.remove(str(BUNDLE))
        for k in [k for k in sys.modules if k == "scripts" or k.startswith("scripts.")]:
            del sys.modules[k]
        sys.modules.update(saved)
    yield types.SimpleNamespace(**mods)


def test_label_names_are_lower_cased_with_background_first(scripts):
    assert scripts.transforms.label_names_for(["Background", "Liver", "spleen"]) == {
        "background": 0,
        "liver": 1,
        "spleen": 2,
    }
    assert scripts.transforms.label_names_for(["bg", "kidney"]) == {"background": 0, "kidney": 1}
    with pytest.raises(ValueError, match="repeat a name"):
        scripts.transforms.label_names_for(["background", "Liver", "liver"])
    with pytest.raises(ValueError, match="at least one structure"):
        scripts.transforms.label_names_for(["background"])


def test_clicks_arrive_as_slicer_sends_them_or_as_json_text(scripts):
    parse = scripts.transforms.ParseClicksd({"background": 0, "structure_1": 1, "structure_2": 2})
    out = parse({"structure_1": [[3, 4.4, 5]], "structure_2": "[[1, 2, 3]]", "label": "structure_1"})
    assert out["structure_1"] == [[3, 4, 5]] and out["structure_2"] == [[1, 2, 3]]
    assert out["background"] == [] and out["label"] == "structure_1"  # other keys are left alone
    with pytest.raises(ValueError, match=r"structure_1.*voxel indices"):
        parse({"structure_1": [[1, 2]]})
    with pytest.raises(ValueError, match=r"structure_2.*not JSON"):
        parse({"structure_2": "[[1, 2"})


def test_clicks_for_a_subject_reach_only_its_item(scripts, tmp_path):
    datalist = [{"image": "a.nii.gz", "subject_id": "a"}, {"image": "b.nii.gz", "subject_id": "b"}]
    clicks = {"b": {"structure_1": [[1, 2, 3]]}}
    path = tmp_path / "clicks.json"
    path.write_text(json.dumps(clicks))
    for given in (clicks, str(path)):
        items = scripts.transforms.with_clicks(datalist, given)
        assert "structure_1" not in items[0] and items[1]["structure_1"] == [[1, 2, 3]]
    with pytest.raises(ValueError, match=r"\['c'\] not in the datalist"):
        scripts.transforms.with_clicks(datalist, {"c": {}})


def test_the_simulated_annotator_clicks_the_middle_of_the_largest_miss(scripts):
    names = {"background": 0, "structure_1": 1, "structure_2": 2}
    truth = np.zeros((20, 20, 20), np.int64)
    truth[2:5, 2:5, 2:5] = 1  # small miss
    truth[8:17, 8:17, 8:17] = 2  # large miss, centre (12, 12, 12)
    assert scripts.clicks.next_click(truth, np.zeros_like(truth), names) == ("structure_2", [12, 12, 12])
    false_positive = truth.copy()
    false_positive[:, :, 17:20] = 1  # a slab predicted where there is nothing: a background click
    label, point = scripts.clicks.next_click(truth, false_positive, names)
    assert label == "background" and point[2] == 18
    assert scripts.clicks.next_click(truth, truth, names) is None


def test_dice_per_label_skips_background_and_marks_absent_structures(scripts):
    names = {"background": 0, "structure_1": 1, "structure_2": 2}
    truth = np.zeros((4, 4, 4), np.int64)
    truth[:2] = 1
    pred = np.zeros_like(truth)
    pred[:1] = 1
    dice = scripts.clicks.dice_per_label(truth, pred, names)
    assert dice["structure_1"] == pytest.approx(2 * 16 / (32 + 16)) and np.isnan(dice["structure_2"])
    assert "background" not in dice


def test_guidance_channels_follow_the_clicks(scripts):
    """The network sees one channel per label, background first, with a blob where that label was clicked."""
    names = {"background": 0, "structure_1": 1, "structure_2": 2}
    seen = {}

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen["x"] = x
            return torch.zeros(1, 3, *x.shape[2:])

    image = np.zeros((1, 16, 16, 12), np.float32)
    scripts.clicks.predict_with_clicks(Probe(), image, {"structure_2": [[8, 8, 6]]}, names)
    x = seen["x"][0]
    assert x.shape == (4, 16, 16, 12)
    assert float(x[1].max()) == 0 and float(x[2].max()) == 0  # no background or structure_1 clicks
    assert float(x[3, 8, 8, 6]) == pytest.approx(1.0) and float(x[3, 0, 0, 0]) < 0.1


def test_the_faint_structure_is_there_but_barely_brighter(scripts):
    image, label = scripts.synthetic.click_volume((32, 32, 24), seed=1, faint_hu=0)
    assert set(np.unique(label)) == {0, 1, 2}
    tissue = image[(label == 0) & (image > -500)].mean()
    assert abs(image[label == 2].mean() - tissue) < 10  # invisible: as dark as the tissue around it
    assert image[label == 1].mean() - tissue > 200  # the bright structure an automatic pass finds


def test_training_clicks_start_empty_and_come_one_at_a_time_on_the_largest_miss(scripts):
    """What the network sees in training is what an annotator does: no clicks, then one per round."""
    names = {"background": 0, "structure_1": 1, "structure_2": 2}
    label = np.zeros((1, 20, 20, 20), np.float32)
    label[0, 2:5, 2:5, 2:5] = 1
    label[0, 8:17, 8:17, 8:17] = 2  # the largest miss
    d = scripts.clicks.NoClicksd()({"label": label, "label_names": names})
    assert d["guidance"] == {"background": "[]", "structure_1": "[]", "structure_2": "[]"}  # JSON: survives collation
    click = scripts.clicks.AddAnnotatorClickd()
    click.set_random_state(0)
    d = click({**d, "pred": np.zeros_like(label), "probability": 1.0})
    assert json.loads(d["guidance"]["background"]) == json.loads(d["guidance"]["structure_1"]) == []
    (point,) = json.loads(d["guidance"]["structure_2"])
    assert all(8 <= c <= 16 for c in point)  # drawn inside the missed structure
    d = click({**d, "pred": label.copy(), "probability": 1.0})  # nothing wrong: no click
    assert len(json.loads(d["guidance"]["structure_2"])) == 1
    d = click({**d, "pred": np.zeros_like(label), "probability": 0.0})  # Interaction's last rounds click less
    assert len(json.loads(d["guidance"]["structure_2"])) == 1


def test_the_fast_argmax_gives_asdiscreteds_labels_and_keeps_the_metadata(scripts):
    from monai.data import MetaTensor
    from monai.transforms import AsDiscreted

    torch.manual_seed(0)
    x = MetaTensor(torch.rand(3, 9, 8, 7), affine=torch.diag(torch.tensor([2.0, 2.0, 3.0, 1.0])))
    x[:, 0, 0, 0] = 0.5  # a tie: the first maximum wins, as in argmax
    fast = scripts.transforms.ArgmaxLabeld("pred")({"pred": x})["pred"]
    slow = AsDiscreted("pred", argmax=True)({"pred": x})["pred"]
    assert torch.equal(fast.as_tensor(), slow.as_tensor()) and fast.dtype == slow.dtype
    assert torch.equal(fast.affine, x.affine) and isinstance(scripts.transforms.ArgmaxLabeld("pred"), AsDiscreted)
