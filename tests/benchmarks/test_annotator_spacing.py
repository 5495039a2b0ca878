"""The coarser-working-spacing variant of ct_segmentation_3d (benchmarks.annotator_spacing) works
on its own grid and gives its labels back on the input's grid, as 3D Slicer needs."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.transforms import SaveImaged

from benchmarks.annotator_spacing import write_spacing_variant
from radiobundles.resources import bundle_scripts

TINY_NET = {"channels": [4, 8], "strides": [2], "num_res_units": 0}


def _nifti(path: str, shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> np.ndarray:
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = (-10.0, 5.0, 2.0)
    data = np.random.default_rng(0).uniform(-300, 700, size=shape).astype(np.float32)
    nib.save(nib.Nifti1Image(data, affine), path)
    return affine


def test_spacing_variant_infers_on_working_grid_and_returns_labels_on_input_grid(tmp_path):
    bundles = write_spacing_variant(1.5, str(tmp_path / "variant"))
    bundle = os.path.join(bundles, "ct_segmentation_3d")
    image = str(tmp_path / "ct.nii.gz")
    shape, spacing = (30, 14, 21), (1.0, 2.5, 0.75)
    affine = _nifti(image, shape, spacing)

    parser = ConfigParser()
    parser.read_config(os.path.join(bundle, "configs", "inference.json"))
    parser.update({"bundle_root": bundle, "device": "cpu", "patch_size": [16, 16, 16], "output_dir": str(tmp_path)})
    for key, value in TINY_NET.items():
        parser[f"network_def#{key}"] = value
    with bundle_scripts(bundle):  # the configs name the variant's own scripts (inferer, ...)
        pre = parser.get_parsed_content("preprocessing")
        post = [t for t in parser.get_parsed_content("postprocessing").transforms if not isinstance(t, SaveImaged)]
        network = parser.get_parsed_content("network_def").eval()
        inferer = parser.get_parsed_content("inferer")

    # MONAI Label's infer task adds the image path as a string beside the image
    data = pre({"image": image, "image_path": image})
    assert data["image_path"] == image
    working = tuple(data["image"].shape[1:])
    np.testing.assert_allclose(data["image"].pixdim, [1.5, 1.5, 1.5])
    assert working != shape  # the network saw the resampled grid
    with torch.no_grad():
        data["pred"] = inferer(data["image"][None], network)[0]
    for transform in post:
        data = transform(data)

    pred = data["pred"]
    assert tuple(pred.shape[-3:]) == shape
    np.testing.assert_allclose(np.asarray(pred.affine), affine, atol=1e-4)
    assert set(np.unique(np.asarray(pred))) <= set(range(parser.get_parsed_content("num_classes")))
