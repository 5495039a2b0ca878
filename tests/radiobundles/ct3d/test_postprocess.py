"""ArgmaxLabeld: AsDiscreted(argmax=True)'s labels, faster, and still an AsDiscreted for MONAI Label."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import AsDiscreted
from monailabel.tasks.infer.bundle import BundleInferTask

from radiobundles.ct3d import ArgmaxLabeld, channel_argmax


@pytest.mark.parametrize("channels", [1, 2, 4])
def test_same_labels_dtype_shape_and_metadata_as_asdiscreted(channels):
    torch.manual_seed(channels)
    pred = MetaTensor(torch.rand(channels, 9, 7, 5), meta={"filename_or_obj": "case_1"})
    pred[:, 0, 0, 0] = 0.5  # a tie: the first maximal channel wins, as with argmax
    expected = AsDiscreted("pred", argmax=True)({"pred": pred})["pred"]
    got = ArgmaxLabeld("pred")({"pred": pred, "image": "kept"})
    assert got["image"] == "kept"
    assert got["pred"].shape == expected.shape == (1, 9, 7, 5) and got["pred"].dtype == expected.dtype
    assert torch.equal(got["pred"].as_tensor(), expected.as_tensor())
    assert got["pred"].meta["filename_or_obj"] == "case_1"
    assert int(got["pred"][0, 0, 0, 0]) == 0


def test_plain_tensors_and_another_dtype():
    x = torch.tensor([[[0.1, 0.7]], [[0.9, 0.2]], [[0.0, 0.1]]])
    out = channel_argmax(x, torch.uint8)
    assert out.dtype == torch.uint8 and out.tolist() == [[[1, 0]]]
    with pytest.raises(ValueError, match="channel-first"):
        channel_argmax(torch.zeros(3))


def test_monai_labels_filter_drops_it_as_it_drops_asdiscreted():
    """Scoring keeps probabilities by filtering AsDiscreted out of the bundle's postprocessing by type."""
    kept = BundleInferTask._filter_transforms(None, [ArgmaxLabeld("pred"), "other"], [AsDiscreted])
    assert kept == ["other"]
