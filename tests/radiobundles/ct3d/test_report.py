"""Demo figures and reference numbers: curves from event files, overlays, Dice, constant baseline."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from torch.utils.tensorboard import SummaryWriter

from radiobundles.ct3d.report import (
    constant_prediction_dice,
    dice_per_class,
    plot_overlays,
    plot_training_curves,
    read_scalars,
)


def test_training_curves_come_from_tensorboard_event_files(tmp_path):
    writer = SummaryWriter(str(tmp_path / "runs"))
    for it in range(1, 7):
        writer.add_scalar("train_loss", 1.0 / it, it)
    for epoch in (1, 2):
        writer.add_scalar("epoch/train_loss", 1.0 / epoch, epoch)
        writer.add_scalar("val_mean_dice", 0.4 * epoch, epoch)
        writer.add_scalar("epoch/lr", 1e-3 / epoch, epoch)
    writer.close()
    assert read_scalars(str(tmp_path / "runs"))["val_mean_dice"] == [(1, pytest.approx(0.4)), (2, pytest.approx(0.8))]
    png = plot_training_curves(str(tmp_path / "runs"), str(tmp_path / "curves.png"), baseline=0.01)
    assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no TensorBoard scalars"):
        plot_training_curves(str(tmp_path / "empty"), str(tmp_path / "x.png"))


def test_dice_of_files_and_the_constant_predictor(tmp_path):
    ref = np.zeros((10, 10, 10), dtype=np.uint8)
    ref[:2] = 1  # 200 voxels of class 1, class 2 absent
    pred = np.zeros_like(ref)
    pred[:1] = 1
    paths = {}
    for name, data in (("pred", pred), ("ref", ref)):
        paths[name] = str(tmp_path / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(data, np.eye(4)), paths[name])
    scores = dice_per_class({"s": (paths["pred"], paths["ref"])}, num_classes=3)["s"]
    assert scores[0] == pytest.approx(2 * 100 / 300) and np.isnan(scores[1])
    baseline = constant_prediction_dice({"s": ref}, num_classes=3)["s"]
    assert baseline[0] == pytest.approx(2 * 200 / 1200) and np.isnan(baseline[1])


def test_overlay_figure_has_one_row_per_case(tmp_path):
    image = np.random.default_rng(0).normal(40, 20, (12, 12, 6))
    label = np.zeros((12, 12, 6), dtype=np.uint8)
    label[3:6, 3:6, 2] = 1
    case = {"subject_id": "s", "image": image, "label": label, "pred": label, "dice": 1.0}
    png = plot_overlays([case, case], str(tmp_path / "overlays.png"))
    assert Path(png).read_bytes()[:4] == b"\x89PNG"
