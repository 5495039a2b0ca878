"""Per-subject, per-class Dice and HD95 (mm) and the CSV / summary written from an evaluator."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor
from monai.networks.utils import one_hot

from bundles.ct_segmentation_3d.scripts.metrics import SubjectMetricsSaver, class_name_list, segmentation_scores


def onehot(labels: np.ndarray, n: int = 3) -> torch.Tensor:
    return one_hot(torch.as_tensor(labels)[None, None].long(), n)[0]


def cube(shape=(12, 12, 12), boxes=()) -> np.ndarray:
    out = np.zeros(shape, dtype=np.int64)
    for cls, (x0, x1) in boxes:
        out[x0:x1, 2:6, 2:6] = cls
    return out


def test_scores_match_hand_computed_dice_and_scale_with_spacing():
    label = cube(boxes=[(1, (0, 4)), (2, (6, 10))])
    pred = cube(boxes=[(1, (0, 2)), (2, (6, 10))])  # class 1: half of it found
    rows = segmentation_scores(onehot(pred), onehot(label), spacing=(1.0, 1.0, 1.0))
    assert rows[0]["dice"] == pytest.approx(2 * 32 / (32 + 64))
    assert rows[1]["dice"] == pytest.approx(1.0)
    assert rows[1]["hd95_mm"] == pytest.approx(0.0)
    assert (rows[0]["label_voxels"], rows[0]["pred_voxels"]) == (64, 32)
    doubled = segmentation_scores(onehot(pred), onehot(label), spacing=(2.0, 2.0, 2.0))
    assert doubled[0]["hd95_mm"] == pytest.approx(2 * rows[0]["hd95_mm"])


def test_a_missed_class_scores_zero_and_a_class_absent_from_the_reference_is_nan():
    label = cube(boxes=[(1, (0, 4))])
    pred = cube(boxes=[(2, (6, 8))])  # misses class 1, predicts class 2 that the label lacks
    rows = segmentation_scores(onehot(pred), onehot(label))
    assert rows[0]["dice"] == 0.0 and math.isnan(rows[0]["hd95_mm"])
    assert math.isnan(rows[1]["dice"]) and math.isnan(rows[1]["hd95_mm"])
    assert (rows[1]["label_voxels"], rows[1]["pred_voxels"]) == (0, 32)


def test_class_names_fall_back_to_indices():
    assert class_name_list(["bg", "liver"], 3) == ["bg", "liver", "class_2"]
    assert class_name_list({"0": "bg", "2": "kidney"}, 3) == ["bg", "class_1", "kidney"]


def test_saver_writes_one_row_per_subject_and_class_and_a_summary(tmp_path):
    label = cube(boxes=[(1, (0, 4)), (2, (6, 10))])
    affine = torch.diag(torch.tensor([0.5, 0.5, 2.0, 1.0], dtype=torch.float64))
    outputs = []
    for sid, pred in (("case_a", label), ("case_b", cube(boxes=[(1, (0, 4))]))):
        image = MetaTensor(torch.zeros(1, 12, 12, 12), affine=affine)
        outputs.append({"image": image, "pred": onehot(pred), "label": onehot(label), "sid": sid})
    batches = [[{"subject_id": o["sid"]}] for o in outputs]

    saver = SubjectMetricsSaver(str(tmp_path), class_names=["background", "liver", "kidney"])
    engine = Engine(lambda e, batch: [outputs[e.state.iteration - 1]])
    saver.attach(engine)
    engine.run(batches, max_epochs=1)

    with open(saver.csv_path) as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["subject_id"], r["class_name"]) for r in rows] == [
        ("case_a", "liver"),
        ("case_a", "kidney"),
        ("case_b", "liver"),
        ("case_b", "kidney"),
    ]
    assert float(rows[3]["dice"]) == 0.0
    with open(saver.summary_path) as fh:
        summary = json.load(fh)
    assert summary["subjects"] == 2
    assert summary["mean_dice"] == pytest.approx(0.75)
    assert summary["per_class"]["kidney"]["dice"] == pytest.approx(0.5)
