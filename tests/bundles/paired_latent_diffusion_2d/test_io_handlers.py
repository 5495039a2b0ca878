"""TIF / PNG output, the inference saver, sample grids, the statistics report and synthetic pairs."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tifffile
import torch
from ignite.engine import Engine
from monai.data import MetaTensor
from PIL import Image

from bundles.paired_latent_diffusion_2d.scripts.handlers import SampleGridSaver, ThroughputLogger, sample_grid
from bundles.paired_latent_diffusion_2d.scripts.io import SaveGeneratedImaged, to_uint8, write_tif
from bundles.paired_latent_diffusion_2d.scripts.synthetic import synthetic_jaw_pair


def test_write_tif_leaves_no_partial_file(tmp_path):
    path = write_tif(tmp_path / "a.tif", torch.ones(1, 5, 4))
    assert tifffile.imread(path).shape == (5, 4) and os.listdir(tmp_path) == ["a.tif"]


def test_generated_image_is_saved_as_float_tif_and_png_at_the_original_size(tmp_path):
    condition = MetaTensor(torch.rand(1, 16, 16), meta={"spatial_shape": np.array([30, 20])})
    SaveGeneratedImaged("pred", output_dir=str(tmp_path))(
        {"pred": torch.rand(1, 16, 16), "name": "img_7", "condition": condition}
    )
    image = tifffile.imread(tmp_path / "img_7.tif")
    assert image.shape == (30, 20) and image.dtype == np.float32
    assert Image.open(tmp_path / "img_7.png").size == (20, 30)
    SaveGeneratedImaged("pred", output_dir=str(tmp_path / "raw"), resize_to_original=False)(
        {"pred": torch.rand(1, 16, 16), "name": "img_7", "condition": condition}
    )
    assert tifffile.imread(tmp_path / "raw" / "img_7.tif").shape == (16, 16)


def test_preview_windowing_maps_range_to_0_255():
    out = to_uint8(np.array([[0.0, 1.0], [2.0, 4.0]]))
    assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 255
    assert to_uint8(np.full((2, 2), 3.0)).max() == 0


def test_sample_grid_has_one_row_per_sample_and_one_column_per_key():
    grid = sample_grid([torch.rand(3, 1, 8, 6) for _ in range(3)], reference=2, separator=2)
    assert grid.shape == (3 * 8 + 2 * 2, 3 * 6 + 2 * 2) and grid.dtype == np.uint8


class _Writer:
    def __init__(self):
        self.images = []

    def add_image(self, tag, image, global_step, dataformats):
        self.images.append((tag, image.shape, global_step, dataformats))

    def flush(self):
        pass


def test_sample_grid_saver_writes_a_png_and_a_tensorboard_image_per_epoch(tmp_path):
    def step(engine, batch):
        return {"image": batch, "pred": batch * 2, "label": batch + 1}

    evaluator = Engine(step)
    writer = _Writer()
    SampleGridSaver(str(tmp_path), summary_writer=writer, max_images=3, prefix="ldm").attach(evaluator)
    evaluator.run([torch.rand(2, 1, 8, 8) for _ in range(3)], max_epochs=2)
    assert sorted(os.listdir(tmp_path)) == ["ldm_epoch_0001.png", "ldm_epoch_0002.png"]
    assert np.asarray(Image.open(tmp_path / "ldm_epoch_0002.png")).shape == (3 * 8 + 4, 3 * 8 + 4)
    assert writer.images == [("ldm", (1, 28, 28), 1, "CHW"), ("ldm", (1, 28, 28), 2, "CHW")]


def test_synthetic_pairs_differ_by_teeth_and_keep_background_zero():
    edentulous, dentate = synthetic_jaw_pair((48, 40), seed=4)
    assert edentulous.dtype == dentate.dtype == np.uint16 and edentulous.shape == (48, 40)
    assert edentulous[0].max() == 0 and dentate.max() > edentulous.max()  # teeth are brighter than bone
    assert (dentate > 0).sum() > (edentulous > 0).sum()


def test_throughput_logger_counts_steps_and_images_per_epoch(caplog):
    evaluator = Engine(lambda engine, batch: None)
    throughput = ThroughputLogger()
    throughput.attach(evaluator)
    with caplog.at_level("INFO", logger=ThroughputLogger.__module__):
        evaluator.run([(torch.zeros(3, 1, 4, 4), torch.zeros(3, 1, 4, 4))] * 4, max_epochs=2)
    assert [r["steps"] for r in throughput.history] == [4.0, 4.0]
    record = throughput.history[-1]
    assert record["images_per_second"] == pytest.approx(3 * record["steps_per_second"])
    assert "4 steps in" in caplog.text and "steps/s" in caplog.text
